"""Rows decoded together that can join between steps and end one by one (continuous batching).

An agent loop's dialogue sends its next turn as soon as its last one is answered. When a decoding loop
runs until its longest row ends, a dialogue whose probe answer (≤ 64 tokens) shares the loop with
another's final answer (≤ 128) waits 64 idle steps, and its next turn waits for the loop after that:
in the ``exgrpo_cpu`` step, 384 decoding steps where the longest dialogue needs 320. Here a row is
handed back the step it ends, and new rows join between two steps.

Layout: every row of the batch has its keys/values in columns ``[0, end)`` of the cache (left padding and
the holes of :mod:`.kv_reuse` masked out) and one sampled token not yet fed at column ``end``. Joining
rows are prefilled on their own, then both blocks are right-aligned on the wider one in new buffers;
positions come from each row's own tokens, so shifting columns changes nothing the model computes.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from exgrpo_verl.local.decoding import PreallocatedLayer, Sampling, sampler_for


@dataclass
class Row:
    """One request being decoded; ``tag`` is the caller's handle for it."""

    tag: Any
    budget: int
    tokens: list[int] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)
    stopped: bool = False  # ended on a stop token (else on its budget)


@dataclass
class EndedRow:
    """A row that ended, with the keys/values of every token it fed (per layer ``[kv_heads, n, dim]``)."""

    row: Row
    fed_tokens: list[int]
    keys: list[torch.Tensor] | None
    values: list[torch.Tensor] | None


def can_join(cache: Any) -> bool:
    """Rows can be merged only when every layer is a :class:`PreallocatedLayer` (full attention)."""
    return all(type(layer) is PreallocatedLayer for layer in cache.layers)


