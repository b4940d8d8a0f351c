"""The hf rollout's CPU attention: one decoding query answered by grouped matmuls gives what transformers'
eager attention gives (masks, grouped key/value heads), prompts go to sdpa unchanged, and generation
with it picks the same tokens with the same log-probs, with and without kept keys/values."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.models.llama.modeling_llama import eager_attention_forward

from exgrpo_verl.local.cpu_attention import GROUPED_DECODE, grouped_decode_attention, register_grouped_decode
from exgrpo_verl.local.hf_generation import GenerationRequest, HFGenerator, Sampling
from exgrpo_verl.local.hf_server import default_attention, load_model
from exgrpo_verl.testing import build_tiny_model, build_tokenizer, save_tiny_model


class Attention(torch.nn.Module):
    """What the attention functions read of their module."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


def qkv(batch=3, heads=9, kv_heads=3, q_len=1, length=40, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, heads, q_len, dim, generator=generator),
        torch.randn(batch, kv_heads, length, dim, generator=generator),
        torch.randn(batch, kv_heads, length, dim, generator=generator),
    )


def padding_masks(batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same left padding as sdpa's boolean mask and eager's additive one, (B, 1, 1, L)."""
    keep = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    keep[0, ..., :7] = False
    keep[2, ..., :1] = False
    additive = torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)
    return keep, additive


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_one_query_matches_eager_attention(mask_kind):
    query, key, value = qkv()
    keep, additive = padding_masks(3, 40)
    mask = {"none": None, "bool": keep, "float": additive}[mask_kind]
    module = Attention(groups=3).eval()
    ours, _ = grouped_decode_attention(module, query, key, value, mask, scaling=0.25)
    reference, _ = eager_attention_forward(module, query, key, value, None if mask is None else additive, scaling=0.25)
    assert ours.shape == reference.shape == (3, 1, 9, 16)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_masked_keys_do_not_count():
    query, key, value = qkv()
    keep, _ = padding_masks(3, 40)
    module = Attention(groups=3).eval()
    before, _ = grouped_decode_attention(module, query, key, value, keep)
    key[0, :, :7] = 1e3  # the padded positions of row 0
    value[0, :, :7] = -1e3
    after, _ = grouped_decode_attention(module, query, key, value, keep)
    torch.testing.assert_close(before, after)


def test_prompts_and_training_go_to_sdpa_unchanged():
    module = Attention(groups=3).eval()
    query, key, value = qkv(q_len=5, length=5)
    ours, _ = grouped_decode_attention(module, query, key, value, None)
    assert torch.equal(ours, sdpa_attention_forward(module, query, key, value, None)[0])
    module.train()
    query, key, value = qkv(q_len=1, length=5)
    ours, _ = grouped_decode_attention(module, query, key, value, None)
    assert torch.equal(ours, sdpa_attention_forward(module, query, key, value, None)[0])


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("qwen2")


def generations(model, tokenizer, kv_cache_tokens: int) -> list:
    """Two turns of three dialogues of different lengths (left padding, kept keys/values when asked)."""
    generator = HFGenerator(model, [tokenizer.eos_token_id], tokenizer.pad_token_id, kv_cache_tokens=kv_cache_tokens)
    sampling = Sampling(temperature=0, ignore_eos=True)
    prompts = [tokenizer.encode(text) for text in ("What is 2 + 3?", "Why is the sky blue? Say why.", "Hi")]
    first = generator.generate([GenerationRequest(p, 8, sampling, logprobs=True) for p in prompts])
    follow = tokenizer.encode(" And why?")
    seconds = [p + r.token_ids + follow for p, r in zip(prompts, first, strict=True)]
    second = generator.generate([GenerationRequest(p, 6, sampling, logprobs=True) for p in seconds])
    return first + second


@pytest.mark.parametrize("kv_cache_tokens", [0, 10_000])
def test_generation_picks_the_tokens_eager_picks(tokenizer, kv_cache_tokens):
    eager = build_tiny_model(tokenizer, "qwen2", seed=3).eval()
    eager.set_attn_implementation("eager")
    grouped = copy.deepcopy(eager)
    grouped.set_attn_implementation(register_grouped_decode())
    assert grouped.config._attn_implementation == GROUPED_DECODE
    expected = generations(eager, tokenizer, kv_cache_tokens)
    for a, b in zip(expected, generations(grouped, tokenizer, kv_cache_tokens), strict=True):
        assert a.token_ids == b.token_ids
        torch.testing.assert_close(torch.tensor(a.log_probs), torch.tensor(b.log_probs), rtol=1e-4, atol=1e-5)


def test_the_cpu_loads_models_with_it_and_other_devices_keep_their_default(tmp_path):
    assert default_attention("cuda:0") is None
    assert default_attention("cpu") == GROUPED_DECODE
    folder = save_tiny_model(tmp_path / "tiny")
    model, _ = load_model(str(folder), dtype="float32", device="cpu")
    assert model.config._attn_implementation == GROUPED_DECODE
    model, _ = load_model(str(folder), dtype="float32", device="cpu", attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
