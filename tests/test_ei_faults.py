"""ei-build against endpoints that fail: dead at the start (stop within seconds, name the URL, write
nothing), empty replies (retried, never kept), an endpoint that dies mid-build (stop, then a rerun
resumes with nothing lost) or comes back within the retries, and how failures are counted."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exgrpo_verl.__main__ import main as exgrpo_main
from exgrpo_verl.datasets import LoadResult
from exgrpo_verl.probes import messages
from exgrpo_verl.probes.pipeline import BuildConfig, build
from exgrpo_verl.probes.teacher import EndpointConfig
from exgrpo_verl.testing import dead_endpoints
from exgrpo_verl.testing.openai_stub import StubServer, fail_first
from tests.ei_fixtures import write_jsonl
from tests.test_ei_filters import RECORDS
from tests.test_ei_filters import script as filters_script
from tests.test_ei_resume import ROWS, _cached, _outputs, script

ENV = {**os.environ, "OPENAI_API_KEY": ""}
FAST_RETRIES = ["--backoff-initial=0.01", "--backoff-max=0.05"]


@pytest.fixture(scope="module")
def forty_questions(tmp_path_factory) -> Path:
    rows = [
        {
            "question": f"Bo has {i + 2} cups and buys {i + 3} more. How many cups does Bo have?",
            "answer": f"Bo has {i + 2} + {i + 3} = <<{i + 2}+{i + 3}={2 * i + 5}>>{2 * i + 5} cups.\n#### {2 * i + 5}",
        }
        for i in range(40)
    ]
    return write_jsonl(tmp_path_factory.mktemp("data") / "gsm8k.jsonl", rows)


def _build_command(data: Path, out: Path, teacher_url: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "exgrpo_verl",
        "ei-build",
        "--dataset=gsm8k",
        f"--local-path={data}",
        f"--out-dir={out}",
        f"--teacher-url={teacher_url}",
        "--teacher-model=teacher-7b",
        "--no-progress",
        *extra,
    ]


DEAD = {
    "refusing": (dead_endpoints.refusing, ("Cannot connect to host",)),
    # a close racing the request reads as a disconnect or, while the client still writes, a reset
    "hanging_up": (dead_endpoints.hanging_up, ("Server disconnected", "Connection reset by peer")),
    "stalling": (dead_endpoints.stalling, ("no answer within 5 s",)),
}


@pytest.mark.parametrize("kind", [*DEAD, "unresolvable"])
def test_a_dead_teacher_stops_the_build_within_seconds(kind, forty_questions, tmp_path):
    """Default settings, 40 questions: exit 1 in well under 10 s, naming URL, model and error; no files."""
    out = tmp_path / "out"
    with DEAD[kind][0]() if kind in DEAD else contextlib.nullcontext(dead_endpoints.UNRESOLVABLE_URL) as url:
        start = time.monotonic()
        run = subprocess.run(
            _build_command(forty_questions, out, url, "--limit=40"), env=ENV, capture_output=True, text=True
        )
        elapsed = time.monotonic() - start
    assert run.returncode == 1, run.stderr
    assert elapsed < 10, elapsed
    error = run.stderr
    expected = DEAD[kind][1] if kind in DEAD else ("Cannot connect to host teacher.invalid:8000",)
    assert f"teacher endpoint {url} (model 'teacher-7b') is not answering" in error, error
    assert any(reason in error for reason in expected), error
    assert not out.exists()  # no empty parquet, no stats, no cache file


def test_a_dead_student_stops_the_build_before_the_teacher_is_asked(forty_questions, tmp_path):
    out = tmp_path / "out"
    with StubServer(script) as stub, dead_endpoints.refusing() as student_url:
        command = _build_command(forty_questions, out, stub.base_url, f"--student-url={student_url}")
        run = subprocess.run([*command, "--student-model=student-1b"], env=ENV, capture_output=True, text=True)
    assert run.returncode == 1
    assert f"student endpoint {student_url} (model 'student-1b') is not answering" in run.stderr
    assert stub.received == [] and not out.exists()


@pytest.fixture(scope="module")
def resume_data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("resume") / "train.jsonl", ROWS)


def _teacher_and_student(data: Path, out: Path, stub_url: str) -> list[str]:
    command = _build_command(data, out, stub_url, "--teacher-concurrency=4", "--student-concurrency=4")
    return [*command, f"--student-url={stub_url}", "--student-model=student"]


@pytest.fixture(scope="module")
def clean_build(resume_data, tmp_path_factory) -> tuple[dict, list[str], Path]:
    """Outputs of an uninterrupted build against a clean stub, the requests it answered, its folder."""
    out = tmp_path_factory.mktemp("clean") / "out"
    with StubServer(script) as stub:
        run = subprocess.run(_teacher_and_student(resume_data, out, stub.base_url), env=ENV, capture_output=True)
        assert run.returncode == 0, run.stderr
        answered = list(stub.answered)
    return _outputs(out), answered, out


def _blank_rows(cache: Path) -> int:
    with sqlite3.connect(cache) as db:
        return db.execute("SELECT COUNT(*) FROM completions WHERE trim(response) = ''").fetchone()[0]


@pytest.mark.parametrize("fault", ["empty", "blank", "null"])
def test_an_empty_first_reply_to_every_request_changes_nothing(fault, resume_data, clean_build, tmp_path):
    reference, reference_answered, _ = clean_build
    out = tmp_path / "out"
    with StubServer(script, faults=fail_first(fault)) as stub:
        command = _teacher_and_student(resume_data, out, stub.base_url)[3:]
        assert exgrpo_main([*command, *FAST_RETRIES]) == 0
    assert _outputs(out) == reference
    assert sorted(stub.answered) == sorted(reference_answered)
    assert set(stub.attempts.values()) == {2}  # every request: one empty reply, one answer
    requests = json.loads((out / "stats.json").read_text())["requests"]
    for counts in requests.values():
        assert counts["errors"] == {"empty_content": counts["asked"]} and counts["failed"] == 0
    assert _blank_rows(out / "requests.sqlite") == 0


def test_persistent_empty_replies_fail_under_their_own_kind(resume_data, tmp_path, capsys):
    out = tmp_path / "out"
    with StubServer(script, faults=lambda key, attempt: "empty") as stub:
        command = _build_command(resume_data, out, stub.base_url, "--max-attempts=2", "--limit=2", *FAST_RETRIES)
        assert exgrpo_main(command[3:]) == 3
    error = capsys.readouterr().err
    teacher = json.loads((out / "stats.json").read_text())["requests"]["teacher"]
    assert teacher["failed"] > 0 and teacher["asked"] == 0
    assert teacher["failed_by_kind"] == {"empty_content": teacher["failed"]}
    assert teacher["errors"] == {"empty_content": 2 * teacher["failed"]}
    assert f"{teacher['failed']} request(s) failed after every retry (empty_content: {teacher['failed']})" in error
    assert _blank_rows(out / "requests.sqlite") == 0


def _wait_until_held_and_committed(stub: StubServer, process: subprocess.Popen, cache: Path) -> None:
    deadline = time.monotonic() + 120
    while not (stub.held >= 1 and _cached(cache) == len(stub.answered)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, (stub.held, len(stub.answered), _cached(cache))
        time.sleep(0.05)


def test_an_endpoint_that_dies_mid_build_stops_it_and_a_rerun_resumes(resume_data, clean_build, tmp_path):
    reference, reference_answered, _ = clean_build
    out = tmp_path / "out"
    port = dead_endpoints.free_port()
    first = StubServer(script, port=port).start()
    command = _teacher_and_student(resume_data, out, first.base_url) + ["--max-attempts=3", *FAST_RETRIES]
    try:
        first.hold_after(120)
        process = subprocess.Popen(command, env=ENV, stderr=subprocess.PIPE, text=True)
        _wait_until_held_and_committed(first, process, out / "requests.sqlite")
    finally:
        first.stop()  # the server dies: held requests are cut, new connections refused
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert (
        f"endpoint {first.base_url} (model " in stderr
        and "is down: 3 attempt(s) at one request failed, the last with ClientConnectorError" in stderr
    )
    assert "Cannot connect to host" in stderr and "rerun the same command" in stderr
    assert not (out / "rl_train.parquet").exists() and not (out / "stats.json").exists()
    answered_before = list(first.answered)
    assert _cached(out / "requests.sqlite") == len(answered_before) >= 120

    # Still down: the rerun goes through the cached answers and stops at the first missing one.
    start = time.monotonic()
    still_down = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=60)
    assert still_down.returncode == 1 and time.monotonic() - start < 10
    assert f"warning: teacher endpoint {first.base_url} (model 'teacher-7b') is not answering" in still_down.stderr
    assert "The cache holds no answer to this request." in still_down.stderr
    assert not (out / "rl_train.parquet").exists() and _cached(out / "requests.sqlite") == len(answered_before)

    with StubServer(script, port=port) as back:
        rerun = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
    # Nothing answered before the outage is asked again, nothing is missing, the outputs are the clean ones.
    assert not set(back.answered) & set(answered_before)
    assert sorted(answered_before + back.answered) == sorted(reference_answered)
    assert _outputs(out) == reference


def test_an_endpoint_back_within_the_retries_loses_nothing(resume_data, clean_build, tmp_path):
    reference, reference_answered, _ = clean_build
    out = tmp_path / "out"
    port = dead_endpoints.free_port()
    first = StubServer(script, port=port).start()
    command = _teacher_and_student(resume_data, out, first.base_url)
    command += ["--max-attempts=8", "--backoff-initial=0.2", "--backoff-max=1"]
    first.hold_after(120)
    process = subprocess.Popen(command, env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_held_and_committed(first, process, out / "requests.sqlite")
    finally:
        first.stop()
    time.sleep(0.5)  # down for a while: requests are refused and wait to retry
    with StubServer(script, port=port) as back:
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    requests = json.loads((out / "stats.json").read_text())["requests"]
    assert sum(counts["errors"].get("unreachable", 0) for counts in requests.values()) > 0  # it was down
    assert all(counts["failed"] == 0 for counts in requests.values())
    answered = first.answered + back.answered
    assert len(answered) == len(set(answered)) and sorted(answered) == sorted(reference_answered)
    assert _outputs(out) == reference


def test_teacher_rationale_fallbacks_are_counted(tmp_path):
    """R_T is right only for apples (filters_script); a failed R_T request also falls back."""
    endpoint = {"concurrency": 4, "timeout_s": 5.0, "backoff_initial_s": 0.01, "backoff_max_s": 0.02}

    def faults(key: str, attempt: int) -> int | None:
        content = stub.bodies[key]["messages"][0]["content"]
        is_rationale = not content.endswith(messages.PROBE_ANSWER_INSTRUCTION)
        return 400 if is_rationale and "marbles" in content else None

    with StubServer(filters_script) as stub:
        stub.faults = faults
        config = BuildConfig(
            dataset="gsm8k",
            out_dir=tmp_path / "out",
            rules=("inverse",),
            teacher=EndpointConfig(stub.base_url, "teacher", **endpoint),
            probe_source="template",
            consistency_filter=False,
            progress=False,
        )
        result = build(config, LoadResult(records=list(RECORDS), rows_read=len(RECORDS)))
    questions = result.stats["questions"]
    assert questions["with_teacher_rationale"] == 1  # apples
    assert questions["teacher_rationale_fallbacks"] == {"incorrect": 2, "request_failed": 1}
    assert result.stats["requests"]["teacher"]["failed_by_kind"] == {"http_400": 1}


def test_a_finished_build_reruns_from_the_cache_with_the_endpoint_off(resume_data, clean_build, tmp_path):
    """Changing a setting that needs no new request must not need the server."""
    reference, _, clean_out = clean_build
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(clean_out / "requests.sqlite", out / "requests.sqlite")
    with dead_endpoints.refusing() as url:
        run = subprocess.run(_teacher_and_student(resume_data, out, url), env=ENV, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"warning: teacher endpoint {url} (model 'teacher-7b') is not answering" in run.stderr
    assert f"warning: student endpoint {url} (model 'student') is not answering" in run.stderr
    assert _outputs(out) == reference
