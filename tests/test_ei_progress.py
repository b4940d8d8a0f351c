"""Request-level progress by phase, the concurrency a local server gets, and the end-of-build drop report,
all against the stub server (fast)."""

from __future__ import annotations

import io
import json
import re

import pytest

from exgrpo_verl.__main__ import main as exgrpo_main
from exgrpo_verl.probes import drop_report
from exgrpo_verl.probes.progress import BuildProgress, choose_mode, format_duration
from exgrpo_verl.probes.server_limits import (
    LOCAL_CONCURRENCY,
    LOCAL_TIMEOUT_S,
    REMOTE_CONCURRENCY,
    default_limits,
    is_local,
    same_local_server,
)
from exgrpo_verl.probes.teacher import RequestCounts
from exgrpo_verl.testing.openai_stub import StubServer
from tests.ei_fixtures import GSM8K_MAIN, write_jsonl

RULES = "inverse,decomposition,step_justification"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gsm8k_file(tmp_path):
    return write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_MAIN)


def _build_args(path, out, base_url, *extra):
    return [
        "ei-build",
        "--dataset=gsm8k",
        f"--local-path={path}",
        f"--out-dir={out}",
        "--limit=2",
        f"--rules={RULES}",
        f"--teacher-url={base_url}",
        "--teacher-model=t",
        f"--student-url={base_url}",
        "--student-model=s",
        *extra,
    ]


def test_progress_counts_by_phase_with_rates_and_eta():
    counts = {"teacher": RequestCounts(), "student": RequestCounts()}
    clock = FakeClock()
    stream = io.StringIO()
    progress = BuildProgress(counts, questions=2, mode="log", interval_s=30, stream=stream, clock=clock)
    for phase, requests in {"rationale": 2, "authoring": 6, "answers": 6, "eq1": 6, "eq2": 6}.items():
        progress.phases[phase].expected += requests
    progress.start()
    assert stream.getvalue().splitlines() == [
        "ei-build: 2 question(s), about 26 model requests (rationale 2, probes 6, answers 6, Eq.1 6, student 6); "
        "a progress line every 30 s"
    ]
    assert "no answer yet" in progress.line() and "ETA ?" in progress.line()
    clock.now += 10
    for _ in range(2):
        progress.finished("rationale")
    counts["teacher"].asked, counts["teacher"].completion_tokens, counts["teacher"].in_flight = 2, 128, 3
    progress.expect("answers", -2)  # a rule that did not fit: two fewer probe answers
    line = progress.line()
    assert line.startswith("[ei-build 0:10] requests 2/24: rationale 2/2, probes 0/6, answers 0/4, Eq.1 0/6")
    assert "questions 0/2" in line and "in flight 3, cached 0, failed 0" in line
    assert "0.20 req/s, 12.8 tok/s" in line and "ETA 1:50" in line  # 22 left at 0.2/s
    progress.finished("eq2", failed=True)
    assert progress.phases["eq2"].failed == 1 and progress.done == 3
    progress.close(finished=False)
    assert stream.getvalue().splitlines()[-1].endswith("(stopped)")


def test_rates_follow_the_recent_window_not_a_slow_start():
    counts = {"teacher": RequestCounts()}
    clock = FakeClock()
    progress = BuildProgress(counts, questions=1, mode="off", clock=clock)
    progress.phases["answers"].expected = 1000
    clock.now += 600  # the server spent ten minutes loading its model: nothing answered
    progress.rates()
    for _ in range(20):  # then one answer a second
        clock.now += 1
        counts["teacher"].asked += 1
        progress.rates()
    requests_per_s, tokens_per_s = progress.rates()
    assert requests_per_s == pytest.approx(1.0) and tokens_per_s is None  # no usage reported: no tok/s


def test_durations_and_modes():
    assert [format_duration(s) for s in (0, 59.6, 61, 3725)] == ["0:00", "1:00", "1:01", "1:02:05"]
    assert choose_mode(False, io.StringIO()) == "off" and choose_mode(True, io.StringIO()) == "log"

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert choose_mode(True, Terminal()) == "bar"


def test_a_build_logs_request_progress_where_stderr_is_not_a_terminal(gsm8k_file, tmp_path, capsys):
    script = lambda body: "First I check the numbers, then I add them.\n\n\\boxed{10}"  # noqa: E731
    with StubServer(script, latency_s=0.05) as stub:
        args = _build_args(gsm8k_file, tmp_path / "out", stub.base_url, "--progress-interval=0.05")
        assert exgrpo_main(args) == 0
    err = capsys.readouterr().err
    plan = "about 26 model requests (rationale 2, probes 6, answers 6, Eq.1 6, student 6)"
    assert f"ei-build: 2 question(s), {plan}" in err
    lines = [line for line in err.splitlines() if line.startswith("[ei-build ")]
    assert len(lines) >= 3, err  # periodic lines while the requests run, and the last one
    assert any("req/s" in line and "tok/s" in line and "ETA" in line for line in lines[:-1])
    done = re.match(r"\[ei-build [\d:]+\] requests (\d+)/(\d+): (.*) \(done\)$", lines[-1])
    assert done and done[1] == done[2], lines[-1]
    for phase in re.findall(r"(?:rationale|probes|answers|Eq\.1|student) (\d+/\d+)", done[3]):
        finished, expected = phase.split("/")
        assert finished == expected, lines[-1]
    assert "questions 2/2" in lines[-1]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["requests"]["teacher"]["completion_tokens"] > 0  # the stub's usage, as servers report it


