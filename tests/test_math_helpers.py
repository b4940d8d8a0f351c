"""The math-verify helper processes: any caller (an unguarded script, threads, forked children),
and every way a helper can fail. A failure is a wrong answer, never an exception."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from exgrpo_verl.answers import grade, math_helpers
from exgrpo_verl.answers.math_expr import math_equal
from exgrpo_verl.data_sources import UnknownDataSourceError
from exgrpo_verl.reward import compute_score
from tests.test_math_grading import KEPT_CASES, NUMBER_AND_TEXT_CASES, RELATION_CASES

SLOW_PAIR = ("(x+1)^{60}(y+2)^{60}", "(x+2)^{60}(y+1)^{60}")
"""SymPy spends minutes on this pair (in Python code, so a timer signal stops it): a check of it is
still running when the test acts."""
FAILURES = ("timeouts", "overruns", "broken", "start_failures", "skipped")


@pytest.fixture
def fresh_pool():
    """Each test starts with no helpers and zero counts, and leaves none behind."""
    math_helpers.restart_pool()
    yield
    math_helpers.restart_pool()


def _failures() -> dict[str, int]:
    stats = math_helpers.stats()
    return {kind: stats[kind] for kind in FAILURES if stats[kind]}


UNGUARDED_SCRIPT = """\
import json
import os

with open({counter!r}, "a") as counter:
    counter.write(str(os.getpid()) + "\\n")

from verl.utils.import_utils import load_extern_object

compute_score = load_extern_object({reward_file!r}, "compute_score")
from exgrpo_verl.answers import math_helpers

