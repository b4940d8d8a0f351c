"""A reward any random model can learn, for checking that a training loop learns at all.

The score is the share of ASCII characters in the final answer (the probe dialogue's last assistant
turn, ``extra_info["final_response"]``; the whole response for single-turn rows), times the sign in
``EXGRPO_LEARN_SIGN`` (+1 by default, -1 rewards the opposite). A tiny random byte-level model writes
about half ASCII, so the score has spread in every group and both directions can be learned; a loop
that learns one direction but not the other is learning something other than the reward.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from exgrpo_verl.reward import FINAL_RESPONSE_KEY

SIGN_VARIABLE = "EXGRPO_LEARN_SIGN"


def ascii_share(text: str) -> float:
    """The share of characters below U+0080; 0 for an empty text."""
    return sum(ord(character) < 128 for character in text) / len(text) if text else 0.0


def sign() -> float:
    value = os.environ.get(SIGN_VARIABLE, "1")
    if value not in ("1", "-1", "+1"):
        raise ValueError(f"{SIGN_VARIABLE} must be 1 or -1, got {value!r}")
    return float(value)


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None, **kwargs: Any
) -> dict[str, float]:
    text = solution_str
    if isinstance(extra_info, Mapping) and extra_info.get(FINAL_RESPONSE_KEY) is not None:
        text = extra_info[FINAL_RESPONSE_KEY]
    share = ascii_share(text if isinstance(text, str) else "")
    return {"score": sign() * share, "ascii_share": share}
