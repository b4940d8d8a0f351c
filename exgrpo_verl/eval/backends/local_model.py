"""Early check that a model given as a path exists (hub names are left to the loader)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from exgrpo_verl.eval.errors import ModelNotFoundError

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def looks_like_path(model: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything else (``./ckpt``, ``/data/m``, ``a/b/c``)
    is meant as a local path, and so is ``ckpt/step100`` when a local ``ckpt`` folder exists."""
    if _HUB_ID.fullmatch(model) is None:
        return True
    return "/" in model and Path(model.split("/", 1)[0]).is_dir()


def check_local_model(model: str) -> None:
    """Raise ModelNotFoundError when ``model`` names a local path that is missing or not a model."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not any(path.glob("*.gguf")):
            raise ModelNotFoundError(f"model directory {model} has no config.json (not a Hugging Face model folder)")
        return
    if path.exists():
        return
    if looks_like_path(model):
        raise ModelNotFoundError(f"model path {model} does not exist")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise ModelNotFoundError(
                f"model {model} is neither a local path nor in the Hugging Face cache, and HF_HUB_OFFLINE is set"
            )
