"""An in-process LLM server over a Hugging Face model, with the one call verl's agent loops make:
``generate(request_id, prompt_ids=…, sampling_params=…) -> TokenOutput``.

Concurrent requests (every agent loop of a batch awaits its own turn) are queued and decoded in padded
batches by :class:`~exgrpo_verl.local.hf_generation.HFGenerator`; a request that arrives while a batch
runs joins it between two decoding steps, and each is answered the step it ends. The Ray actor behind
``rollout.name=hf`` is this class plus verl's lifecycle calls; ``preview`` and the tests use it directly.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from verl.workers.rollout.replica import TokenOutput

from exgrpo_verl.local.cpu_attention import GROUPED_DECODE, register_grouped_decode
from exgrpo_verl.local.hf_generation import GenerationRequest, HFGenerator, parse_sampling_params
from exgrpo_verl.local.torch_thread import TorchThread

# A generate call collects requests until none has arrived for BATCH_IDLE_S (at most BATCH_MAX_WAIT_S
# after the first). The agent loops of a batch send their next turns one after another as they process
# the last call's outputs; a turn that misses the call waits for the whole next one (with SmolLM2 on 2
# cores a lone 128-token final answer took 10 s, a fixed 20 ms window split a round that way).
BATCH_IDLE_S = 0.1
BATCH_MAX_WAIT_S = 1.0
# Keys/values kept for prompts that continue an earlier generation (a dialogue's next turn), in tokens
# over all kept sequences; dropped whenever the weights change. 0 turns reuse off.
DEFAULT_KV_CACHE_TOKENS = 65536


def _resolve(future: asyncio.Future, result: Any) -> None:
    if not future.done():
        future.set_result(result)


@dataclass
class _Pending:
    request: GenerationRequest
    future: asyncio.Future


def _token_ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]


def torch_dtype(name: Any) -> torch.dtype:
    dtype = name if isinstance(name, torch.dtype) else getattr(torch, str(name).replace("torch.", ""), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{name!r} is not a torch dtype")
    return dtype


def default_attention(device: str) -> str | None:
    """The attention implementation generation runs fastest with on ``device`` (None: the model's default).

    On the CPU, the plug-in's grouped decoding (:mod:`.cpu_attention`): measured with SmolLM2-135M in
    bf16 on 2 cores, 8 rows, 700 cached tokens, a decoding step takes 60 ms with it, 91 ms with
    ``eager`` (which copies the cache for every query head) and 173 ms with ``sdpa`` (slow for one query
    token); its prompts go through ``sdpa``, which reads a 700-token prompt 1.7x faster than ``eager``.
    """
    return GROUPED_DECODE if str(device).startswith("cpu") else None


def load_model(
    path: str, *, dtype: Any, device: str, trust_remote_code: bool = False, attn_implementation: str | None = None
) -> tuple[Any, Any]:
    """A causal LM and its tokenizer from a local folder or hub name, on ``device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    attention = attn_implementation or default_attention(device)
    if attention == GROUPED_DECODE:
        register_grouped_decode()  # transformers finds it by name in this process
    model = AutoModelForCausalLM.from_pretrained(
        path,
        dtype=torch_dtype(dtype),
        trust_remote_code=trust_remote_code,
        **({"attn_implementation": attention} if attention else {}),
    )
    return model.to(device), tokenizer


class HFGenerateServer:
    """Batched token-in/token-out generation with one model; weights can be replaced between batches."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        response_length: int,
        max_model_len: int | None = None,
        max_batch: int = 1024,
        stats_file: str | None = None,
        kv_cache_tokens: int = DEFAULT_KV_CACHE_TOKENS,
        torch_thread: TorchThread | None = None,
    ) -> None:
        eos = [tokenizer.eos_token_id, *_token_ids(getattr(model.generation_config, "eos_token_id", None))]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.tokenizer = tokenizer
        # every torch call of this server (loading, generating, new weights) runs on this one thread
        self.torch_thread = torch_thread or TorchThread()
        self.generator = HFGenerator(
            model, [t for t in eos if t is not None], pad, kv_cache_tokens=int(kv_cache_tokens or 0)
        )
        self.response_length = int(response_length)
        self.max_model_len = int(max_model_len or getattr(model.config, "max_position_embeddings", 0) or 32768)
        self.max_batch = max(1, int(max_batch))
        self.global_steps = 0
        # one JSON line per generate call (where rollout time goes; benchmarks/bench_step.py reads it)
        self.stats_file = Path(stats_file) if stats_file else None
        # requests not decoding yet: the event loop adds them, a running batch takes them (torch thread)
        self._waiting: deque[_Pending] = deque()
        self._waiting_lock = threading.Lock()
        self._arrived: asyncio.Event | None = None
        self._batcher: asyncio.Task | None = None
        self._model_lock: asyncio.Lock | None = None

    @classmethod
    def from_pretrained(
        cls, path: str, *, dtype: Any = "float32", device: str = "cpu", trust_remote_code: bool = False, **kwargs: Any
    ) -> HFGenerateServer:
        thread = TorchThread()
        model, tokenizer = thread.call(
            load_model, path, dtype=dtype, device=device, trust_remote_code=trust_remote_code
        )
        return cls(model, tokenizer, torch_thread=thread, **kwargs)

    @property
    def model(self) -> Any:
        return self.generator.model

    def _start(self) -> None:
        if self._arrived is None:  # created inside the event loop that serves the requests
            self._arrived = asyncio.Event()
            self._model_lock = asyncio.Lock()
            self._batcher = asyncio.get_running_loop().create_task(self._serve())

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> TokenOutput:
        unsupported = {key for key, value in kwargs.items() if value is not None}
        if unsupported:
            raise ValueError(f"the hf rollout serves text only; got {sorted(unsupported)}")
        self._start()
        request = parse_sampling_params(
            prompt_ids, sampling_params, response_length=self.response_length, max_model_len=self.max_model_len
        )
        future = asyncio.get_running_loop().create_future()
        with self._waiting_lock:
            self._waiting.append(_Pending(request, future))
        self._arrived.set()
        result = await future
        return TokenOutput(
            token_ids=result.token_ids,
            log_probs=result.log_probs,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps, "finish_reason": result.finish_reason},
        )

    async def _serve(self) -> None:
        while True:
            batch = await self._collect()
            groups: dict[Any, list[_Pending]] = {}
            for pending in batch:
                groups.setdefault(pending.request.sampling, []).append(pending)
            async with self._model_lock:
                for sampling, pendings in groups.items():
                    await self._decode_session(sampling, pendings)

    async def _decode_session(self, sampling: Any, first: list[_Pending]) -> None:
        """Decode ``first`` and every waiting request of the same sampling that arrives meanwhile (they join
        the running batch between steps); each request is answered the step it ends."""
        loop = asyncio.get_running_loop()
        session = list(first)
        answers: list[Any] = []

        def take(running: int) -> list[tuple[GenerationRequest, _Pending]]:  # on the torch thread
            with self._waiting_lock:
                taken = [p for p in self._waiting if p.request.sampling == sampling][: self.max_batch - running]
                for pending in taken:
                    self._waiting.remove(pending)
            session.extend(taken)
            return [(pending.request, pending) for pending in taken]

        def deliver(pending: _Pending, result: Any) -> None:  # on the torch thread
            answers.append(result)
            loop.call_soon_threadsafe(_resolve, pending.future, result)

        def decode() -> tuple[int, float, int, int]:
            start, reused = time.perf_counter(), self.generator.kv_cache.reused_tokens
            steps = self.generator.serve(sampling, [(p.request, p) for p in first], deliver, take)
            elapsed = time.perf_counter() - start
            return steps, elapsed, torch.get_num_threads(), self.generator.kv_cache.reused_tokens - reused

        try:
            steps, seconds, threads, reused = await self.torch_thread.run(decode)
        except Exception as exc:  # fail this session's requests, keep serving
            for pending in session:
                if not pending.future.done():
                    pending.future.set_exception(exc)
        else:
            self._record(session, answers, seconds, steps=steps, threads=threads, reused=reused)

    async def _collect(self) -> list[_Pending]:
        """The next batch: the first request to arrive, then the others of its burst."""
        loop = asyncio.get_running_loop()
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = loop.time() + BATCH_MAX_WAIT_S
        while len(self._waiting) < self.max_batch:
            wait = min(BATCH_IDLE_S, deadline - loop.time())
            if wait <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                break
        with self._waiting_lock:
            return [self._waiting.popleft() for _ in range(min(len(self._waiting), self.max_batch))]

    def _record(
        self, batch: list[_Pending], results: list[Any], seconds: float, *, steps: int, threads: int, reused: int
    ) -> None:
        if self.stats_file is None:
            return
        generated = sum(len(r.token_ids) for r in results)
        entry = {
            "global_steps": self.global_steps,
            "requests": len(batch),
            "prompt_tokens": sum(len(p.request.prompt_ids) for p in batch),
            # prompt tokens whose keys/values came from an earlier generation (not fed again)
            "reused_tokens": reused,
            "generated_tokens": generated,
            "seconds": round(seconds, 6),
            "seconds_per_generated_token": round(seconds / max(generated, 1), 6),
            # decoding steps of the batch (requests join it between steps) and torch's intra-op threads
            "steps": steps,
            "threads": threads,
        }
        with self.stats_file.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    async def load_weights(self, tensors: dict[str, torch.Tensor]) -> int:
        """Copy a bucket of full, Hugging Face-named tensors into the model; returns how many."""
        self._start()
        async with self._model_lock:
            self.generator.weights_changed()
            incompatible = await self.torch_thread.run(self.model.load_state_dict, tensors, strict=False)
            if incompatible.unexpected_keys:
                raise KeyError(f"weights the rollout model does not have: {incompatible.unexpected_keys[:5]}")
        return len(tensors)

    def set_global_steps(self, global_steps: int) -> None:
        """The policy version (trainer step) later outputs report, as verl's servers do."""
        self.global_steps = int(global_steps)
