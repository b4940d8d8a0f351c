"""Shared fixtures: repository paths, offline tokenizers, the shared real-data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from exgrpo_verl.testing import build_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

CUDA = pytest.param(
    "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
)
DEVICES = ["cpu", CUDA]
"""Parametrise a test over devices: the CUDA variant is marked ``gpu`` and skips without CUDA."""


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session", params=["qwen2", "gemma", "llama3"])
def chat_style(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def qwen_tokenizer():
    return build_tokenizer("qwen2")
