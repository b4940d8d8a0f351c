"""transformers ``generate`` backend: runs anywhere (CPU included), slowest of the three."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from exgrpo_verl.eval.backends.base import Backend, Completion, GenRequest, Sampling, render_prompt_ids
from exgrpo_verl.eval.backends.local_model import check_local_model
from exgrpo_verl.eval.errors import EvalError, ModelNotFoundError


class HFBackend(Backend):
    name = "hf"
    requires = "transformers"
    extra = None
    default_batch_size = 8

    def __init__(
        self, model: str, *, batch_size: int | None = None, device: str | None = None, dtype: str = "auto"
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.batch_size = batch_size or self.default_batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        source, gguf = _gguf_source(model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, **gguf)
        except OSError as error:  # transformers' "not a local folder and not a valid model identifier"
            raise ModelNotFoundError(f"cannot load model {model}: {error}") from error
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        loaded = AutoModelForCausalLM.from_pretrained(source, **gguf, **_dtype_kwarg(torch_dtype))
        self.model = loaded.to(self.device).eval()
        self._stop_ids = _stop_token_ids(self.model, self.tokenizer)

    @classmethod
    def check_model(cls, model: str, options: Mapping[str, Any]) -> None:
        check_local_model(model)

    def generate(self, requests: Sequence[GenRequest], sampling: Sampling) -> Iterator[tuple[int, Completion]]:
        import torch

        try:
            prompts = [render_prompt_ids(self.tokenizer, r.item.messages) for r in requests]
        except ValueError as error:
            raise EvalError(str(error)) from error
        if not sampling.greedy:
            torch.manual_seed(sampling.seed + (requests[0].sample if requests else 0))
        for start in range(0, len(requests), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            padded = self.tokenizer.pad({"input_ids": batch}, padding=True, return_tensors="pt").to(self.device)
            with torch.no_grad():
                output = self.model.generate(
                    **padded,
                    max_new_tokens=sampling.max_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self._stop_ids,
                    **_decoding_kwargs(sampling),
                )
            new_tokens = output[:, padded["input_ids"].shape[1] :].tolist()
            for offset, tokens in enumerate(new_tokens):
                stopped = next((n for n, token in enumerate(tokens) if token in self._stop_ids), None)
                answer = tokens if stopped is None else tokens[:stopped]
                text = self.tokenizer.decode(answer, skip_special_tokens=True, clean_up_tokenization_spaces=False)
                yield start + offset, Completion(text, "length" if stopped is None else "stop")


def _gguf_source(model: str) -> tuple[str, dict[str, str]]:
    """(folder, {"gguf_file": name}) for a GGUF checkpoint (a .gguf file, or a folder holding one
    and no config.json), which transformers dequantises on load; else (model, {})."""
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), {"gguf_file": path.name}
    if path.is_dir() and not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) > 1:
            raise EvalError(f"{model} holds several .gguf files; pass one of them as --model")
        if ggufs:
            return str(path), {"gguf_file": ggufs[0].name}
    return model, {}


def _dtype_kwarg(dtype: Any) -> dict[str, Any]:
    """transformers renamed ``torch_dtype`` to ``dtype`` in 4.56; pass the name this install reads."""
    import transformers
    from packaging.version import Version

    return {"dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype": dtype}


def _decoding_kwargs(sampling: Sampling) -> dict[str, Any]:
    # Explicit Nones override sampling defaults a checkpoint's generation_config may carry.
    if sampling.greedy:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": None}


def _stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-turn ids: the generation config's (chat models often list several) plus the tokenizer's."""
    configured = model.generation_config.eos_token_id
    ids = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    ids.append(tokenizer.eos_token_id)
    return sorted({i for i in ids if i is not None})
