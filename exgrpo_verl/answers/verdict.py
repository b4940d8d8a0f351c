"""The result of checking one prediction.

A plain ``(correct, pred)`` tuple rather than a named class: grading runs once per rollout and a
tuple is several times cheaper to build than a NamedTuple or dataclass.
"""

from __future__ import annotations

from typing import Protocol

Verdict = tuple[bool, str]
"""(correct against the gold answer, normalised prediction or "" when none)."""

NO_ANSWER: Verdict = (False, "")

Choices = dict[str, str]
"""Multiple-choice options, {label: option text}."""


class Checker(Protocol):
    """Every answer type's checker has this shape, so grading dispatches without adapters."""

    def __call__(self, span: str, gold: object, choices: Choices | None, timeout_s: float) -> Verdict: ...
