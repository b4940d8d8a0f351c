"""Eval pieces without a model: pass@k, dataset names, model-path checks, bad command lines."""

from __future__ import annotations

import importlib.util
import itertools
import json
from math import comb

import pytest

from exgrpo_verl.__main__ import main
from exgrpo_verl.eval import cli
from exgrpo_verl.eval.backends.local_model import looks_like_path
from exgrpo_verl.eval.cli import resolve_datasets
from exgrpo_verl.eval.errors import EvalError
from exgrpo_verl.eval.metrics import pass_at_k
from tests.eval_fixtures import write_records_jsonl


@pytest.mark.parametrize(("n", "c", "k"), [(4, 2, 1), (4, 2, 2), (5, 1, 3), (6, 0, 2), (3, 3, 3), (8, 5, 4)])
def test_pass_at_k_is_the_chance_that_k_draws_hold_a_correct_one(n, c, k):
    draws = list(itertools.combinations([True] * c + [False] * (n - c), k))
    assert len(draws) == comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(d) for d in draws) / len(draws))


def test_dataset_names_accept_aliases_and_groups():
    assert resolve_datasets("openai/gsm8k, CSQA,gsm8k") == ["gsm8k", "commonsense_qa"]
    assert resolve_datasets("ood") == ["boolq", "openbookqa", "esnli", "gsm8k_reversal"]
    assert len(resolve_datasets("held-in,ood")) == 12
    assert resolve_datasets(None) is None
    with pytest.raises(EvalError, match="supported: strategyqa, .*gsm8k_reversal"):
        resolve_datasets("gsm8k,mmlu")


def test_hub_names_and_paths_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    assert not looks_like_path("Qwen/Qwen2.5-7B-Instruct") and not looks_like_path("gpt2")
    assert looks_like_path("./ckpt") and looks_like_path("/data/model") and looks_like_path("a/b/c")
    assert looks_like_path("checkpoints/step100")


def test_unknown_dataset_lists_the_supported_ones(tmp_path, capsys):
    assert main(["eval", "--model", "m", "--out", str(tmp_path / "r.json"), "--datasets", "gsm8k,mmlu"]) == 2
    error = capsys.readouterr().err
    assert "'mmlu'" in error and all(name in error for name in ("strategyqa", "esnli", "gsm8k_reversal"))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_missing_vllm_names_the_extra(tmp_path, capsys):
    assert main(["eval", "--backend", "vllm", "--model", "m", "--out", str(tmp_path / "r.json")]) == 2
    assert "pip install 'exgrpo_verl[vllm]'" in capsys.readouterr().err


@pytest.mark.parametrize("source", [[], ["--records", "questions.jsonl"]])
def test_missing_model_path_fails_before_any_dataset_is_loaded(tmp_path, monkeypatch, capsys, source):
    monkeypatch.setattr(cli, "load_dataset_items", lambda *a: pytest.fail("a dataset was loaded"))
    monkeypatch.setattr(cli, "read_records_jsonl", lambda *a: pytest.fail("a dataset was loaded"))
    missing = tmp_path / "no-such-checkpoint"
    argv = ["eval", "--backend", "hf", "--model", str(missing), "--out", str(tmp_path / "r.json"), *source]
    assert main(argv) == 2
    assert f"model path {missing} does not exist" in capsys.readouterr().err


def test_bad_decoding_options_are_refused(tmp_path, capsys):
    base = ["eval", "--backend", "hf", "--model", "m", "--out", str(tmp_path / "r.json")]
    assert main([*base, "--samples", "4"]) == 2
    assert "--temperature > 0" in capsys.readouterr().err
    assert main([*base, "--samples", "2", "--temperature", "1", "--pass-k", "4"]) == 2
    assert "between 1 and --samples" in capsys.readouterr().err


def test_bad_records_line_is_named(tmp_path, capsys):
    questions = write_records_jsonl(tmp_path / "q.jsonl")
    with questions.open("a") as handle:
        handle.write(json.dumps({"id": "x", "data_source": "gsm8k", "question": "?"}) + "\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert (
        main(
            [
                "eval",
                "--backend",
                "hf",
                "--model",
                str(model),
                "--records",
                str(questions),
                "--out",
                str(tmp_path / "r.json"),
            ]
        )
        == 2
    )
    assert f"{questions}:14: missing field(s) answer" in capsys.readouterr().err


def test_gguf_checkpoints_load_through_their_folder(tmp_path):
    from exgrpo_verl.eval.backends.hf import _gguf_source

    (tmp_path / "model.Q4.gguf").write_bytes(b"GGUF")
    assert _gguf_source(str(tmp_path / "model.Q4.gguf")) == (str(tmp_path), {"gguf_file": "model.Q4.gguf"})
    assert _gguf_source(str(tmp_path)) == (str(tmp_path), {"gguf_file": "model.Q4.gguf"})
    (tmp_path / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(EvalError, match="several .gguf files"):
        _gguf_source(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert _gguf_source(str(tmp_path)) == (str(tmp_path), {})
    assert _gguf_source("Qwen/Qwen2.5-7B-Instruct") == ("Qwen/Qwen2.5-7B-Instruct", {})


def test_generations_file_keeps_answers_and_refuses_other_settings(tmp_path):
    from exgrpo_verl.eval.backends.base import Completion, GenRequest
    from exgrpo_verl.eval.errors import StaleGenerationsError
    from exgrpo_verl.eval.records import items_from_records
    from exgrpo_verl.eval.store import GenerationStore
    from tests.eval_fixtures import FIXTURE_RECORDS

    item = items_from_records(FIXTURE_RECORDS[:1])[0]
    path = tmp_path / "answers.jsonl"
    with GenerationStore(path, {"model": "a"}):
        pass  # stopped before its first answer: a header alone
    with GenerationStore(path, {"model": "b"}) as store:  # nothing to protect yet, so new settings are fine
        store.append(GenRequest(item, 0), Completion("\\boxed{7}", "stop"), True, "7")
    with pytest.raises(StaleGenerationsError, match="model: file 'b', now 'c'"):
        GenerationStore(path, {"model": "c"})
    with GenerationStore(path, {"model": "b"}) as store:
        assert store.get((item.dataset, item.id, 0))["response"] == "\\boxed{7}"
    with GenerationStore(path, {"model": "c"}, overwrite=True) as store:
        assert len(store) == 0
    (tmp_path / "notes.jsonl").write_text('{"text": "mine"}\n')
    with pytest.raises(StaleGenerationsError, match="not an eval generations file"):
        GenerationStore(tmp_path / "notes.jsonl", {"model": "c"})
    assert (tmp_path / "notes.jsonl").read_text() == '{"text": "mine"}\n'
