"""The hf rollout's decoding loop: its in-place key/value cache reads and grows like transformers' own,
its sampler draws from the distribution it is given, and the loop gives ``generate``'s tokens."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig
from transformers.cache_utils import DynamicLayer

from exgrpo_verl.local.decoding import PreallocatedLayer, Sampling, decode, preallocated_cache, sample_from
from exgrpo_verl.testing import build_tiny_model, build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("qwen2")


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_model(tokenizer, "qwen2", seed=5).eval()


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


def test_greedy_decoding_gives_generates_tokens_in_a_padded_batch(model, tokenizer):
    prompts = [tokenizer.encode(text, add_special_tokens=False) for text in ("What is 2 + 3?", "Name a colour")]
    width = max(map(len, prompts))
    ids = torch.full((2, width), tokenizer.pad_token_id)
    mask = torch.zeros((2, width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    decoded = decode(
        model,
        ids,
        mask,
        preallocated_cache(model.config, width + 12),
        budgets=[12, 12],
        stop_ids=[],
        settings=Sampling(temperature=0),
        pad_token_id=tokenizer.pad_token_id,
    )
    pad = tokenizer.pad_token_id
    config = GenerationConfig(max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=pad)
    expected = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)[:, width:]
    assert decoded.steps == 12 and torch.equal(decoded.tokens, expected)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, -1].float()
    first = torch.log_softmax(logits, dim=-1).gather(1, expected[:, :1]).squeeze(1)
    torch.testing.assert_close(decoded.log_probs[:, 0], first, rtol=1e-4, atol=1e-4)


def _first(tokens: list[int], stop: int) -> int | None:
    return next((i for i, token in enumerate(tokens) if token == stop), None)


def test_rows_stop_at_their_budget_or_stop_token_and_are_padded_after(model, tokenizer):
    ids = torch.tensor([tokenizer.encode("Count: 1 2 3", add_special_tokens=False)] * 2)
    mask = torch.ones_like(ids)
    pad = tokenizer.pad_token_id
    greedy = decode(
        model, ids, mask, preallocated_cache(model.config, 64), budgets=[8, 8], stop_ids=[],
        settings=Sampling(temperature=0), pad_token_id=pad,
    ).tokens[0].tolist()  # fmt: skip
    stop = greedy[-1]
    decoded = decode(
        model, ids, mask, preallocated_cache(model.config, 64), budgets=[2, 8], stop_ids=[stop],
        settings=Sampling(temperature=0), pad_token_id=pad,
    )  # fmt: skip
    ends = [min(2, _first(greedy, stop) + 1), _first(greedy, stop) + 1]  # a budget, or the stop token
    assert decoded.steps == max(ends)  # the loop ends when the last row ends
    for row, end in enumerate(ends):
        assert decoded.tokens[row, :end].tolist() == greedy[:end]
        assert (decoded.tokens[row, end:] == pad).all()
