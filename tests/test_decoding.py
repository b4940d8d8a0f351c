"""The hf rollout's decoding loop: its in-place key/value cache reads and grows like transformers' own,
its sampler draws from the distribution it is given, the loop gives ``generate``'s tokens, and rows that
join a running batch decode as they would alone."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import GenerationConfig
from transformers.cache_utils import DynamicLayer

from exgrpo_verl.local.decoding import PreallocatedLayer, Sampling, preallocated_cache, sample_from
from exgrpo_verl.local.hf_generation import GenerationRequest, HFGenerator
from exgrpo_verl.testing import build_tiny_model


@pytest.fixture(scope="module")
def model(qwen_tokenizer):
    return build_tiny_model(qwen_tokenizer, "qwen2", seed=5).eval()


@pytest.mark.parametrize("capacity", [64, 3])  # 3: the buffer must grow twice
def test_preallocated_layer_holds_what_a_dynamic_layer_holds(capacity):
    torch.manual_seed(0)
    dynamic, preallocated = DynamicLayer(), PreallocatedLayer(capacity)
    for length in (5, 1, 1, 4, 1):
        keys, values = torch.randn(2, 3, length, 8), torch.randn(2, 3, length, 6)  # value dim may differ
        expected = dynamic.update(keys, values)
        got = preallocated.update(keys, values)
        for want, have in zip(expected, got, strict=True):
            assert have.shape == want.shape and torch.equal(have, want)
    assert preallocated.get_seq_length() == dynamic.get_seq_length() == 12
    assert preallocated.capacity >= 12


def test_an_in_place_cache_keeps_earlier_views_of_its_keys_valid():
    layer = PreallocatedLayer(16)
    first = torch.randn(1, 1, 4, 2)
    keys, _ = layer.update(first, first)
    layer.update(torch.randn(1, 1, 1, 2), torch.randn(1, 1, 1, 2))
    assert torch.equal(keys, first)  # the step writes its own column only


def test_the_model_cache_replaces_full_attention_layers_only(model):
    cache = preallocated_cache(model.config, 32)
    assert len(cache.layers) == model.config.num_hidden_layers
    assert all(type(layer) is PreallocatedLayer for layer in cache.layers)


def test_sampling_follows_the_given_probabilities():
    torch.manual_seed(0)
    probs = torch.tensor([[0.0, 0.2, 0.0, 0.8], [0.5, 0.0, 0.5, 0.0]]).repeat(5000, 1)
    tokens = sample_from(probs * 3)  # unnormalised rows are fine
    first, second = tokens[0::2], tokens[1::2]
    assert set(first.tolist()) == {1, 3} and set(second.tolist()) == {0, 2}  # never a zero-probability token
    assert abs((first == 3).float().mean().item() - 0.8) < 0.02
    assert abs((second == 2).float().mean().item() - 0.5) < 0.02


def _requests(tokenizer, texts: list[str], max_tokens: int, **sampling) -> list[GenerationRequest]:
    settings = Sampling(**sampling, ignore_eos=True)
    return [GenerationRequest(tokenizer.encode(t, add_special_tokens=False), max_tokens, settings, True) for t in texts]


def _generator(model, tokenizer, kv_cache_tokens: int = 0) -> HFGenerator:
    return HFGenerator(model, [tokenizer.eos_token_id], tokenizer.pad_token_id, kv_cache_tokens=kv_cache_tokens)


def test_greedy_decoding_gives_generates_tokens_in_a_padded_batch(model, qwen_tokenizer):
    requests = _requests(qwen_tokenizer, ["What is 2 + 3?", "Name a colour"], 12, temperature=0)
    results = _generator(model, qwen_tokenizer).generate(requests)
    pad = qwen_tokenizer.pad_token_id
    width = max(len(r.prompt_ids) for r in requests)
    ids = torch.full((2, width), pad)
    mask = torch.zeros((2, width), dtype=torch.long)
    for row, request in enumerate(requests):
        ids[row, width - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids)
        mask[row, width - len(request.prompt_ids) :] = 1
    config = GenerationConfig(max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=pad)
    expected = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)[:, width:]
    assert [r.token_ids for r in results] == expected.tolist()
    logits = model(input_ids=ids, attention_mask=mask).logits[:, -1].float()
    first = torch.log_softmax(logits, dim=-1).gather(1, expected[:, :1]).squeeze(1)
    torch.testing.assert_close(torch.tensor([r.log_probs[0] for r in results]), first, rtol=1e-4, atol=1e-4)


def test_rows_end_at_their_budget_or_stop_token(model, qwen_tokenizer):
    generator = _generator(model, qwen_tokenizer)
    greedy = generator.generate(_requests(qwen_tokenizer, ["Count: 1 2 3"], 8, temperature=0))[0].token_ids
    stop = greedy[-1]
    first_stop = greedy.index(stop)
    stopping = Sampling(temperature=0, stop_token_ids=(stop,), ignore_eos=True)
    ids = qwen_tokenizer.encode("Count: 1 2 3", add_special_tokens=False)
    short, long = generator.generate([GenerationRequest(ids, 2, stopping), GenerationRequest(ids, 8, stopping)])
    assert short.token_ids == greedy[: min(2, first_stop + 1)]
    assert long.token_ids == greedy[: first_stop + 1] and long.finish_reason == "stop"
    assert generator.last_steps == first_stop + 1  # the loop ends when its last row ends


@pytest.mark.parametrize("reuse", [0, 4096])
def test_rows_that_join_a_running_batch_decode_as_they_would_alone(model, qwen_tokenizer, reuse):
    """Rows handed over between steps (continuous batching) get the tokens and log-probs they get alone."""
    texts = ["What is 2 + 3?", "Name a colour", "A long question about the weather in the mountains today?"]
    alone = [
        _generator(model, qwen_tokenizer).generate([request])[0]
        for request in _requests(qwen_tokenizer, texts, 10, temperature=0)
    ]
    generator = _generator(model, qwen_tokenizer, reuse)
    first, *later = _requests(qwen_tokenizer, texts, 10, temperature=0)
    results: dict[int, Any] = {}
    calls = {"n": 0}
    tags = iter([1, 2])

    def take(room: int) -> list[tuple[GenerationRequest, int]]:
        calls["n"] += 1  # one joins after 3 steps (narrower than the batch), one after 5 (wider)
        return [(later.pop(0), next(tags))] if calls["n"] in (3, 5) else []

    steps = generator.serve(Sampling(temperature=0, ignore_eos=True), [(first, 0)], results.__setitem__, take)
    assert sorted(results) == [0, 1, 2] and not later
    for index, expected in enumerate(alone):
        assert results[index].token_ids == expected.token_ids
        torch.testing.assert_close(results[index].log_probs, expected.log_probs, rtol=1e-4, atol=1e-4)
    assert steps == 5 + 10  # the last row joined after 5 steps and decoded its 10 tokens
