"""Accuracy, pass@k and the held-in / OOD averages the paper reports (all in percent)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from exgrpo_verl.data_sources import get_data_source, held_in_names, ood_names

GROUPS: dict[str, list[str]] = {"held_in": held_in_names(), "ood": ood_names()}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one question with ``c`` of ``n`` samples correct (Chen et al., 2021):
    1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(k):
        miss *= (n - c - i) / (n - i)
    return 1.0 - miss


def dataset_metrics(per_item: Sequence[Sequence[Mapping[str, Any]]], pass_k: Sequence[int]) -> dict[str, Any]:
    """Metrics of one dataset from its answers, grouped per question (each a list of samples).

    ``accuracy`` is the mean over questions of the fraction of correct samples (= accuracy when
    greedy, = pass@1 when sampling); ``correct``/``answers`` are the raw counts behind it."""
    answers = [a for samples in per_item for a in samples]
    correct = sum(bool(a["correct"]) for a in answers)
    per_question = [sum(bool(a["correct"]) for a in samples) / len(samples) for samples in per_item]
    metrics: dict[str, Any] = {
        "group": "held_in" if get_data_source(answers[0]["dataset"]).held_in else "ood",
        "questions": len(per_item),
        "answers": len(answers),
        "correct": correct,
        "accuracy": 100.0 * sum(per_question) / len(per_question),
        "no_answer": sum(1 for a in answers if not a.get("pred")),
        "truncated": sum(1 for a in answers if a.get("finish_reason") == "length"),
    }
    if pass_k:
        metrics["pass_at_k"] = {
            str(k): 100.0
            * sum(pass_at_k(len(s), sum(bool(a["correct"]) for a in s), k) for s in per_item)
            / len(per_item)
            for k in pass_k
        }
    return metrics


def group_averages(datasets: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Unweighted mean accuracy per group over the datasets evaluated; ``complete`` says whether
    every dataset of the group is in it (only then is it comparable with the paper's average)."""
    averages = {}
    for group, members in GROUPS.items():
        present = [name for name in members if name in datasets]
        averages[group] = {
            "accuracy": sum(datasets[n]["accuracy"] for n in present) / len(present) if present else None,
            "datasets": present,
            "complete": len(present) == len(members),
        }
    return averages
