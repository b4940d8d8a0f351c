"""Shared fixtures: repository paths, offline tokenizers, the shared real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from exgrpo_verl.testing import build_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
HIDE_SHARED_DATA = "EXGRPO_HIDE_SHARED_DATA"
"""Set to 1, the tests behave as on a user's clone, where no ../shared sits beside the checkout."""


def shared_data_present() -> bool:
    """../shared/data is beside the checkout and not hidden by EXGRPO_HIDE_SHARED_DATA=1."""
    return os.environ.get(HIDE_SHARED_DATA) != "1" and SHARED_DATA.is_dir()


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
    if not shared_data_present():
        pytest.skip(f"../shared/data is not present (or {HIDE_SHARED_DATA}=1)")
    return SHARED_DATA


def pytest_collection_modifyitems(items) -> None:
    """Marks every test that reads ../shared when present (``-m reads_shared_data``): CI runs them again
    with the data hidden, the way users run them."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.reads_shared_data)


@pytest.fixture(scope="session", params=["qwen2", "gemma", "llama3"])
def chat_style(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def qwen_tokenizer():
    return build_tokenizer("qwen2")