def test_no_progress_is_silent(gsm8k_file, tmp_path, capsys):
    with StubServer() as stub:
        assert exgrpo_main(_build_args(gsm8k_file, tmp_path / "out", stub.base_url, "--no-progress")) in (0, 3)
    assert "[ei-build" not in capsys.readouterr().err


def test_local_server_defaults_and_shared_slots(gsm8k_file, tmp_path, capsys):
    """Teacher and student on one local server: 4 requests in flight in all, 600 s each, and the build says so."""
    with StubServer(latency_s=0.1) as stub:
        assert exgrpo_main(_build_args(gsm8k_file, tmp_path / "out", stub.base_url, "--no-progress")) in (0, 3)
        peak = stub.max_in_flight
    err = capsys.readouterr().err
    assert 1 < peak <= LOCAL_CONCURRENCY
    expected = f"{LOCAL_CONCURRENCY} request(s) in flight (--teacher-concurrency), {LOCAL_TIMEOUT_S:g} s per request"
    assert expected in err
    assert f"teacher and student share one server: {LOCAL_CONCURRENCY} request(s) in flight in all" in err
    with StubServer(latency_s=0.1) as stub:
        args = _build_args(gsm8k_file, tmp_path / "again", stub.base_url, "--no-progress", "--teacher-concurrency=2")
        assert exgrpo_main([*args, "--request-timeout=30"]) in (0, 3)
        assert stub.max_in_flight <= 2
    err = capsys.readouterr().err  # the teacher's pool (2) is the shared one; only the student's choice is explained
    assert "teacher endpoint" not in err and "request(s) in flight (--student-concurrency)" in err


def test_limits_follow_where_the_server_is_and_what_it_says_it_is():
    assert is_local("http://localhost:8000/v1") and is_local("http://127.0.0.1:1/v1") and is_local("http://[::1]:8/v1")
    assert is_local("http://0.0.0.0:8000/v1") and not is_local("https://api.openai.com/v1")
    assert same_local_server("http://127.0.0.1:8/v1/", "http://127.0.0.1:8/v1")
    assert not same_local_server("https://api.openai.com/v1", "https://api.openai.com/v1")
    assert default_limits("https://api.example.invalid/v1").concurrency == REMOTE_CONCURRENCY  # nothing is asked
    with StubServer(owned_by="vllm") as vllm, StubServer() as other:
        assert default_limits(vllm.base_url).concurrency == REMOTE_CONCURRENCY
        assert default_limits(other.base_url).concurrency == LOCAL_CONCURRENCY
        assert not other.received  # only GET /models was asked


def test_a_weak_teacher_and_a_copy_of_it_as_student_are_explained(gsm8k_file, tmp_path, capsys):
    """The stub answers 10 to every question and probe (right for the first question only): the summary
    names each filter, why, and the flags that change it."""

    def script(body):
        if "Reply with the probe text only" in body["messages"][-1]["content"]:
            return "Why is the total what it is?"
        return "one two three four five six seven eight nine ten eleven twelve \\boxed{10}"

    with StubServer(script) as stub:
        out = tmp_path / "out"
        code = exgrpo_main(_build_args(gsm8k_file, out, stub.base_url, "--no-progress", "--teacher-max-tokens=20"))
    assert code == 0
    printed = capsys.readouterr().out
    assert "most of the data was dropped (2 of 2 questions" in printed
    assert "dropped by Eq.1 (consistency)" in printed and "--no-consistency-filter" in printed
    assert "dropped by Eq.2 (rejection): the student answered every consistent probe correctly" in printed
    assert "--no-rejection-filter" in printed
    assert "the teacher's own solution R_T was wrong" in printed and "--no-teacher-rationale" in printed
    stats = json.loads((out / "stats.json").read_text())
    assert stats["drop_reasons"] == drop_report.explain(stats) and len(stats["drop_reasons"]) >= 3


def test_drop_report_names_cut_answers_and_the_band():
    stats = {
        "config": {"teacher_max_tokens": 64, "filters": {"min_correct": 2, "max_correct": None}},
        "questions": {"selected": 4, "kept": 3, "dropped": {"below_min_correct": 1}},
        "rules": {
            "inverse": {"generated": 4, "kept": 2, "no_final_answer": 2, "not_applicable_reasons": {}},
            "analogical": {"generated": 0, "kept": 0, "not_applicable": 4, "not_applicable_reasons": {"no slot": 4}},
        },
        "requests": {"teacher": {"truncated": 3}},
    }
    lines = drop_report.explain(stats)
    assert drop_report.headline(stats) is None  # a quarter of the questions, half the probes: no warning
    assert any("4 rule slot(s) gave no probe" in line and "analogical: no slot (4)" in line for line in lines)
    assert any("3 teacher answer(s) were cut at --teacher-max-tokens 64" in line for line in lines)
    assert any("fewer than --min-correct 2" in line for line in lines)
    assert drop_report.explain({"questions": {"selected": 1, "kept": 1, "dropped": {}}}) == []
