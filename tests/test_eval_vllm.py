"""The vllm backend's glue, with a stand-in ``vllm`` module (vLLM needs a GPU): engine arguments,
token-id prompts rendered by the chat template, per-sample seeds, chunking, and exact accuracy."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from exgrpo_verl.__main__ import main
from exgrpo_verl.data_sources import DATA_SOURCES
from exgrpo_verl.eval.backends.base import render_prompt_ids
from exgrpo_verl.prompts import question_messages
from exgrpo_verl.testing import build_tokenizer
from tests.eval_fixtures import FIXTURE_RECORDS, record_for_prompt, write_records_jsonl

WRONG = {"g1", "c2", "b1"}


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int | None = None


class FakeLLM:
    """Answers from the fixture script; records what vLLM would have been asked."""

    instances: list[FakeLLM] = []

    def __init__(self, **engine_args: Any) -> None:
        self.engine_args = engine_args
        self.tokenizer = build_tokenizer("qwen2")
        self.calls: list[tuple[list[list[int]], list[SamplingParams]]] = []
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, sampling_params, use_tqdm=True):
        assert len(prompts) == len(sampling_params) and use_tqdm is False
        self.calls.append(([p["prompt_token_ids"] for p in prompts], list(sampling_params)))
        outputs = []
        for prompt in prompts:
            record = record_for_prompt(self.tokenizer.decode(prompt["prompt_token_ids"]))
            text = f"\\boxed{{{'41' if record.id in WRONG else record.answer}}}"
            outputs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text, finish_reason="stop")]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    module.LLM, module.SamplingParams = FakeLLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.instances.clear()
    return FakeLLM.instances


def test_vllm_backend_asks_token_prompts_in_chunks_with_per_sample_seeds(fake_vllm, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    questions = write_records_jsonl(tmp_path / "q.jsonl")
    out = tmp_path / "vllm.json"
    argv = ["eval", "--backend", "vllm", "--model", str(model), "--records", str(questions), "--out", str(out)]
    argv += ["--tensor-parallel-size", "2", "--max-model-len", "4096", "--batch-size", "5", "--no-progress"]
    assert main([*argv, "--temperature", "0.6", "--samples", "2", "--seed", "10"]) == 0

    (llm,) = fake_vllm
    assert llm.engine_args == {
        "model": str(model),
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.9,
        "dtype": "auto",
        "seed": 10,
        "max_model_len": 4096,
    }
    # one generate call per chunk of at most 5 requests, datasets one after another
    per_dataset = Counter(r.data_source for r in FIXTURE_RECORDS)
    chunks = [
        min(5, 2 * n - start) for s in DATA_SOURCES for n in [per_dataset[s.name]] for start in range(0, 2 * n, 5)
    ]
    assert [len(prompts) for prompts, _ in llm.calls] == chunks
    prompts = [p for batch, _ in llm.calls for p in batch]
    params = [p for _, batch in llm.calls for p in batch]
    tokenizer = build_tokenizer("qwen2")
    expected = {
        tuple(render_prompt_ids(tokenizer, question_messages(r.question, r.data_source))) for r in FIXTURE_RECORDS
    }
    assert set(map(tuple, prompts)) == expected
    assert Counter(p.seed for p in params) == {10: len(FIXTURE_RECORDS), 11: len(FIXTURE_RECORDS)}
    assert {(p.n, p.temperature, p.top_p, p.max_tokens) for p in params} == {(1, 0.6, 1.0, 2048)}

    results = json.loads(out.read_text())
    for name, metrics in results["datasets"].items():
        records = [r for r in FIXTURE_RECORDS if r.data_source == name]
        assert metrics["correct"] == 2 * sum(r.id not in WRONG for r in records), name
        assert metrics["answers"] == 2 * len(records)


def test_vllm_greedy_sends_no_seed(fake_vllm, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    questions = write_records_jsonl(tmp_path / "q.jsonl", FIXTURE_RECORDS[:2])
    argv = ["eval", "--backend", "vllm", "--model", str(model), "--records", str(questions)]
    assert main([*argv, "--out", str(tmp_path / "g.json"), "--no-progress"]) == 0
    (llm,) = fake_vllm
    assert {(p.temperature, p.seed) for _, batch in llm.calls for p in batch} == {(0.0, None)}
