"""kill -9 in the middle of a build, rerun: the outputs equal an uninterrupted build's, and no request
the server answered is ever asked again."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from exgrpo_verl.testing.openai_stub import StubServer
from tests.ei_fixtures import write_jsonl

NOUNS = ("apples", "pears", "plums", "limes", "figs", "dates", "kiwis", "mangos", "grapes", "cherries")
ROWS = [
    {
        "question": f"Ann has {i + 3} {noun} and gets {i + 2} more, then eats 1. How many {noun} does she have?",
        "answer": f"She gets {i + 3} + {i + 2} = <<{i + 3}+{i + 2}={2 * i + 5}>>{2 * i + 5} {noun}.\n"
        f"After eating one she has {2 * i + 5} - 1 = <<{2 * i + 5}-1={2 * i + 4}>>{2 * i + 4}.\n#### {2 * i + 4}",
    }
    for i, noun in enumerate(NOUNS)
]
GOLD = {noun: str(2 * i + 4) for i, noun in enumerate(NOUNS)}
HOLD_AFTER = 150


def script(body: dict) -> str:
    """Deterministic answers: authored probes, probe answers, Eq.1 re-answers right 2 times in 3,
    student answers right half the time."""
    turns = body["messages"]
    text = "\n".join(turn["content"] for turn in turns)
    noun = next(n for n in NOUNS if n in text)
    coin = int(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8], 16)
    content = turns[0]["content"]
    if "You write explanatory probes" in content:
        rule = content.split("Kind of probe: ", 1)[1].split(" ", 1)[0]
        return "NOT_APPLICABLE" if coin % 7 == 0 else f"({rule}) Why does Ann end up with that many {noun}?"
    if body["model"] == "student":
        return f"\\boxed{{{coin % 2}}}"
    if len(turns) == 3:
        return f"\\boxed{{{GOLD[noun] if coin % 3 else '0'}}}"
    return f"Because of the {noun}. \\boxed{{{coin % 2}}}"


def _command(data: Path, out: Path, stub: StubServer) -> list[str]:
    return [
        sys.executable,
        "-m",
        "exgrpo_verl",
        "ei-build",
        "--dataset=gsm8k",
        f"--local-path={data}",
        f"--out-dir={out}",
        f"--teacher-url={stub.base_url}",
        "--teacher-model=teacher",
        f"--student-url={stub.base_url}",
        "--student-model=student",
        "--teacher-concurrency=4",
        "--student-concurrency=4",
        "--no-progress",
    ]


def _cached(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=10) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def _outputs(out: Path) -> dict:
    stats = json.loads((out / "stats.json").read_text())
    stats.pop("requests")
    return {
        "rl": pq.read_table(out / "rl_train.parquet").to_pylist(),
        "sft": pq.read_table(out / "sft_train.parquet").to_pylist(),
        "probes": (out / "probes.jsonl").read_text(),
        "stats": stats,
    }


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    out = tmp_path / "resumed"
    env = {**os.environ, "OPENAI_API_KEY": ""}
    with StubServer(script) as stub:
        stub.hold_after(HOLD_AFTER)
        process = subprocess.Popen(_command(data, out, stub), env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        # Wait until the server holds further requests and the build has committed everything it got.
        while not (stub.held >= 1 and _cached(out / "requests.sqlite") == len(stub.answered)):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, (stub.held, len(stub.answered), _cached(out / "requests.sqlite"))
            time.sleep(0.05)
        answered_before_kill = len(stub.answered)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        stub.release(abort=True)  # the held requests die unanswered with their client
        while stub.in_flight:
            time.sleep(0.01)
        assert not (out / "rl_train.parquet").exists()

        rerun = subprocess.run(_command(data, out, stub), env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        resumed_requests = json.loads((out / "stats.json").read_text())["requests"]
        answered = list(stub.answered)

    with StubServer(script) as reference_stub:
        reference_out = tmp_path / "uninterrupted"
        run = subprocess.run(
            _command(data, reference_out, reference_stub), env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr
        reference_answered = list(reference_stub.answered)

    # The server answered every distinct request exactly once across the killed run and the rerun.
    assert len(answered) == len(set(answered))
    assert sorted(answered) == sorted(reference_answered)
    assert HOLD_AFTER <= answered_before_kill < len(answered)
    asked_again = sum(r["asked"] for r in resumed_requests.values())
    assert asked_again == len(answered) - answered_before_kill
    assert sum(r["cached"] for r in resumed_requests.values()) >= answered_before_kill

    resumed, reference = _outputs(out), _outputs(reference_out)
    assert resumed == reference
    ids = [row["extra_info"]["id"] for row in resumed["rl"]]
    assert len(ids) == len(set(ids)) and len(ids) > 0
    assert resumed["stats"]["questions"]["selected"] == len(ROWS)
