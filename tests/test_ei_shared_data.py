"""The loaders and the teacher-free build on the real dataset copies in ../shared/data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from exgrpo_verl.__main__ import main as exgrpo_main
from exgrpo_verl.datasets import load_records
from exgrpo_verl.probes.rules import RULE_NAMES
from exgrpo_verl.schema import parse_probes

# dataset -> (files under ../shared/data, rows the README lists)
SHARED = {
    "gsm8k": (["gsm8k/test.jsonl"], 1319),
    "math": (["math500/test.jsonl"], 500),
    "arc_challenge": (["arc_challenge/validation.jsonl"], 299),
    "commonsense_qa": (["commonsense_qa/validation.jsonl"], 1221),
    "openbookqa": (["openbookqa/validation.jsonl"], 500),
    "boolq": (["boolq/validation.jsonl"], 3270),
    "strategyqa": (["strategyqa/task.json"], 2290),
    "date_understanding": (["date_understanding/task.json"], 369),
}


@pytest.mark.parametrize("name", list(SHARED))
def test_every_row_of_the_real_copy_loads(name, shared_data, capsys):
    files, rows = SHARED[name]
    local = [f"--local-path={shared_data / f}" for f in files]
    assert exgrpo_main(["ei-check-data", f"--dataset={name}", *local, "--show=0"]) == 0
    assert f"{rows} records from {rows} rows, 0 malformed row(s) skipped, 0 not derivable" in capsys.readouterr().out
    result = load_records(name, "test", local_paths=[shared_data / f for f in files])
    assert result.rows_read == rows
    assert len(result.records) == rows and not result.bad_rows and result.not_derivable == 0
    assert len({r.id for r in result.records}) == rows


def test_gsm8k_train_and_socratic_load(shared_data):
    train = load_records("gsm8k", "train", local_paths=[shared_data / "gsm8k/train.jsonl"])
    assert len(train.records) == 7473 and not train.bad_rows
    socratic = load_records("gsm8k", "test", local_paths=[shared_data / "gsm8k/test_socratic.jsonl"]).records
    assert len(socratic) == 1319 and all(len(r.sub_questions) >= 2 for r in socratic)


def test_teacher_free_gsm8k_build_yield(shared_data, tmp_path, capsys):
    out = tmp_path / "ei"
    code = exgrpo_main(
        [
            "ei-build",
            "--dataset=gsm8k",
            "--split=test",
            f"--local-path={shared_data / 'gsm8k/test.jsonl'}",
            f"--local-path={shared_data / 'gsm8k/test_socratic.jsonl'}",
            f"--out-dir={out}",
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr().err
    stats = json.loads((out / "stats.json").read_text())
    rl = pd.read_parquet(out / "rl_train.parquet")
    with_probes = sum(bool(parse_probes(info, i)) for i, info in enumerate(rl["extra_info"]))
    assert stats["questions"]["selected"] == 1319
    assert with_probes / 1319 >= 0.95
    assert stats["probes_per_kept_question"] >= 8
    per_rule = {rule: stats["rules"][rule]["kept"] for rule in RULE_NAMES}
    # Rules that need slots still fire for almost every GSM8K question (numbers, checked steps, sub-questions).
    for rule in ("counterfactual", "step_justification", "inverse", "error_diagnosis", "decomposition"):
        assert per_rule[rule] >= 0.9 * 1319, (rule, per_rule)
    # Socratic sub-questions (all but the last of each question) carry their gold step as the answer,
    # with the step's checked result boxed where one is clear.
    socratic = [
        p
        for info in rl["extra_info"]
        for p in parse_probes(info, 0)
        if p["rule"] == "decomposition" and "Answer this part of the problem first:" in p["question"]
    ]
    assert len(socratic) >= 1319 and all(p["teacher_answer"] for p in socratic)
    assert sum("\\boxed{" in p["teacher_answer"] for p in socratic) >= 0.85 * len(socratic)
    sft = pd.read_parquet(out / "sft_train.parquet")
    assert len(sft) == 1319 and all(row[0]["role"] == "user" for row in sft["messages"])
    print(
        f"\nGSM8K test teacher-free: {with_probes}/1319 questions with probes, "
        f"{stats['probes_per_kept_question']} per question, per rule {per_rule}"
    )