class RunningBatch:
    """The rows of one sampling setting being decoded; :meth:`join` adds rows, :meth:`step` advances all."""

    def __init__(
        self, model: Any, sampling: Sampling, stop_ids: Sequence[int], pad_token_id: int, *, keep_keys: bool
    ) -> None:
        self.model = model
        self.sample = sampler_for(sampling)
        self.stop_ids = set(int(t) for t in stop_ids)
        self.pad = int(pad_token_id)
        self.keep_keys = keep_keys
        self.rows: list[Row] = []
        self.live: list[bool] = []
        self.ids: torch.Tensor | None = None  # [rows, capacity]
        self.mask: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None  # [rows]: the position of each row's pending token
        self.cache: Any = None
        self.end = 0
        self.steps = 0
        accepted = inspect.signature(model.forward).parameters  # remote-code models may lack these
        self._with_cache_position = "cache_position" in accepted
        self._extra = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}

    @property
    def running(self) -> int:
        return sum(self.live)

    # --- rows in ---------------------------------------------------------------------------------
    @torch.no_grad()
    def join(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache: Any, rows: list[Row]
    ) -> list[EndedRow]:
        """Prefill ``rows`` (left-padded ``input_ids``, the first ``cache.get_seq_length()`` columns already in
        ``cache``), sample their first tokens, and merge the rows that go on; returns those that ended."""
        width = input_ids.shape[1]
        past = cache.get_seq_length()
        positions = (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)
        logits = self._forward(input_ids[:, past:], attention_mask, positions[:, past:], cache, past)
        room = max(row.budget for row in rows)  # a batch that starts with these rows decodes in these buffers
        ids = torch.full((len(rows), width + room), self.pad, dtype=torch.long, device=input_ids.device)
        ids[:, :width] = input_ids
        mask = torch.zeros_like(ids)
        mask[:, :width] = attention_mask
        block = _Block(ids, mask, positions[:, -1] + 1, cache, width, rows, [True] * len(rows))
        if not self.running:  # the prefill gives the first token of a batch's decoding
            self.steps += 1
        ended = self._choose(block, logits)
        going = [i for i, alive in enumerate(block.live) if alive]
        if going:
            self._merge(block, going)
        return ended

    def _merge(self, block: _Block, going: list[int]) -> None:
        keep = [i for i, alive in enumerate(self.live) if alive]
        if not keep and (len(going) == len(block.rows) or not can_join(block.cache)):
            # nothing running: the block is the batch (rows that ended stay in it, masked)
            self.ids, self.mask, self.positions, self.cache, self.end = (
                block.ids,
                block.mask,
                block.positions,
                block.cache,
                block.end,
            )
            self.rows, self.live = block.rows, block.live
            return
        end = max(self.end if keep else 0, block.end)
        budget_left = max(
            [self.rows[i].budget - len(self.rows[i].tokens) for i in keep]
            + [block.rows[i].budget - len(block.rows[i].tokens) for i in going]
        )
        capacity = end + 1 + budget_left
        parts = [(self, keep)] if keep else []
        parts.append((block, going))
        count = sum(len(index) for _, index in parts)
        device = block.ids.device
        ids = torch.full((count, capacity), self.pad, dtype=torch.long, device=device)
        mask = torch.zeros((count, capacity), dtype=block.mask.dtype, device=device)
        layers = [
            PreallocatedLayer.like(layer, rows=count, capacity=capacity, length=end) for layer in block.cache.layers
        ]
        first = 0
        for part, index in parts:
            shift, rows = end - part.end, torch.tensor(index, device=device)
            last = first + len(index)
            ids[first:last, shift : shift + part.end + 1] = part.ids[rows, : part.end + 1]
            mask[first:last, shift : shift + part.end + 1] = part.mask[rows, : part.end + 1]
            for merged, layer in zip(layers, part.cache.layers, strict=True):
                merged.put(slice(first, last), shift, layer, rows, part.end)
            first = last
        self.positions = torch.cat([part.positions[torch.tensor(index, device=device)] for part, index in parts])
        self.rows = [part.rows[i] for part, index in parts for i in index]
        self.live = [True] * count
        self.ids, self.mask, self.end = ids, mask, end
        self.cache = block.cache
        self.cache.layers = layers

    # --- one step ----------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> list[EndedRow]:
        """Feed every row its pending token and sample the next; returns the rows that ended."""
        if self.end + 1 >= self.ids.shape[1]:
            self._widen()
        column = slice(self.end, self.end + 1)
        logits = self._forward(
            self.ids[:, column], self.mask[:, : self.end + 1], self.positions[:, None], self.cache, self.end
        )
        self.steps += 1
        self.end += 1
        self.positions = self.positions + 1
        return self._choose(self, logits)

    def _widen(self) -> None:
        extra = max(16, self.ids.shape[1])
        self.ids = torch.cat([self.ids, self.ids.new_full((self.ids.shape[0], extra), self.pad)], dim=1)
        self.mask = torch.cat([self.mask, self.mask.new_zeros((self.mask.shape[0], extra))], dim=1)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any, start: int):
        extra = dict(self._extra)
        if self._with_cache_position:
            extra["cache_position"] = torch.arange(start, start + ids.shape[1], device=ids.device)
        return self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True, **extra
        ).logits[:, -1, :]

    def _choose(self, block: Any, logits: torch.Tensor) -> list[EndedRow]:
        """Sample each row's next token into column ``block.end`` and hand back the rows that end."""
        tokens, log_probs = self.sample(logits, block.ids[:, : block.end])
        live = torch.tensor(block.live, device=tokens.device)
        block.ids[:, block.end] = torch.where(live, tokens, torch.full_like(tokens, self.pad))
        block.mask[:, block.end] = live.to(block.mask.dtype)
        ended = []
        for index, (token, log_prob) in enumerate(zip(tokens.tolist(), log_probs.tolist(), strict=True)):
            if not block.live[index]:
                continue
            row = block.rows[index]
            row.tokens.append(token)
            row.log_probs.append(log_prob)
            row.stopped = token in self.stop_ids
            if row.stopped or len(row.tokens) >= row.budget:
                block.live[index] = False
                ended.append(self._ended(block, index))
        return ended

    def _ended(self, block: Any, index: int) -> EndedRow:
        row = block.rows[index]
        if not self.keep_keys:
            return EndedRow(row, [], None, None)
        columns = block.mask[index, : block.end].nonzero().squeeze(1)
        fed = block.ids[index, columns].tolist()
        keys = [layer.keys[index].index_select(1, columns) for layer in block.cache.layers]
        values = [layer.values[index].index_select(1, columns) for layer in block.cache.layers]
        return EndedRow(row, fed, keys, values)


@dataclass
class _Block:
    """Joining rows after their prefill: the same fields a :class:`RunningBatch` keeps."""

    ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    cache: Any
    end: int
    rows: list[Row]
    live: list[bool]
