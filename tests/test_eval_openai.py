"""The openai backend against a scripted OpenAI-compatible server on 127.0.0.1: exact accuracy,
resume after kill -9, no request asked twice, pass@k, and the three input paths (loaders, parquet,
records jsonl)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import exgrpo_verl.datasets
from exgrpo_verl.__main__ import main
from exgrpo_verl.datasets import LoadResult
from exgrpo_verl.eval.records import load_dataset_items
from exgrpo_verl.prompts import question_messages
from exgrpo_verl.schema import build_rl_row
from tests.eval_fixtures import FIXTURE_RECORDS, StubChatServer, write_records_jsonl

# Wrong answers the stub gives for these ids (valid answers of the right type, just not the gold).
WRONG = {"g2": "9", "m2": "3", "c2": "A", "s1": "yes", "d1": "05/02/2021"}


def scripted(record, request) -> str:
    return f"Step by step: the clues point one way.\n\\boxed{{{WRONG.get(record.id, record.answer)}}}"


def expected_accuracy(records=FIXTURE_RECORDS) -> dict[str, float]:
    """Per-dataset accuracy the script implies, counted without any checker."""
    total, right = Counter(), Counter()
    for r in records:
        total[r.data_source] += 1
        right[r.data_source] += r.id not in WRONG
    return {name: 100.0 * right[name] / total[name] for name in total}


def eval_argv(stub: StubChatServer, out: Path, *extra: str) -> list[str]:
    common = ["eval", "--backend", "openai", "--base-url", stub.base_url, "--model", stub.model]
    return [*common, "--out", str(out), "--no-progress", *extra]


def _accuracies(out: Path) -> dict[str, float]:
    return {name: m["accuracy"] for name, m in json.loads(out.read_text())["datasets"].items()}


def _answer_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_exact_accuracy_and_resume_after_kill_without_repeated_requests(tmp_path):
    questions = write_records_jsonl(tmp_path / "questions.jsonl")
    out = tmp_path / "results" / "stub.json"
    generations = out.with_suffix(".generations.jsonl")
    n, done_before_kill = len(FIXTURE_RECORDS), 5
    with StubChatServer(scripted, hang_on=done_before_kill + 1) as stub:
        argv = eval_argv(stub, out, "--records", str(questions), "--concurrency", "1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "exgrpo_verl", *argv],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert stub.hung.wait(60), proc.communicate(timeout=5)
            deadline = time.monotonic() + 30
            while len(generations.read_text().splitlines()) < 1 + done_before_kill and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert len(_answer_lines(generations)) == done_before_kill
        assert not out.exists()
        # a kill in the middle of a write leaves a cut-off last line; the rerun drops it
        with generations.open("a") as handle:
            handle.write('{"dataset": "gsm8k", "id": "g')
        asked_before = len(stub.requests)
        assert asked_before == done_before_kill + 1  # the last one was in flight when killed
        stub.release()

        assert main(argv) == 0
        assert len(stub.requests) - asked_before == n - done_before_kill
        answered = Counter(record_id for record_id, _ in stub.answered)
        assert answered == Counter(r.id for r in FIXTURE_RECORDS)  # every question answered exactly once
        assert _accuracies(out) == pytest.approx(expected_accuracy())
        results = json.loads(out.read_text())
        held_in = [acc for name, acc in _accuracies(out).items() if results["datasets"][name]["group"] == "held_in"]
        assert results["averages"]["held_in"]["accuracy"] == pytest.approx(sum(held_in) / len(held_in))
        assert results["averages"]["held_in"]["complete"] is False
        keys = [(a["dataset"], a["id"], a["sample"]) for a in _answer_lines(generations)]
        assert len(keys) == len(set(keys)) == n

        # a finished run asks nothing more (a greedy run's seed changes nothing), and refuses to mix
        # in answers made with other settings
        assert main(argv) == 0
        assert main([*argv, "--seed", "5"]) == 0
        assert len(stub.requests) == asked_before + n - done_before_kill
        assert main([*argv, "--temperature", "0.7"]) == 2
        assert len(stub.requests) == asked_before + n - done_before_kill


def test_pass_at_k_from_sampled_answers(tmp_path):
    records = FIXTURE_RECORDS[:3]
    questions = write_records_jsonl(tmp_path / "q.jsonl", records)
    out = tmp_path / "sampled.json"

    def even_seeds_right(record, request):  # samples 0..3 use seeds 0..3: two of four right
        return f"\\boxed{{{record.answer if request['seed'] % 2 == 0 else '123456'}}}"

    with StubChatServer(even_seeds_right) as stub:
        argv = eval_argv(stub, out, "--records", str(questions), "--samples", "4", "--temperature", "0.8")
        assert main([*argv, "--pass-k", "1,2,4"]) == 0
    assert Counter(stub.requests) == Counter((r.id, seed) for r in records for seed in range(4))
    metrics = json.loads(out.read_text())["datasets"]["gsm8k"]
    assert (metrics["questions"], metrics["answers"], metrics["correct"]) == (3, 12, 6)
    assert metrics["accuracy"] == pytest.approx(50.0)
    assert metrics["pass_at_k"] == pytest.approx({"1": 50.0, "2": 100 * (1 - 1 / 6), "4": 100.0})


def test_rl_parquet_rows_are_asked_with_their_own_prompt(tmp_path):
    rows = [build_rl_row(r, i, None) for i, r in enumerate(FIXTURE_RECORDS)]
    data = tmp_path / "val.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    out = tmp_path / "parquet.json"
    seen_prompts = []

    def remember(record, request):
        seen_prompts.append(request["messages"])
        return scripted(record, request)

    with StubChatServer(remember) as stub:
        assert main([*eval_argv(stub, out, "--data", str(data)), "--datasets", "held_in", "--limit", "2"]) == 2
        assert main([*eval_argv(stub, out, "--data", str(data)), "--datasets", "gsm8k,csqa,boolq", "--limit", "2"]) == 0
    assert sorted(_accuracies(out)) == ["boolq", "commonsense_qa", "gsm8k"]
    assert _accuracies(out) == pytest.approx({"gsm8k": 50.0, "commonsense_qa": 50.0, "boolq": 100.0})
    assert all(p in [row["prompt"] for row in rows] for p in seen_prompts) and len(seen_prompts) == 5


def test_loaders_are_called_once_per_dataset_with_split_path_and_limit(tmp_path, monkeypatch):
    calls = []

    def load_records(name, split, local_paths=None, limit=None, **kwargs):
        calls.append((name, split, local_paths, limit))
        return LoadResult(records=[r for r in FIXTURE_RECORDS if r.data_source == name][:limit])

    monkeypatch.setattr(exgrpo_verl.datasets, "load_records", load_records)
    out = tmp_path / "loaders.json"
    with StubChatServer(scripted) as stub:
        argv = eval_argv(stub, out, "--datasets", "gsm8k,boolq", "--split", "validation", "--limit", "2")
        assert main([*argv, "--local-path", "openai/gsm8k=/data/gsm8k"]) == 0
    assert calls == [("gsm8k", "validation", ["/data/gsm8k"], 2), ("boolq", "validation", None, 2)]
    assert _accuracies(out) == pytest.approx({"gsm8k": 50.0, "boolq": 100.0})
    prompts = [a["prompt"] for a in _answer_lines(out.with_suffix(".generations.jsonl"))]
    assert question_messages(FIXTURE_RECORDS[0].question, "gsm8k") in prompts


def test_real_loader_reads_the_shared_gsm8k_copy(shared_data):
    items = load_dataset_items("gsm8k", "test", str(shared_data / "gsm8k" / "test.jsonl"), 3)
    assert len(items) == 3 and all(item.gold for item in items)


def test_unserved_model_fails_before_questions_are_read(tmp_path, monkeypatch, capsys):
    from exgrpo_verl.eval import cli

    monkeypatch.setattr(cli, "read_records_jsonl", lambda path: pytest.fail("questions were read"))
    with StubChatServer(scripted, model="served-model") as stub:
        argv = eval_argv(stub, tmp_path / "r.json", "--records", "q.jsonl")
        argv[argv.index("served-model")] = "other-model"
        assert main(argv) == 2
    error = capsys.readouterr().err
    assert "does not serve model 'other-model'" in error and "served-model" in error
