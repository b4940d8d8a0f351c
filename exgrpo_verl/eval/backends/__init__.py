"""Generation backends by name; each imports its library only when chosen."""

from __future__ import annotations

import importlib
import importlib.util

from exgrpo_verl.eval.backends.base import Backend, Completion, GenRequest, Sampling

# name -> "module:class"; imported on demand so that, e.g., the openai backend never imports torch.
BACKENDS: dict[str, str] = {
    "vllm": "exgrpo_verl.eval.backends.vllm_offline:VLLMBackend",
    "openai": "exgrpo_verl.eval.backends.openai_api:OpenAIBackend",
    "hf": "exgrpo_verl.eval.backends.hf:HFBackend",
}


def backend_class(name: str) -> type[Backend]:
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def auto_backend(base_url: str | None) -> str:
    """openai when an endpoint is given, vllm when it is installed and a GPU is visible, else hf."""
    if base_url:
        return "openai"
    if importlib.util.find_spec("vllm") is not None:
        import torch

        if torch.cuda.is_available():
            return "vllm"
    return "hf"


__all__ = ["BACKENDS", "Backend", "Completion", "GenRequest", "Sampling", "auto_backend", "backend_class"]
