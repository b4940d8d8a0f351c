"""The two EI filters (design card §1.1) as pure decisions plus the grading they rest on.

Eq.1 (consistency): keep probe i only if the teacher, shown its own probe exchange
[Q_i ‖ R_T,i ‖ A_T,i] and then the original question Q, answers Q correctly (graded against the
gold answer with the project's checkers).

Eq.2 (rejection band): the base student answers the N'_Q consistent probes of Q; Λ is how many
it gets right, graded against the teacher's final answers A_T,i. The paper's text reads two
ways: its formula drops Q when Λ = N'_Q or Λ ≥ τ_hard, its prose drops "all-solved" and
"too-hard" questions. :class:`RejectionBand` implements both as a band:

    keep Q  iff  N'_Q > 0  and  min_correct ≤ Λ ≤ max_correct  and  Λ < N'_Q

Defaults: ``min_correct = 0`` and ``max_correct = None`` (no upper bound) follow the literal
formula with τ_hard left out (the paper gives no value), i.e. only all-solved questions and
questions without consistent probes are dropped. The prose reading ("too hard" = the student
solves none) is ``min_correct = 1``; the formula with a known τ_hard is ``max_correct = τ_hard - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

from exgrpo_verl.answers import grade
from exgrpo_verl.answers.dates import parse_date
from exgrpo_verl.answers.extract import final_answer_span
from exgrpo_verl.answers.labels import NLI
from exgrpo_verl.answers.numbers import is_plain_number
from exgrpo_verl.datasets.record import Record

KEEP = None


@dataclass(frozen=True)
class RejectionBand:
    """Eq.2's band on Λ (see the module docstring for the readings of the paper)."""

    min_correct: int = 0
    max_correct: int | None = None

    def __post_init__(self) -> None:
        if self.min_correct < 0 or (self.max_correct is not None and self.max_correct < self.min_correct):
            raise ValueError(f"need 0 <= min_correct <= max_correct, got {self.min_correct}, {self.max_correct}")

    def drop_reason(self, n_consistent: int, n_correct: int) -> str | None:
        """None to keep Q, else why it is dropped."""
        if n_consistent == 0:
            return "no_consistent_probes"
        if n_correct >= n_consistent:
            return "all_solved"
        if n_correct < self.min_correct:
            return "below_min_correct"
        if self.max_correct is not None and n_correct > self.max_correct:
            return "above_max_correct"
        return KEEP


def answers_question(response: str, record: Record) -> bool:
    """Eq.1's test: does ``response`` answer the original question correctly?"""
    return grade(record.data_source, response, record.answer, record.choices)[0]


# A probe answer's type is read off the teacher's final answer; each maps to the data_source whose
# checker grades that type.
_CHECKER_BY_KIND = {
    "number": "gsm8k",
    "yes_no": "boolq",
    "nli": "anli",
    "date": "date_understanding",
    "option": "commonsense_qa",
    "math": "math",
    "text": "tabmwp",
}


def reference_kind(reference: str) -> str:
    """What kind of answer a teacher's final answer is, so the student's can be checked against it."""
    text = reference.strip()
    lowered = text.lower()
    if is_plain_number(text):
        return "number"
    if lowered in ("yes", "no", "true", "false"):
        return "yes_no"
    if NLI.parse(lowered) is not None and len(lowered.split()) == 1:
        return "nli"
    if parse_date(text) is not None and len(text) <= 12:
        return "date"
    if len(text.strip("()")) == 1 and text.strip("()").isalpha():
        return "option"
    if "\\" in text or "^" in text or "_" in text:
        return "math"
    return "text"


def teacher_final_answer(teacher_answer: str) -> str | None:
    """A_T,i: the final answer in the teacher's response to a probe (None when it gave none)."""
    return final_answer_span(teacher_answer)


def matches_reference(response: str, reference: str) -> bool:
    """Eq.2's test: does the student's probe answer match the teacher's final answer A_T,i?"""
    kind = reference_kind(reference)
    gold = reference.strip().strip("()") if kind == "option" else reference
    return grade(_CHECKER_BY_KIND[kind], response, gold)[0]
