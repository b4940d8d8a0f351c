"""Stage 1 through a real model server: ``transformers serve`` (transformers' own OpenAI-compatible
server, its ``serving`` extra) on tiny models built here, with the hub switched off (HF_HUB_OFFLINE=1).

The models are :func:`save_fixed_reply_model` ones: the teacher answers every prompt with
``\\boxed{7}``, the student with ``\\boxed{3}``, so the filters have something to decide: of the two
questions (gold 7 and gold 10) the teacher solves the first, and the student gets every probe wrong,
so Eq.2 keeps it; the second fails Eq.1. The stub-server tests cover the faults; these cover the
real HTTP server: its request and response format, usage counts, model names that are local paths,
and continuous batching.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from exgrpo_verl.__main__ import main as exgrpo_main
from exgrpo_verl.testing.fixed_reply import save_fixed_reply_model
from exgrpo_verl.testing.transformers_serve import TransformersServer, serving_available
from tests.ei_fixtures import GSM8K_MAIN, write_jsonl

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(serving_available() is not None, reason=str(serving_available())),
]

TEACHER_REPLY = "\\boxed{7}"
STUDENT_REPLY = "\\boxed{3}"
RULES = "inverse,decomposition,step_justification"
GOLD_7 = {
    "question": "Ann has 3 pens and buys 4 more. How many pens does she have?",
    "answer": "She has 3 + 4 = <<3+4=7>>7 pens.\n#### 7",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {
        "teacher": str(save_fixed_reply_model(root / "teacher", TEACHER_REPLY)),
        "student": str(save_fixed_reply_model(root / "student", STUDENT_REPLY)),
    }


@pytest.fixture(scope="module")
def gsm8k_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "gsm8k.jsonl", [GOLD_7, GSM8K_MAIN[0]])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server, no model preloaded: it loads whichever local folder a request names."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with TransformersServer(log_path=log) as running:
        yield running


def _build(gsm8k_file, out, base_url: str, teacher: str, student: str, *extra: str) -> int:
    return exgrpo_main(
        [
            "ei-build",
            "--dataset=gsm8k",
            f"--local-path={gsm8k_file}",
            f"--out-dir={out}",
            f"--rules={RULES}",
            f"--teacher-url={base_url}",
            f"--teacher-model={teacher}",
            f"--student-url={base_url}",
            f"--student-model={student}",
            "--teacher-max-tokens=64",
            "--student-max-tokens=64",
            "--progress-interval=0.5",
            *extra,
        ]
    )


def test_teacher_and_student_on_one_real_server(server, models, gsm8k_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert _build(gsm8k_file, out, server.base_url, models["teacher"], models["student"]) == 0, server.log_tail()
    captured = capsys.readouterr()
    for name in ("rl_train.parquet", "sft_train.parquet", "probes.jsonl", "stats.json"):
        assert (out / name).is_file(), name
    stats = json.loads((out / "stats.json").read_text())
    teacher, student = stats["requests"]["teacher"], stats["requests"]["student"]
    assert teacher["asked"] > 0 and student["asked"] > 0 and teacher["failed"] == student["failed"] == 0
    assert teacher["completion_tokens"] > 0  # the server's usage counts
    assert stats["questions"]["kept"] == 1 and stats["questions"]["dropped"] == {"no_consistent_probes": 1}
    assert stats["questions"]["with_teacher_rationale"] == 1
    log = [json.loads(line) for line in (out / "probes.jsonl").read_text().splitlines()]
    assert log and {row["teacher_answer"] for row in log} == {TEACHER_REPLY}  # answered by the served teacher
    assert {row["student_correct"] for row in log if row["status"] == "kept"} == {False}
    rows = pq.read_table(out / "rl_train.parquet").to_pylist()
    assert [row["reward_model"]["ground_truth"] for row in rows] == ["7"]
    sft = pq.read_table(out / "sft_train.parquet").to_pylist()
    assert any(turn["content"] == TEACHER_REPLY for row in sft for turn in row["messages"])  # R_T from the server
    posts = server.log_tail(10**7).count('"POST /v1/chat/completions HTTP/1.1" 200')
    assert posts >= teacher["asked"] + student["asked"]
    progress = [line for line in captured.err.splitlines() if line.startswith("[ei-build ")]
    assert progress and progress[-1].endswith("(done)") and "questions 2/2" in progress[-1]
    assert "teacher and student share one server" in captured.err


def test_the_teacher_as_its_own_student_is_explained(server, models, gsm8k_file, tmp_path, capsys):
    """The issue's laptop setup, one model as teacher and student: Eq.2 drops what it solves, and says so."""
    out = tmp_path / "same"
    assert _build(gsm8k_file, out, server.base_url, models["teacher"], models["teacher"], "--no-progress") == 0
    printed = capsys.readouterr().out
    assert json.loads((out / "stats.json").read_text())["questions"]["dropped"] == {
        "all_solved": 1,
        "no_consistent_probes": 1,
    }
    assert "most of the data was dropped (2 of 2 questions" in printed
    assert "dropped by Eq.2 (rejection)" in printed and "--no-rejection-filter" in printed


def test_continuous_batching_server(models, gsm8k_file, tmp_path, capsys):
    """``transformers serve --continuous-batching`` with the model preloaded (requests must name it as given)."""
    model = models["teacher"]
    with TransformersServer(model=model, continuous_batching=True, log_path=tmp_path / "serve.log") as server:
        out = tmp_path / "out"
        assert _build(gsm8k_file, out, server.base_url, model, model, "--no-progress") == 0, server.log_tail()
        assert "CB: True" in server.log_tail(10**7)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["requests"]["teacher"]["asked"] > 0 and stats["requests"]["teacher"]["failed"] == 0
    assert stats["questions"]["with_teacher_rationale"] == 1
