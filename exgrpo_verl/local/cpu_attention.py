"""An attention implementation for generating on the CPU, registered with transformers by name.

Decoding asks attention for one query token over the whole cache. transformers' ``eager`` attention
first copies the cached keys/values once per query head of a key/value head (``repeat_kv``); with
SmolLM2's 3 key/value heads for 9 query heads, those copies were a third of a decoding step on 2 cores.
torch's fused kernel (``sdpa``) avoids the copies but is slower still for a single query. Here a single
query is answered by grouped matmuls that read each cached key/value once; a prompt (more than one
query, or training) goes to transformers' ``sdpa`` function unchanged. Both compute softmax(q·kᵀ·s + m)·v
with the softmax in float32, as ``eager`` does.
"""

from __future__ import annotations

from typing import Any

import torch

GROUPED_DECODE = "exgrpo_grouped_decode"
"""The name models are loaded with (``attn_implementation=GROUPED_DECODE``)."""


def grouped_decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """query (B, H, Q, D), key/value (B, KV, L, D) -> ((B, Q, H, D), None), like transformers' functions."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    special = any(kwargs.get(name) is not None for name in ("softcap", "s_aux", "sliding_window"))
    if q_len != 1 or module.training or dropout or special or heads % kv_heads:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    scale = scaling if scaling is not None else dim**-0.5
    group = heads // kv_heads
    length = key.shape[-2]
    # [batch·kv_heads, ...] views: the cache's buffers (decoding.PreallocatedLayer) are read in place
    grouped = query.reshape(batch * kv_heads, group, dim)
    keys_t = key.transpose(2, 3).reshape(batch * kv_heads, dim, length)
    scores = torch.bmm(grouped, keys_t).float().view(batch, kv_heads, group, length) * scale
    if attention_mask is not None:
        mask = attention_mask[..., :length]  # (B, 1, 1, L): True attends, or an additive float mask
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask.float()
    probs = torch.softmax(scores, dim=-1).to(value.dtype).view(batch * kv_heads, group, length)
    output = torch.bmm(probs, value.reshape(batch * kv_heads, length, value.shape[-1]))  # (B·KV, H/KV, D)
    return output.view(batch, heads, 1, -1).transpose(1, 2).contiguous(), None


def register_grouped_decode() -> str:
    """Register the implementation (and sdpa's mask format for it) with transformers; its name."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(GROUPED_DECODE, grouped_decode_attention)
    AttentionMaskInterface.register(GROUPED_DECODE, sdpa_mask)
    return GROUPED_DECODE
