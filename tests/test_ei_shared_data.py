"""The loaders and the teacher-free build on the real dataset copies in ../shared/data."""

from __future__ import annotations

import json
import re
from collections import Counter

import pandas as pd
import pytest

from exgrpo_verl.__main__ import main as exgrpo_main
from exgrpo_verl.datasets import Record, load_records
from exgrpo_verl.probes.rules import RULE_NAMES, template_probes
from exgrpo_verl.schema import parse_probes

# dataset -> (files under ../shared/data, rows each copy holds)
SHARED = {
    "gsm8k": (["gsm8k/test.jsonl"], 1319),
    "math": (["math500/test.jsonl"], 500),
    "arc_challenge": (["arc_challenge/validation.jsonl"], 299),
    "commonsense_qa": (["commonsense_qa/validation.jsonl"], 1221),
    "openbookqa": (["openbookqa/validation.jsonl"], 500),
    "boolq": (["boolq/validation.jsonl"], 3270),
    "strategyqa": (["strategyqa/task.json"], 2290),
    "date_understanding": (["date_understanding/task.json"], 369),
    "esnli": (["esnli/test.jsonl"], 9824),
    "tabmwp": (["tabmwp/problems_test1k.json", "tabmwp/problems_dev1k.json"], 2000),
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


def test_esnli_and_tabmwp_rows_are_what_the_files_say(shared_data):
    esnli = load_records("esnli", "test", local_paths=[shared_data / "esnli/test.jsonl"]).records
    raw = [json.loads(line) for line in (shared_data / "esnli/test.jsonl").read_text().splitlines()]
    labels = ("entailment", "neutral", "contradiction")
    assert [r.answer for r in esnli] == [labels[row["label"]] for row in raw]
    assert esnli[0].question.startswith(f"Premise: {raw[0]['premise']}\nHypothesis: {raw[0]['hypothesis']}")
    assert Counter(r.answer for r in esnli).keys() == set(labels) and all(r.rationale for r in esnli)
    for name in ("problems_test1k.json", "problems_dev1k.json"):
        problems = json.loads((shared_data / "tabmwp" / name).read_text())
        records = load_records("tabmwp", "test", local_paths=[shared_data / "tabmwp" / name]).records
        assert len(records) == len(problems) == 1000
        for record, problem in zip(records, problems.values(), strict=True):
            assert record.answer == str(problem["answer"]) and problem["question"].strip() in record.question
            assert (record.choices is not None) == bool(problem["choices"])
            assert record.answer_type.value == "free_text"


# ---- probes that give the answer away (issue 11), measured on the real copies -----------------
#
# An independent, deliberately plain reading of "the probe states the gold answer": the gold value,
# option or label occurs in the probe more often than in its question (a yes/no answer: quoted or
# after "answer"). It shares no code with exgrpo_verl.probes.reveals.

_NUM = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
_YES_NO = re.compile(r"answer\w*\W+(?:is\s+)?\W?(yes|no)\b|[\"'](yes|no)[\"']", re.IGNORECASE)
_NLI_STEMS = {"entailment": "entail", "neutral": "neutral", "contradiction": "contradict"}


def _numbers(text: str) -> list[float]:
    values = []
    for match in _NUM.finditer(text):
        try:
            values.append(float(match.group(0).rstrip(",").replace(",", "")))
        except ValueError:
            pass
    return values


def _option_count(text: str, label: str, option: str) -> int:
    named = len(re.findall(rf"\({re.escape(label)}\)|option {re.escape(label)}\b", text))
    return named + len(re.findall(rf"(?<!\w){re.escape(option.lower())}(?!\w)", text.lower()))


def _math(text: str) -> str:
    return re.sub(r"\s|\$|\\left|\\right", "", text).replace("dfrac", "frac").replace("tfrac", "frac")


def states_gold(probe: str, record: Record) -> bool:
    question, kind = record.question, record.answer_type.value
    if record.choices:
        gold = next(label for label, text in record.choices.items() if record.answer in (label, text))
        labels = [gold] + ([label for label in record.choices if label != gold] if len(record.choices) == 2 else [])
        return any(
            _option_count(probe, label, record.choices[label]) > _option_count(question, label, record.choices[label])
            for label in labels
        )
    if kind in ("number", "free_text") and _NUM.fullmatch(record.answer.replace("$", "")):
        gold = float(record.answer.replace(",", "").replace("$", ""))
        return sum(abs(v - gold) < 1e-9 for v in _numbers(probe)) > sum(
            abs(v - gold) < 1e-9 for v in _numbers(question)
        )
    if kind == "yes_no":
        return len(_YES_NO.findall(probe)) > len(_YES_NO.findall(question))
    if kind == "nli":
        stem = _NLI_STEMS[record.answer]
        return probe.lower().count(stem) > question.lower().count(stem)
    if kind == "math":
        gold = _math(record.answer)
        if re.fullmatch(r"-?\d+", gold):
            result = re.compile("=" + re.escape(gold) + r"(?![\d.])")
            return len(result.findall(_math(probe))) > len(result.findall(_math(question))) or (
                f"boxed{{{gold}}}" in _math(probe)
            )
        return _math(probe).count(gold) > _math(question).count(gold)
    return probe.lower().count(record.answer.lower()) > question.lower().count(record.answer.lower())


def _leak_report(name: str, rows: list[tuple[Record, list[dict]]]) -> dict:
    """Askable probes per question, the share of questions with an askable probe stating the answer,
    and the flagged probes per rule."""
    askable = [[p for p in probes if not p["reveals_answer"]] for _, probes in rows]
    leaking = sum(
        any(states_gold(p["question"], record) for p in asked) for (record, _), asked in zip(rows, askable, strict=True)
    )
    flagged = Counter(p["rule"] for _, probes in rows for p in probes if p["reveals_answer"])
    report = {
        "questions": len(rows),
        "askable_per_question": sum(map(len, askable)) / len(rows),
        "leak_rate": leaking / len(rows),
        "flagged": dict(sorted(flagged.items())),
    }
    print(f"\n{name}: {json.dumps(report)}")
    return report


def _build(shared_data, tmp_path, dataset: str, files: list[str]) -> tuple[dict, list[tuple[Record, list[dict]]]]:
    """The default teacher-free ei-build on a real copy: its stats and (record, RL-row probes) pairs."""
    out = tmp_path / dataset
    local = [f"--local-path={shared_data / f}" for f in files]
    assert exgrpo_main(["ei-build", f"--dataset={dataset}", *local, f"--out-dir={out}", "--no-progress"]) == 0
    records = {r.id: r for r in load_records(dataset, "train", local_paths=[shared_data / f for f in files]).records}
    rl = pd.read_parquet(out / "rl_train.parquet")
    rows = [(records[info["id"]], parse_probes(info, i)) for i, info in enumerate(rl["extra_info"])]
    return json.loads((out / "stats.json").read_text()), rows


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "files", "min_askable"),
    [
        ("gsm8k", ["gsm8k/train.jsonl"], 5.0),
        ("strategyqa", ["strategyqa/task.json"], 5.0),
        ("commonsense_qa", ["commonsense_qa/validation.jsonl"], 5.0),
    ],
)
def test_default_build_asks_no_probe_that_gives_the_answer_away(
    shared_data, tmp_path, capsys, dataset, files, min_askable
):
    stats, rows = _build(shared_data, tmp_path, dataset, files)
    printed = capsys.readouterr().out
    report = _leak_report(dataset, rows)
    assert report["leak_rate"] < 0.01
    assert report["askable_per_question"] >= min_askable
    assert stats["askable_probes_per_kept_question"] == pytest.approx(report["askable_per_question"], abs=1e-4)
    assert {r: s["kept_revealing"] for r, s in stats["rules"].items() if s["kept_revealing"]} == report["flagged"]
    assert f"askable probes per kept question: {stats['askable_probes_per_kept_question']}" in printed
    # the flags are not a blanket: most probes stay askable, and inverse (which needs the answer) is flagged
    all_probes = [p for _, probes in rows for p in probes]
    assert sum(p["reveals_answer"] for p in all_probes) < 0.25 * len(all_probes)
    if dataset == "gsm8k":
        assert report["flagged"]["inverse"] == stats["rules"]["inverse"]["kept"] > 0.9 * len(rows)
        # without the flags (exgrpo.revealing_probes=allow) most dialogues could carry the answer
        assert sum(any(states_gold(p["question"], r) for p in probes) for r, probes in rows) > 0.9 * len(rows)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "files", "split"),
    [
        ("arc_challenge", ["arc_challenge/validation.jsonl"], "validation"),
        ("openbookqa", ["openbookqa/validation.jsonl"], "validation"),
        ("math", ["math500/test.jsonl"], "test"),
        ("date_understanding", ["date_understanding/task.json"], "test"),
        ("esnli", ["esnli/test.jsonl"], "test"),
        ("tabmwp", ["tabmwp/problems_test1k.json", "tabmwp/problems_dev1k.json"], "test"),
    ],
)
def test_template_probes_keep_the_answer_hidden_on_every_real_copy(shared_data, dataset, files, split):
    records = load_records(dataset, split, local_paths=[shared_data / f for f in files]).records
    report = _leak_report(dataset, [(record, template_probes(record).probes) for record in records])
    assert report["leak_rate"] < 0.01
    assert report["askable_per_question"] >= 5.0
