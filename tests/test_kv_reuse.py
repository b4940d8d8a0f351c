"""The hf rollout keeps the keys/values of what it generated, so a dialogue's next turn feeds only its new
tokens: the same tokens and log-probs as without reuse, in batches that mix reused and new prompts,
never across a weight change, and within its token budget."""

from __future__ import annotations

import asyncio

import pytest
import torch

from exgrpo_verl.local.hf_generation import GenerationRequest, HFGenerator, Sampling
from exgrpo_verl.local.hf_server import HFGenerateServer
from exgrpo_verl.local.kv_reuse import DialogueKVCache
from exgrpo_verl.testing import build_tiny_model, build_tokenizer

FIRST = ["What is 2 + 3?", "Why is the sky blue? Explain it in detail.", "Name a prime."]
FOLLOW_UP = "<|im_start|>user\nAnd why is that so?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("qwen2")


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_model(tokenizer, "qwen2", seed=5).eval()


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def first_turns(tokenizer) -> list[list[int]]:
    return [encode(tokenizer, f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n") for q in FIRST]


def dialogue(generator, tokenizer, sampling: Sampling, budgets=(6, 9, 3)) -> list[list]:
    """Two turns for three dialogues of different lengths, batched; returns [turn 1, turn 2] results."""
    prompts = first_turns(tokenizer)
    torch.manual_seed(11)
    requests = [GenerationRequest(p, b, sampling, logprobs=True) for p, b in zip(prompts, budgets, strict=True)]
    turn1 = generator.generate(requests)
    follow = encode(tokenizer, FOLLOW_UP)
    seconds = [p + r.token_ids + follow for p, r in zip(prompts, turn1, strict=True)]
    turn2 = generator.generate([GenerationRequest(p, 7, sampling, logprobs=True) for p in seconds])
    return [turn1, turn2]


@pytest.mark.parametrize("sampling", [Sampling(temperature=0, ignore_eos=True), Sampling(temperature=0.8)])
def test_reuse_gives_the_tokens_and_log_probs_of_a_full_prefill(model, tokenizer, sampling):
    pad = tokenizer.pad_token_id
    plain = dialogue(HFGenerator(model, [tokenizer.eos_token_id], pad), tokenizer, sampling)
    reusing = HFGenerator(model, [tokenizer.eos_token_id], pad, kv_cache_tokens=10_000)
    reused = dialogue(reusing, tokenizer, sampling)
    assert reusing.last_reused_tokens > 0  # the second turn fed only its new tokens
    for turn_plain, turn_reused in zip(plain, reused, strict=True):
        for a, b in zip(turn_plain, turn_reused, strict=True):
            assert a.token_ids == b.token_ids
            assert a.log_probs == pytest.approx(b.log_probs, abs=1e-4)


def test_reused_log_probs_are_the_models_own(model, tokenizer):
    """Against one forward pass of the whole dialogue: the reused keys sit at the right positions."""
    generator = HFGenerator(model, [tokenizer.eos_token_id], tokenizer.pad_token_id, kv_cache_tokens=10_000)
    sampling = Sampling(temperature=0.7, ignore_eos=True)
    turn1, turn2 = dialogue(generator, tokenizer, sampling)
    follow = encode(tokenizer, FOLLOW_UP)
    for prompt, first, second in zip(first_turns(tokenizer), turn1, turn2, strict=True):
        ids = prompt + first.token_ids + follow
        with torch.no_grad():
            logits = model(torch.tensor([ids + second.token_ids])).logits[0, len(ids) - 1 : -1].float()
        expected = torch.log_softmax(logits / 0.7, -1).gather(1, torch.tensor(second.token_ids)[:, None]).squeeze(1)
        assert second.log_probs == pytest.approx(expected.tolist(), abs=1e-4)


def test_a_prompt_that_departs_from_the_kept_tokens_reuses_only_the_shared_part(model, tokenizer):
    generator = HFGenerator(model, [tokenizer.eos_token_id], tokenizer.pad_token_id, kv_cache_tokens=10_000)
    prompt = first_turns(tokenizer)[0]
    greedy = Sampling(temperature=0, ignore_eos=True)
    first = generator.generate([GenerationRequest(prompt, 5, greedy)])[0]
    edited = prompt + first.token_ids[:2] + encode(tokenizer, FOLLOW_UP)  # the answer cut after 2 tokens
    reused = generator.generate([GenerationRequest(edited, 4, greedy, logprobs=True)])[0]
    assert generator.last_reused_tokens == len(prompt) + 2
    plain = HFGenerator(model, [tokenizer.eos_token_id], tokenizer.pad_token_id)
    expected = plain.generate([GenerationRequest(edited, 4, greedy, logprobs=True)])[0]
    assert reused.token_ids == expected.token_ids
    assert reused.log_probs == pytest.approx(expected.log_probs, abs=1e-4)


def test_the_same_prompt_again_feeds_its_last_token(model, tokenizer):
    generator = HFGenerator(model, [tokenizer.eos_token_id], tokenizer.pad_token_id, kv_cache_tokens=10_000)
    prompt = first_turns(tokenizer)[1]
    greedy = Sampling(temperature=0, ignore_eos=True)
    first = generator.generate([GenerationRequest(prompt, 4, greedy)])[0]
    again = generator.generate([GenerationRequest(prompt, 4, greedy)])[0]
    assert generator.last_reused_tokens == len(prompt) - 1  # generation needs the last token's logits
    assert again.token_ids == first.token_ids


def test_weight_changes_drop_everything_kept(model, tokenizer):
    generator = HFGenerator(model, [tokenizer.eos_token_id], tokenizer.pad_token_id, kv_cache_tokens=10_000)
    prompt = first_turns(tokenizer)[0]
    generator.generate([GenerationRequest(prompt, 4, Sampling(temperature=0))])
    assert generator.kv_cache.cached_tokens > 0
    generator.weights_changed()
    assert generator.kv_cache.cached_tokens == 0 and len(generator.kv_cache) == 0
    generator.generate([GenerationRequest(prompt + [5, 6], 2, Sampling(temperature=0))])
    assert generator.last_reused_tokens == 0


def test_the_server_drops_kept_keys_when_new_weights_arrive(model, tokenizer):
    server = HFGenerateServer(model, tokenizer, response_length=8, kv_cache_tokens=10_000)
    prompt = first_turns(tokenizer)[0]

    async def scenario():
        params = {"temperature": 0, "max_tokens": 3}
        await server.generate("a", prompt_ids=prompt, sampling_params=params)
        kept = server.generator.kv_cache.cached_tokens
        await server.load_weights({name: t.clone() for name, t in model.state_dict().items()})
        return kept, server.generator.kv_cache.cached_tokens

    kept, after = asyncio.run(scenario())
    assert kept > 0 and after == 0


def _keep(cache: DialogueKVCache, tokens: list[int]) -> None:
    zeros = torch.zeros(1, len(tokens), 2)
    cache.keep(tokens, [zeros], [zeros])


def test_the_budget_evicts_the_least_recently_used():
    cache = DialogueKVCache(max_tokens=10)
    for tokens in ([1, 2, 3, 4, 99], [7, 8, 9, 10, 99], [20, 21, 22, 23, 99]):
        _keep(cache, tokens)  # a prompt of 4 and the generated token it was fed
    assert cache.cached_tokens <= 10 and len(cache) == 2
    layout = cache.layout([[1, 2, 3, 4, 99, 5]])
    assert layout.reused == [0]  # the oldest was evicted
    layout = cache.layout([[20, 21, 22, 23, 99, 5]])
    assert layout.reused == [5]


def test_a_longer_continuation_replaces_the_sequence_it_extends():
    cache = DialogueKVCache(max_tokens=100)
    _keep(cache, [1, 2, 3, 4])
    _keep(cache, [1, 2, 3, 4, 5, 6])
    assert len(cache) == 1 and cache.cached_tokens == 6


def test_disabled_reuse_keeps_nothing(model, tokenizer):
    generator = HFGenerator(model, [tokenizer.eos_token_id], tokenizer.pad_token_id)
    dialogue(generator, tokenizer, Sampling(temperature=0))
    assert generator.last_reused_tokens == 0 and len(generator.kv_cache) == 0
