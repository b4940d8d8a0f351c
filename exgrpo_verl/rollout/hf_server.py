"""A verl LLM-server stand-in that generates with transformers on the CPU (for ``preview``).

It implements the one call agent loops make, ``generate(request_id, prompt_ids=…,
sampling_params=…) -> TokenOutput``, so the real agent loop runs unchanged without vLLM/SGLang.
"""

from __future__ import annotations

import asyncio
from typing import Any

import torch
from verl.workers.rollout.replica import TokenOutput


class HFGenerateServer:
    """Generates with a local Hugging Face causal LM; one request at a time (CPU)."""

    def __init__(self, model: Any, tokenizer: Any, default_max_tokens: int = 256) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.default_max_tokens = default_max_tokens
        self._lock = asyncio.Lock()

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> HFGenerateServer:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return cls(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), **kwargs)

    def _generate(self, prompt_ids: list[int], sampling_params: dict[str, Any]) -> list[int]:
        temperature = float(sampling_params.get("temperature", 1.0) or 0.0)
        top_k = int(sampling_params.get("top_k", -1) or -1)
        options: dict[str, Any] = {
            "max_new_tokens": int(sampling_params.get("max_tokens") or self.default_max_tokens),
            "do_sample": temperature > 0,
            "eos_token_id": self.tokenizer.eos_token_id,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if temperature > 0:
            options.update(temperature=temperature, top_p=float(sampling_params.get("top_p", 1.0)))
            if top_k > 0:
                options["top_k"] = top_k
        input_ids = torch.tensor([prompt_ids], device=self.model.device)
        with torch.no_grad():
            output = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **options)
        return output[0, len(prompt_ids) :].tolist()

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> TokenOutput:
        async with self._lock:
            token_ids = await asyncio.to_thread(self._generate, list(prompt_ids), sampling_params)
        return TokenOutput(token_ids=token_ids, stop_reason="completed")
