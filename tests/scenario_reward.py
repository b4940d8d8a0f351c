"""A reward for the end-to-end test (loaded by verl from this file): every Scenario-A (full) dialogue
is right, every other answer wrong. A random tiny model never answers GSM8K correctly, so with the
project's reward all rewards are 0; this one makes every group one where Scenario A wins, so the
r_dsu bonus must show up in the rewards verl trains on."""

from __future__ import annotations

from typing import Any


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any):
    correct = float(isinstance(extra_info, dict) and extra_info.get("exgrpo_scenario") == "full")
    return {"score": correct, "acc": correct}
