"""Token-in, token-out generation with a Hugging Face causal LM, the way verl's rollout servers do it.

verl's agent loops send ``(prompt_ids, sampling_params)`` per turn and expect a ``TokenOutput``.
This module turns concurrent requests into padded batches for the decoding loop of :mod:`.decoding`
and honours verl's sampling parameters exactly:

- ``top_k = -1`` (or 0) means no top-k cut, and no default of the model's ``generation_config``
  or of transformers (``top_k=50``) leaks in (the loop never reads them): a silent top-k makes the
  rollout sample from another distribution than the one the trainer scores, and the rollout/training
  log-prob gap explodes.
- ``temperature = 0`` is greedy decoding (verl's validation setting).
- ``max_tokens`` is per request: requests with different budgets share one batch and each stops at
  its own budget.
- generation stops at the tokenizer/model EOS ids and ``stop_token_ids`` unless ``ignore_eos``;
  the stop token is part of the output, as with vLLM.
- with ``logprobs``, each sampled token's log-probability under softmax(logits / temperature)
  (temperature 1 when greedy) is recorded at sampling time, before top-k/top-p truncation; this is
  what verl's actor computes for the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from exgrpo_verl.local.decoding import Sampling, preallocated_cache
from exgrpo_verl.local.kv_reuse import DialogueKVCache
from exgrpo_verl.local.running_batch import EndedRow, Row, RunningBatch, can_join


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    max_tokens: int
    sampling: Sampling
    logprobs: bool = False


@dataclass
class GenerationResult:
    token_ids: list[int]
    log_probs: list[float] | None = None
    finish_reason: str = "stop"  # "stop" (a stop token) or "length" (max_tokens)
    extra: dict[str, Any] = field(default_factory=dict)


def parse_sampling_params(
    prompt_ids: Sequence[int], sampling_params: dict[str, Any], *, response_length: int, max_model_len: int
) -> GenerationRequest:
    """A verl ``sampling_params`` dict (as agent loops send it) as a request; unknown keys are an error.

    Without ``max_tokens`` the budget is what vLLM's server in verl gives: the response length,
    capped by what is left of the prompt+response window. It is always clamped to what fits in
    the model's context, and to at least one token.
    """
    params = dict(sampling_params)
    max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", None))
    room = max_model_len - len(prompt_ids)
    if room < 1:
        raise ValueError(f"prompt of {len(prompt_ids)} tokens leaves no room in the {max_model_len}-token context")
    if max_tokens is None:
        max_tokens = min(response_length, max_model_len - len(prompt_ids))
    max_tokens = max(1, min(int(max_tokens), room))

    top_k = params.pop("top_k", -1)
    top_k = -1 if top_k is None else int(top_k)  # verl: -1 is "no top-k"; transformers: 0 is
    sampling = Sampling(
        temperature=float(params.pop("temperature", 1.0) or 0.0),
        top_p=float(params.pop("top_p", 1.0) or 1.0),
        top_k=max(top_k, 0),
        repetition_penalty=float(params.pop("repetition_penalty", 1.0) or 1.0),
        stop_token_ids=tuple(int(t) for t in (params.pop("stop_token_ids", None) or ())),
        ignore_eos=bool(params.pop("ignore_eos", False)),
    )
    logprobs = bool(params.pop("logprobs", False))
    # Accepted and meaningless here: the server seeds its generator once at start-up.
    params.pop("seed", None)
    if params:
        raise ValueError(f"the hf rollout does not support the sampling parameter(s) {sorted(params)}")
    return GenerationRequest(list(prompt_ids), max_tokens, sampling, logprobs=logprobs)


class HFGenerator:
    """Generates for a batch of requests with one model; the caller serialises calls.

    With ``kv_cache_tokens > 0``, the keys/values of generated sequences are kept for prompts that
    continue them, a dialogue's next turn (:mod:`.kv_reuse`), up to that many tokens in all; call
    :meth:`weights_changed` after loading new weights.
    """

    def __init__(
        self, model: Any, eos_token_ids: Iterable[int], pad_token_id: int, *, kv_cache_tokens: int = 0
    ) -> None:
        self.model = model.eval()
        self.eos_token_ids = tuple(dict.fromkeys(int(t) for t in eos_token_ids))
        if not self.eos_token_ids:
            raise ValueError("the model has no EOS token: generation would never stop before max_tokens")
        self.pad_token_id = int(pad_token_id)
        self.kv_cache = DialogueKVCache(kv_cache_tokens)
        # keys/values are kept, and rows join running batches, only where every layer attends to every
        # position (sliding-window layers keep a window)
        self._full_attention = can_join(preallocated_cache(model.config, 1))
        self.last_reused_tokens = 0
        self.last_steps = 0

    def weights_changed(self) -> None:
        """Kept keys/values were computed by the old weights: drop them."""
        self.kv_cache.clear()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Results in request order; requests with equal sampling settings are decoded together."""
        results: list[GenerationResult | None] = [None] * len(requests)
        groups: dict[Sampling, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.sampling, []).append(index)
        reused_before, steps = self.kv_cache.reused_tokens, 0
        for sampling, indices in groups.items():
            steps += self.serve(sampling, [(requests[i], i) for i in indices], results.__setitem__)
        self.last_reused_tokens = self.kv_cache.reused_tokens - reused_before
        self.last_steps = steps
        return results  # type: ignore[return-value]

    @torch.no_grad()
    def serve(
        self,
        sampling: Sampling,
        first: list[tuple[GenerationRequest, Any]],
        deliver: Callable[[Any, GenerationResult], None],
        take: Callable[[int], list[tuple[GenerationRequest, Any]]] | None = None,
    ) -> int:
        """Decode ``first`` and the requests ``take(room)`` hands over between steps (all with ``sampling``),
        calling ``deliver(tag, result)`` for each request the step it ends. Returns the decoding steps."""
        batch = RunningBatch(
            self.model,
            sampling,
            self._stop_ids(sampling),
            self.pad_token_id,
            keep_keys=self.kv_cache.enabled and self._full_attention,
        )
        self._join(batch, first, deliver)
        while batch.running:
            for ended in batch.step():
                self._end(ended, deliver)
            if take is not None and self._full_attention:
                joining = take(batch.running)
                if joining:
                    self._join(batch, joining, deliver)
        return batch.steps

    def _stop_ids(self, sampling: Sampling) -> list[int]:
        return list(dict.fromkeys([*(() if sampling.ignore_eos else self.eos_token_ids), *sampling.stop_token_ids]))

    def _join(
        self, batch: RunningBatch, requests: list[tuple[GenerationRequest, Any]], deliver: Callable[..., None]
    ) -> None:
        # left padding (every row's next token is at the end), with a kept prefix in front
        layout = self.kv_cache.layout([request.prompt_ids for request, _ in requests])
        # room for the longest answer: a batch that starts with these rows decodes in this cache
        cache = preallocated_cache(self.model.config, layout.width + max(request.max_tokens for request, _ in requests))
        self.kv_cache.prefill(layout, cache)
        input_ids, attention_mask = layout.inputs(self.pad_token_id)
        rows = [Row(tag=(request, tag), budget=request.max_tokens) for request, tag in requests]
        for ended in batch.join(input_ids.to(self.device), attention_mask.to(self.device), cache, rows):
            self._end(ended, deliver)

    def _end(self, ended: EndedRow, deliver: Callable[[Any, GenerationResult], None]) -> None:
        request, tag = ended.row.tag
        row = ended.row
        if ended.keys is not None:
            self.kv_cache.keep(ended.fed_tokens, ended.keys, ended.values)
        log_probs = row.log_probs if request.logprobs else None
        deliver(tag, GenerationResult(row.tokens, log_probs, "stop" if row.stopped else "length"))
