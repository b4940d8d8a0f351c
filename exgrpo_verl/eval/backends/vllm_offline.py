"""Offline vLLM backend (``vllm.LLM``): the fast choice on a GPU machine."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from exgrpo_verl.eval.backends.base import Backend, Completion, GenRequest, Sampling, render_prompt_ids
from exgrpo_verl.eval.backends.local_model import check_local_model
from exgrpo_verl.eval.errors import EvalError


class VLLMBackend(Backend):
    name = "vllm"
    requires = "vllm"
    extra = "vllm"
    # Requests handed to vLLM at once; vLLM batches inside a chunk, and a killed run loses at most one.
    default_batch_size = 512

    def __init__(
        self,
        model: str,
        *,
        batch_size: int | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        dtype: str = "auto",
        seed: int = 0,
    ) -> None:
        from vllm import LLM

        self.batch_size = batch_size or self.default_batch_size
        engine_args: dict[str, Any] = {
            "model": model,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "dtype": dtype,
            "seed": seed,
        }
        if max_model_len:
            engine_args["max_model_len"] = max_model_len
        self.llm = LLM(**engine_args)
        self.tokenizer = self.llm.get_tokenizer()

    @classmethod
    def check_model(cls, model: str, options: Mapping[str, Any]) -> None:
        check_local_model(model)

    def generate(self, requests: Sequence[GenRequest], sampling: Sampling) -> Iterator[tuple[int, Completion]]:
        from vllm import SamplingParams

        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            try:
                prompts = [{"prompt_token_ids": render_prompt_ids(self.tokenizer, r.item.messages)} for r in chunk]
            except ValueError as error:
                raise EvalError(str(error)) from error
            params = [
                SamplingParams(
                    n=1,
                    temperature=sampling.temperature if not sampling.greedy else 0.0,
                    top_p=sampling.top_p if not sampling.greedy else 1.0,
                    max_tokens=sampling.max_tokens,
                    seed=None if sampling.greedy else sampling.seed + r.sample,
                )
                for r in chunk
            ]
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
            for offset, output in enumerate(outputs):
                completion = output.outputs[0]
                yield start + offset, Completion(completion.text, completion.finish_reason or "stop")
