"""A dialogue's key/value cache kept between its turns, so a turn computes only its new tokens.

verl's agent loops send each turn of a dialogue with the whole dialogue so far as the prompt (and a new
request id every turn, as vLLM's prefix cache wants it). Without reuse, each turn runs the model over
that whole prompt again (the prefill), which on a CPU costs as much as the decoding itself. Here a
finished generation leaves behind the keys and values of every token the model was fed; a later prompt
reuses the longest kept prefix it starts with, and feeds only the rest. Keys and values depend on the
tokens before them and the weights only, so any kept sequence that the prompt starts with serves.

Rows that reuse different amounts share one batch through a hole in the attention mask:

    [pad … | cached prefix (keys/values given) | pad … | new tokens (fed)] → generated tokens

Positions come from the mask (``cumsum - 1``, as transformers computes them), so each row's tokens keep
the positions they had when their keys were computed, and the padding is never attended to. Reused keys
and values are the ones the same weights computed; the caches are dropped whenever weights change.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers.cache_utils import Cache


@dataclass
class CachedPrefix:
    """The tokens a dialogue's keys/values were computed for, and those keys/values per layer."""

    tokens: list[int]
    keys: list[torch.Tensor]  # per layer: [kv_heads, len(tokens), head_dim]
    values: list[torch.Tensor]


@dataclass
class BatchLayout:
    """How a batch of prompts sits in one decoding loop: ``reused[i]`` tokens of row i come from its
    cache (columns ``[past - reused[i], past)``), the rest are fed (columns ``[width - fed[i], width)``)."""

    prompts: list[list[int]]
    reused: list[int]
    past: int
    width: int
    sources: list[CachedPrefix | None] = field(default_factory=list)  # the kept sequence each row reuses

    @property
    def fed(self) -> list[int]:
        return [len(p) - r for p, r in zip(self.prompts, self.reused, strict=True)]

    def inputs(self, pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of shape [rows, width]."""
        rows = len(self.prompts)
        input_ids = torch.full((rows, self.width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((rows, self.width), dtype=torch.long)
        for row, (prompt, reused) in enumerate(zip(self.prompts, self.reused, strict=True)):
            if reused:
                input_ids[row, self.past - reused : self.past] = torch.tensor(prompt[:reused])
                mask[row, self.past - reused : self.past] = 1
            fed = len(prompt) - reused
            input_ids[row, self.width - fed :] = torch.tensor(prompt[reused:])
            mask[row, self.width - fed :] = 1
        return input_ids, mask


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


class DialogueKVCache:
    """Keys/values of recently generated sequences, least recently used first out, within a token budget."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = int(max_tokens)
        self._entries: OrderedDict[int, CachedPrefix] = OrderedDict()
        self._arrays: dict[int, np.ndarray] = {}
        self._next_id = 0
        self._tokens = 0
        self.reused_tokens = 0
        self.fed_tokens = 0

    @property
    def enabled(self) -> bool:
        return self.max_tokens > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def cached_tokens(self) -> int:
        return self._tokens

    def clear(self) -> None:
        """Forget everything (the weights changed: the kept keys/values are stale)."""
        self._entries.clear()
        self._arrays.clear()
        self._tokens = 0

    def _pop(self, entry_id: int) -> None:
        entry = self._entries.pop(entry_id, None)
        self._arrays.pop(entry_id, None)
        if entry is not None:
            self._tokens -= len(entry.tokens)

    def _best(self, prompt: list[int]) -> tuple[int | None, int]:
        """The kept sequence sharing the longest prefix with ``prompt``, and that length."""
        if not self._entries:
            return None, 0
        tokens = np.asarray(prompt)
        best, length = None, 0
        for entry_id, array in self._arrays.items():
            shared = _common_prefix(array, tokens)
            if shared > length:
                best, length = entry_id, shared
        if best is not None:
            self._entries.move_to_end(best)
        return best, length

    def layout(self, prompts: list[list[int]]) -> BatchLayout:
        """How the batch sits in one decoding loop: which kept prefix each row reuses, and the widths.

        At least one token of every prompt is fed: generation needs its logits.
        """
        sources, reused = [], []
        for prompt in prompts:
            entry_id, shared = self._best(prompt) if self.enabled else (None, 0)
            sources.append(self._entries[entry_id] if entry_id is not None else None)
            reused.append(min(shared, len(prompt) - 1))
        past = max(reused, default=0)
        width = past + max(len(p) - r for p, r in zip(prompts, reused, strict=True))
        layout = BatchLayout(prompts, reused, past, width, sources)
        self.reused_tokens += sum(reused)
        self.fed_tokens += sum(layout.fed)
        return layout

    @staticmethod
    def prefill(layout: BatchLayout, cache: Cache) -> None:
        """Put the reused prefixes into the empty ``cache``: columns ``[0, past)``, right-aligned per row."""
        if layout.past == 0:
            return
        first = next(source for source in layout.sources if source is not None)
        for layer in range(len(first.keys)):
            shape = (len(layout.prompts), first.keys[layer].shape[0], layout.past, first.keys[layer].shape[2])
            keys = first.keys[layer].new_zeros(shape)
            values = first.values[layer].new_zeros((*shape[:3], first.values[layer].shape[2]))
            for row, (source, count) in enumerate(zip(layout.sources, layout.reused, strict=True)):
                if count:
                    keys[row, :, layout.past - count :] = source.keys[layer][:, :count]
                    values[row, :, layout.past - count :] = source.values[layer][:, :count]
            cache.update(keys, values, layer)

    def keep(self, tokens: list[int], keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        """Keep the keys/values (per layer ``[kv_heads, len(tokens), head_dim]``) the model computed for
        ``tokens``: an ended row's prompt and the generated tokens it was fed (all but its last).

        A kept sequence that the new one extends is dropped (the new one serves every prompt it served);
        the least recently used go first when the budget is exceeded.
        """
        if not self.enabled or not tokens:
            return
        array = np.asarray(tokens)
        for old_id, old in list(self._arrays.items()):
            if len(old) <= len(array) and _common_prefix(old, array) == len(old):
                self._pop(old_id)
        self._entries[self._next_id] = CachedPrefix(list(tokens), keys, values)
        self._arrays[self._next_id] = array
        self._next_id += 1
        self._tokens += len(tokens)
        while self._tokens > self.max_tokens and self._entries:
            self._pop(next(iter(self._entries)))
