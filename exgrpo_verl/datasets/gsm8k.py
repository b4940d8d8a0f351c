"""GSM8K's answer format, the Socratic variant, and how GSM8K-Reversal is derived from GSM8K.

A GSM8K answer is a worked solution whose arithmetic carries calculator marks (``<<16-3-4=9>>``),
then ``#### 18``. The Socratic variant prefixes each solution line with the sub-question it
answers: ``How many eggs does Janet sell? ** Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs``.

GSM8K-Reversal (no public copy is used): backward questions in the style of forward-backward
reasoning. From a GSM8K problem we hide one given number that the solution computes with,
replace it by ``x``, state the original answer, and ask for ``x``; the gold answer is the hidden
number. The hidden number is the first one in the question that (a) is written in digits,
(b) occurs once in the question, (c) is an operand of the solution's calculator marks (so the
answer depends on it) and (d) differs from the answer. Problems with no such number are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exgrpo_verl.datasets.errors import FieldError

CALC_MARK = re.compile(r"<<([^<>]*)>>")
_FINAL = re.compile(r"\n?\s*####\s*(.*?)\s*$", re.DOTALL)
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_OPERAND = re.compile(r"\d+(?:\.\d+)?")
# A number written in digits, not part of a word, a time (3:30), a fraction (1/2) or a decimal.
QUESTION_NUMBER = re.compile(r"(?<![\w.,:/])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w:/]|[.,]\d)")
SOCRATIC_SEPARATOR = " ** "


@dataclass(frozen=True)
class Solution:
    """A parsed GSM8K answer field."""

    rationale: str
    """The worked solution without calculator marks."""
    answer: str
    """The number after ####, without thousands separators."""
    sub_questions: tuple[tuple[str, str], ...]
    """Socratic (sub-question, solution line) pairs; empty for the main format."""
    operands: frozenset[float]
    """Numbers the calculator marks compute with."""


def strip_calc_marks(text: str) -> str:
    return CALC_MARK.sub("", text)


def number_value(token: str) -> float:
    return float(token.replace(",", ""))


def parse_solution(answer_field: str) -> Solution:
    """Split a GSM8K answer into rationale, final answer and (Socratic) sub-questions."""
    final = _FINAL.search(answer_field)
    if final is None or "####" not in answer_field:
        raise FieldError("answer", "has no '#### <number>' final answer")
    answer = final.group(1).replace(",", "").strip()
    if not _PLAIN_NUMBER.fullmatch(answer):
        raise FieldError("answer", f"final answer after #### is not a number: {final.group(1)!r}")
    body = answer_field[: final.start()].strip()
    operands: set[float] = set()
    for expression in CALC_MARK.findall(body):
        left = expression.split("=", 1)[0]
        operands.update(float(token) for token in _OPERAND.findall(left))
    rationale_lines, sub_questions = [], []
    for line in body.splitlines():
        line = line.strip()
        if not line:
            continue
        if SOCRATIC_SEPARATOR in line:
            sub_question, step = line.split(SOCRATIC_SEPARATOR, 1)
            step = strip_calc_marks(step).strip()
            sub_questions.append((sub_question.strip(), step))
            rationale_lines.append(step)
        else:
            rationale_lines.append(strip_calc_marks(line).strip())
    if not rationale_lines:
        raise FieldError("answer", "has no worked solution before ####")
    return Solution("\n".join(rationale_lines), answer, tuple(sub_questions), frozenset(operands))


def reversal_question(question: str, solution: Solution) -> tuple[str, str] | None:
    """(backward question, hidden number) for a GSM8K problem, or None when no number qualifies."""
    matches = list(QUESTION_NUMBER.finditer(question))
    values = [number_value(m.group(0)) for m in matches]
    answer = float(solution.answer)
    for match, value in zip(matches, values, strict=True):
        if values.count(value) != 1 or value not in solution.operands or value == answer:
            continue
        masked = question[: match.start()] + "x" + question[match.end() :]
        hidden = match.group(0).replace(",", "")
        backward = (
            f"{masked.strip()}\n\nThe answer to the question above is {solution.answer}. "
            "What is the value of the unknown variable x?"
        )
        return backward, hidden
    return None