cases = json.loads({cases!r})
scores = [
    compute_score(data_source="math", solution_str=response, ground_truth=gold)["score"] for gold, response in cases
]
print(json.dumps({{"scores": scores, "stats": math_helpers.stats()}}))
"""


@pytest.mark.slow
def test_unguarded_scripts_run_once_and_grade(tmp_path, repo_root):
    """A plain script (no __main__ guard) loading the reward file the way verl does: the script
    runs exactly once per process, with two such processes grading at the same time."""
    cases = (KEPT_CASES + NUMBER_AND_TEXT_CASES)[:50]
    assert len(cases) == 50
    runs = []
    for name in ("first", "second"):
        script = tmp_path / f"{name}.py"
        counter = tmp_path / f"{name}.count"
        script.write_text(
            UNGUARDED_SCRIPT.format(
                counter=str(counter),
                reward_file=str(repo_root / "reward_fns" / "exgrpo_reward.py"),
                cases=json.dumps([(gold, response) for gold, response, _ in cases]),
            )
        )
        proc = subprocess.Popen(
            [sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        runs.append((proc, counter))
    for proc, counter in runs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert len(counter.read_text().splitlines()) == 1
        result = json.loads(out.strip().splitlines()[-1])
        assert result["scores"] == [1.0 if correct else 0.0 for _, _, correct in cases]
        assert result["stats"]["checks"] > 0
        assert not any(result["stats"][kind] for kind in FAILURES)


def test_eight_threads_grade_at_once(fresh_pool):
    cases = RELATION_CASES[:24] + KEPT_CASES[:16]
    with ThreadPoolExecutor(max_workers=8) as pool:
        verdicts = list(pool.map(lambda case: grade("math", case[1], case[0], timeout_s=30)[0], cases * 2))
    assert verdicts == [correct for _, _, correct in cases] * 2
    assert _failures() == {}
    assert 1 <= len(math_helpers.helper_pids()) <= math_helpers.POOL_SIZE


def test_a_check_that_overruns_is_wrong_and_the_helper_survives(fresh_pool):
    assert math_equal("\\sqrt{8}", "2\\sqrt{2}", timeout_s=30)
    pids = math_helpers.helper_pids()
    start = time.monotonic()
    assert not math_equal(*SLOW_PAIR, timeout_s=1)
    assert time.monotonic() - start < 1 + math_helpers.GRACE_S + 1
    assert _failures() == {"timeouts": 1}
    assert math_equal("\\sqrt{8}", "2\\sqrt{2}", timeout_s=30)
    assert math_helpers.helper_pids() == pids


def test_helper_killed_mid_request(fresh_pool):
    math_helpers.restart_pool(size=1)
    assert math_equal("\\sqrt{8}", "2\\sqrt{2}", timeout_s=30)
    [pid] = math_helpers.helper_pids()
    verdict = {}
    worker = threading.Thread(target=lambda: verdict.setdefault("slow", math_equal(*SLOW_PAIR, timeout_s=120)))
    worker.start()
    deadline = time.monotonic() + 30
    while math_helpers.stats()["checks"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the request is on its way, or being worked on
    os.kill(pid, signal.SIGKILL)
    worker.join(60)
    assert verdict == {"slow": False}
    assert _failures() == {"broken": 1}
    assert math_equal("\\sqrt{8}", "2\\sqrt{2}", timeout_s=30)  # a new helper took its place
    assert math_helpers.helper_pids() not in ([], [pid])


def _fake_helper(monkeypatch, code: str) -> None:
    monkeypatch.setattr(math_helpers, "worker_command", lambda: [sys.executable, "-c", code])
    math_helpers.restart_pool()


def test_helper_that_cannot_start(fresh_pool, monkeypatch, caplog):
    _fake_helper(monkeypatch, "import sys; sys.stderr.write('no math here'); sys.exit(3)")
    with caplog.at_level(logging.WARNING, logger="exgrpo_verl.answers.math_helpers"):
        assert compute_score("math", "\\boxed{\\sqrt 2}", "\\sqrt{2}")["score"] == 0.0
        start = time.monotonic()
        assert compute_score("math", "\\boxed{\\sqrt 8}", "2\\sqrt{2}")["score"] == 0.0
        assert time.monotonic() - start < 1.0  # no second start attempt right away
        # answers the cheap comparisons decide are still graded
        assert compute_score("math", "\\boxed{0.50}", ".5")["score"] == 1.0
        assert compute_score("math", "\\boxed{\\frac{1}{2}}", "\\dfrac{1}{2}")["score"] == 1.0
    assert _failures() == {"start_failures": 1, "skipped": 1}
    warnings = [record for record in caplog.records if record.name == "exgrpo_verl.answers.math_helpers"]
    assert len(warnings) == 1 and "no math here" in warnings[0].getMessage()


def test_helper_that_never_says_ready(fresh_pool, monkeypatch):
    monkeypatch.setattr(math_helpers, "START_TIMEOUT_S", 0.5)
    _fake_helper(monkeypatch, "import time; time.sleep(60)")
    assert not math_equal("\\sqrt{8}", "2\\sqrt{2}", timeout_s=5)
    assert _failures() == {"start_failures": 1}
    assert math_helpers.helper_pids() == []


def test_helper_that_never_answers_is_killed(fresh_pool, monkeypatch):
    monkeypatch.setattr(math_helpers, "GRACE_S", 0.2)
    _fake_helper(monkeypatch, "import time; print('ready', flush=True); time.sleep(60)")
    start = time.monotonic()
    assert not math_equal("\\sqrt{8}", "2\\sqrt{2}", timeout_s=0.3)
    assert time.monotonic() - start < 5
    assert _failures() == {"overruns": 1}
    assert math_helpers.helper_pids() == []


def test_helper_that_answers_nonsense_is_replaced(fresh_pool, monkeypatch):
    _fake_helper(monkeypatch, "import sys; print('ready', flush=True); sys.stdin.readline(); print('{x', flush=True)")
    assert not math_equal("\\sqrt{8}", "2\\sqrt{2}", timeout_s=5)
    assert _failures() == {"broken": 1}
    assert math_helpers.helper_pids() == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_uses_its_own_helpers(fresh_pool):
    assert math_equal("\\sqrt{8}", "2\\sqrt{2}", timeout_s=30)
    parent_helpers = math_helpers.helper_pids()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            ok = math_equal("\\sqrt{8}", "2\\sqrt{2}", timeout_s=30) and not math_equal("\\sqrt{8}", "3", timeout_s=30)
            os.write(write_end, json.dumps({"ok": ok, "helpers": math_helpers.helper_pids()}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = json.loads(reader.read() or b"{}")
    os.waitpid(child, 0)
    assert report["ok"] is True
    assert report["helpers"] and not set(report["helpers"]) & set(parent_helpers)
    assert math_equal("\\sqrt{8}", "2\\sqrt{2}", timeout_s=30)
    assert math_helpers.helper_pids() == parent_helpers


def test_compute_score_never_raises(monkeypatch, caplog):
    for gold in (None, {"answer": 1}, float("nan"), b"\xff", object(), ["\\frac12", None]):
        result = compute_score("math", "\\boxed{\\frac{1}{2}}", gold)
        assert result["score"] in (0.0, 1.0)

    def broken_grade(*args, **kwargs):
        raise RuntimeError("checker bug")

    monkeypatch.setattr("exgrpo_verl.reward.grade", broken_grade)
    with caplog.at_level(logging.WARNING, logger="exgrpo_verl.reward"):
        first = compute_score("gsm8k", "#### 72", "72")
        second = compute_score("gsm8k", "#### 72", "72")
    assert first == second == {"score": 0.0, "acc": False, "pred": ""}
    assert len([r for r in caplog.records if "checker bug" in r.getMessage()]) <= 1


def test_unknown_data_source_still_raises():
    with pytest.raises(UnknownDataSourceError):
        compute_score("squad", "\\boxed{1}", "1")
