"""The stage-1 commands: help, teacher-free default, subsampling, bad input, failed requests."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from exgrpo_verl.__main__ import main as exgrpo_main
from exgrpo_verl.probes.writers import select_fraction
from exgrpo_verl.testing.openai_stub import StubServer
from tests.ei_fixtures import GSM8K_MAIN, write_jsonl

COMMANDS = {"ei-build": "build_ei", "ei-eval-set": "build_eval_set", "ei-check-data": "check_data"}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help(command, repo_root):
    via_module = subprocess.run(
        [sys.executable, "-m", "exgrpo_verl", command, "--help"], capture_output=True, text=True, timeout=120
    )
    assert via_module.returncode == 0 and "--dataset" in via_module.stdout and "--local-path" in via_module.stdout
    script = repo_root / "data_preprocess" / f"{COMMANDS[command]}.py"
    via_script = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert via_script.returncode == 0 and via_script.stdout.split("\n\n", 1)[1] == via_module.stdout.split("\n\n", 1)[1]


def test_build_help_documents_the_settings(capsys):
    with pytest.raises(SystemExit):
        exgrpo_main(["ei-build", "--help"])
    text = capsys.readouterr().out
    for flag in ("--teacher-url", "--student-url", "--fraction", "--min-correct", "--no-consistency-filter", "--rules"):
        assert flag in text
    assert "teacher-free" in text and "counterfactual:" in text


@pytest.fixture()
def gsm8k_file(tmp_path):
    rows = [
        {
            "question": f"Bo has {i + 2} cups and buys {i + 3} more. How many cups does Bo have?",
            "answer": f"Bo has {i + 2} + {i + 3} = <<{i + 2}+{i + 3}={2 * i + 5}>>{2 * i + 5} cups.\n#### {2 * i + 5}",
        }
        for i in range(40)
    ]
    return write_jsonl(tmp_path / "gsm8k.jsonl", rows)


def test_fraction_subsamples_nested_questions(gsm8k_file, tmp_path):
    chosen = {}
    for fraction in ("0.1", "0.25", "0.5", "1"):
        out = tmp_path / f"p{fraction}"
        args = ["ei-build", "--dataset=gsm8k", f"--local-path={gsm8k_file}", f"--out-dir={out}", "--no-progress"]
        assert exgrpo_main([*args, f"--fraction={fraction}", "--seed=3"]) == 0
        chosen[fraction] = [row["extra_info"]["id"] for row in pq.read_table(out / "rl_train.parquet").to_pylist()]
    assert [len(ids) for ids in chosen.values()] == [4, 10, 20, 40]
    assert set(chosen["0.1"]) < set(chosen["0.25"]) < set(chosen["0.5"]) < set(chosen["1"])
    assert select_fraction(40, 0.25, 3) != select_fraction(40, 0.25, 4)
    assert select_fraction(40, 0.25, 3) == sorted(select_fraction(40, 0.25, 3))


def test_teacher_free_is_the_default(gsm8k_file, tmp_path):
    out = tmp_path / "tf"
    assert (
        exgrpo_main(["ei-build", "--dataset=gsm8k", f"--local-path={gsm8k_file}", f"--out-dir={out}", "--limit=5"]) == 0
    )
    stats = json.loads((out / "stats.json").read_text())
    assert stats["config"]["mode"] == "teacher-free" and stats["questions"]["kept"] == 5
    assert not (out / "requests.sqlite").exists()  # no endpoint, no requests
    sft = pq.read_table(out / "sft_train.parquet").to_pylist()
    assert sft[0]["messages"][1]["content"] == "Bo has 2 + 3 = 5 cups.\n\nThe answer is \\boxed{5}."


def test_build_reports_the_probes_that_reveal_the_answer(gsm8k_file, tmp_path, capsys):
    out = tmp_path / "flags"
    assert exgrpo_main(["ei-build", "--dataset=gsm8k", f"--local-path={gsm8k_file}", f"--out-dir={out}"]) == 0
    printed = capsys.readouterr().out
    stats = json.loads((out / "stats.json").read_text())
    rows = pq.read_table(out / "rl_train.parquet").to_pylist()
    probes = [p for row in rows for p in row["extra_info"]["probes"]]
    # one-step solutions: inverse states the answer, and quoting or correcting the only step gives it away
    flagged = {rule: sum(p["reveals_answer"] for p in probes if p["rule"] == rule) for rule in stats["rules"]}
    assert {rule for rule, n in flagged.items() if n} == {"inverse", "step_justification", "error_diagnosis"}
    assert {rule: s["kept_revealing"] for rule, s in stats["rules"].items()} == flagged
    askable = sum(not p["reveals_answer"] for p in probes) / len(rows)
    assert stats["askable_probes_per_kept_question"] == pytest.approx(askable, abs=1e-4) and askable >= 5
    assert stats["kept_questions_with_revealing_probes"] == 40
    assert f"askable probes per kept question: {stats['askable_probes_per_kept_question']}" in printed
    assert "of which reveal the answer: step_justification=40, inverse=40, error_diagnosis=40" in printed
    log = [json.loads(line) for line in (out / "probes.jsonl").read_text().splitlines()]
    assert sum(row["reveals_answer"] for row in log) == 120


def test_bad_row_fails_with_its_location_or_is_skipped(tmp_path, capsys):
    path = write_jsonl(tmp_path / "bad.jsonl", [GSM8K_MAIN[0], {"question": "q?", "answer": "no marks"}])
    args = ["ei-build", "--dataset=gsm8k", f"--local-path={path}", f"--out-dir={tmp_path / 'out'}", "--no-progress"]
    assert exgrpo_main(args) == 1
    error = capsys.readouterr().err
    assert f"{path} line 2, field 'answer'" in error and "--skip-bad-rows" in error
    assert exgrpo_main([*args, "--skip-bad-rows"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 malformed row(s)" in captured.err and f"{path} line 2, field 'answer'" in captured.err
    assert "--skip-bad-rows" not in captured.err  # already given
    assert json.loads((tmp_path / "out/stats.json").read_text())["questions"]["bad_rows_skipped"] == 1


def test_endpoint_flags_are_checked(gsm8k_file, tmp_path, capsys):
    base = ["ei-build", "--dataset=gsm8k", f"--local-path={gsm8k_file}", f"--out-dir={tmp_path}"]
    assert exgrpo_main([*base, "--teacher-url=http://127.0.0.1:9/v1"]) == 1
    assert "--teacher-url needs --teacher-model" in capsys.readouterr().err
    assert exgrpo_main([*base, "--student-url=http://127.0.0.1:9/v1", "--student-model=s"]) == 1
    assert "give a teacher endpoint too" in capsys.readouterr().err
    assert exgrpo_main([*base, "--rules=counterfactual,guessing"]) == 1
    assert "unknown EI rule" in capsys.readouterr().err


def test_failed_requests_are_reported_and_a_rerun_retries_them(gsm8k_file, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["ei-build", "--dataset=gsm8k", f"--local-path={gsm8k_file}", f"--out-dir={out}", "--limit=2"]
    args += ["--rules=inverse", "--max-attempts=2", "--backoff-initial=0.01", "--no-progress"]
    outage = {"on": True}
    with StubServer(lambda body: "\\boxed{5}", faults=lambda key, attempt: 500 if outage["on"] else None) as stub:
        args += [f"--teacher-url={stub.base_url}", "--teacher-model=t"]
        assert exgrpo_main(args) == 3  # every request failed on both attempts
        assert "failed after every retry" in capsys.readouterr().err
        assert json.loads((out / "stats.json").read_text())["questions"]["kept"] == 0
        outage["on"] = False
        assert exgrpo_main(args) == 0
    # The stub always answers 5: Eq.1 keeps the question whose gold is 5 and drops the one whose gold is 7.
    assert json.loads((out / "stats.json").read_text())["questions"]["dropped"] == {"no_probes_left": 1}
    assert len(stub.answered) == len(set(stub.answered))


def test_eval_set_and_check_data(tmp_path, capsys):
    path = write_jsonl(tmp_path / "g.jsonl", GSM8K_MAIN)
    out = tmp_path / "test.parquet"
    assert exgrpo_main(["ei-eval-set", "--dataset=gsm8k_reversal", f"--local-path={path}", f"--out={out}"]) == 0
    rows = pq.read_table(out).to_pylist()
    assert [row["reward_model"]["ground_truth"] for row in rows] == ["12", "6", "40"]
    assert (
        exgrpo_main(["ei-check-data", "--dataset=gsm8k", f"--local-path={path}", f"--out={tmp_path / 'r.jsonl'}"]) == 0
    )
    assert "3 records from 3 rows, 0 malformed" in capsys.readouterr().out
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 3


def test_a_rejected_api_key_stops_the_build(gsm8k_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EXGRPO_TEST_KEY", "wrong")
    with StubServer(api_key="right") as stub:
        code = exgrpo_main(
            ["ei-build", "--dataset=gsm8k", f"--local-path={gsm8k_file}", f"--out-dir={tmp_path}", "--limit=3"]
            + [f"--teacher-url={stub.base_url}", "--teacher-model=t", "--teacher-api-key-env=EXGRPO_TEST_KEY"]
            + ["--no-progress"]
        )
    assert code == 1
    error = capsys.readouterr().err
    assert "HTTP 401" in error and "$EXGRPO_TEST_KEY" in error
    assert not (tmp_path / "rl_train.parquet").exists()


def test_sft_bare_answers_give_a_format_warm_up_where_the_dataset_has_no_rationale(tmp_path):
    """CommonsenseQA ships no rationale: teacher-free SFT is empty unless --sft-bare-answers asks for
    [question -> the gold letter in \\boxed{}], graded correct by the dataset's own checker."""
    rows = [
        {
            "id": f"q{i}",
            "question": f"Where would you keep item {i}?",
            "choices": {"label": list("ABCDE"), "text": ["box", "bag", "shelf", "car", "desk"]},
            "answerKey": "ABCDE"[i % 5],
        }
        for i in range(6)
    ]
    source = write_jsonl(tmp_path / "csqa.jsonl", rows)
    base = ["ei-build", "--dataset=commonsense_qa", "--split=validation", f"--local-path={source}", "--no-progress"]
    assert exgrpo_main([*base, f"--out-dir={tmp_path / 'plain'}"]) == 0
    assert pq.read_table(tmp_path / "plain" / "sft_train.parquet").num_rows == 0
    assert exgrpo_main([*base, f"--out-dir={tmp_path / 'bare'}", "--sft-bare-answers"]) == 0
    sft = pq.read_table(tmp_path / "bare" / "sft_train.parquet").to_pylist()
    assert [row["messages"][1]["content"] for row in sft] == [
        f"The answer is \\boxed{{{row['answerKey']}}}." for row in rows
    ]
    assert all("(C) shelf" in row["messages"][0]["content"] for row in sft)
    assert json.loads((tmp_path / "bare" / "stats.json").read_text())["outputs"]["sft_rows"] == 6
