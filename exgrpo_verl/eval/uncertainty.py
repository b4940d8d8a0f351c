"""How far a report's accuracies can be trusted: a 95% Wilson interval for each, and an exact McNemar
test between two runs on the same questions.

A few hundred questions leave intervals several points wide, so two runs' accuracies can differ by
chance. Runs evaluated on the same questions are compared per question: only the questions one run
got right and the other wrong carry information, and under "no difference" each such question is a
fair coin (the exact McNemar test).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scipy.stats import binomtest

Key = tuple[str, str, int]
"""(dataset, question id, sample), as the eval generations file keys its answers."""


def accuracy_interval(correct: int, answers: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of an accuracy, in percent (None without answers)."""
    if answers <= 0:
        return None
    interval = binomtest(correct, answers).proportion_ci(confidence_level=confidence, method="wilson")
    return 100 * interval.low, 100 * interval.high


@dataclass(frozen=True)
class PairedComparison:
    """Two runs on the questions both answered."""

    shared: int
    only_first: int
    """Right in the first run, wrong in the second."""
    only_second: int

    @property
    def p_value(self) -> float:
        """Two-sided exact McNemar test (1.0 when no question tells the runs apart)."""
        discordant = self.only_first + self.only_second
        return 1.0 if discordant == 0 else binomtest(self.only_second, discordant, 0.5).pvalue


def compare(first: dict[Key, bool], second: dict[Key, bool], dataset: str) -> PairedComparison | None:
    """The paired comparison on one dataset, or None when the runs share none of its answers."""
    shared = [key for key in first.keys() & second.keys() if key[0] == dataset]
    if not shared:
        return None
    return PairedComparison(
        shared=len(shared),
        only_first=sum(first[key] and not second[key] for key in shared),
        only_second=sum(second[key] and not first[key] for key in shared),
    )


def answers_correct(generations: str | Path) -> dict[Key, bool]:
    """Per answer of an eval generations file: graded correct or not. A line that does not parse (a
    run killed mid-write) is left out, as ``eval`` itself does on resume."""
    correct: dict[Key, bool] = {}
    with Path(generations).open(encoding="utf-8") as handle:
        for line in handle:
            try:
                answer = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(answer, dict) and "correct" in answer and "dataset" in answer:
                correct[(answer["dataset"], str(answer["id"]), int(answer.get("sample", 0)))] = bool(answer["correct"])
    return correct
