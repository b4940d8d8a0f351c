"""Grade a response against a gold answer, choosing the checker by data_source."""

from __future__ import annotations

from typing import Any

from exgrpo_verl.answers.choices import check_choice, normalize_choices
from exgrpo_verl.answers.dates import check_date
from exgrpo_verl.answers.extract import plain_text, raw_answer_span
from exgrpo_verl.answers.free_text import check_free_text
from exgrpo_verl.answers.labels import check_nli, check_yes_no
from exgrpo_verl.answers.math_expr import DEFAULT_TIMEOUT_S, check_math
from exgrpo_verl.answers.numbers import check_number
from exgrpo_verl.answers.verdict import NO_ANSWER, Checker, Verdict
from exgrpo_verl.data_sources import AnswerType, get_data_source

_CHECKERS: dict[AnswerType, Checker] = {
    AnswerType.NUMBER: check_number,
    AnswerType.MATH: check_math,
    AnswerType.CHOICE: check_choice,
    AnswerType.YES_NO: check_yes_no,
    AnswerType.NLI: check_nli,
    AnswerType.DATE: check_date,
    AnswerType.FREE_TEXT: check_free_text,
}


def _golds(ground_truth: Any) -> list[Any]:
    """A gold answer or several acceptable ones (list, tuple or numpy array)."""
    if hasattr(ground_truth, "tolist") and not isinstance(ground_truth, (str, bytes)):
        ground_truth = ground_truth.tolist()
    if isinstance(ground_truth, (list, tuple)):
        return list(ground_truth)
    return [ground_truth]


_KEEPS_LATEX = frozenset({AnswerType.MATH})
"""Answer types whose checker reads the span's LaTeX as written (``20\\text{ cm}^2``, as the gold
writes it); the others get plain text (``\\text{B}`` reads B)."""

_checker_by_source: dict[str, tuple[Checker, bool]] = {}


def _checker_entry(data_source: str) -> tuple[Checker, bool]:
    entry = _checker_by_source.get(data_source)
    if entry is None:
        answer_type = get_data_source(data_source).answer_type
        entry = (_CHECKERS[answer_type], answer_type in _KEEPS_LATEX)
        _checker_by_source[data_source] = entry
    return entry


def checker_for(data_source: str) -> Checker:
    """The checker for a data_source (raises UnknownDataSourceError, naming the supported ones)."""
    return _checker_entry(data_source)[0]


def grade(
    data_source: str,
    response: str,
    ground_truth: Any,
    choices: Any = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Verdict:
    """Extract the final answer of ``response`` and check it against ``ground_truth``.

    Raises :class:`~exgrpo_verl.data_sources.UnknownDataSourceError` for an unknown data_source;
    any response text, however malformed, yields a Verdict.
    """
    checker, keeps_latex = _checker_by_source.get(data_source) or _checker_entry(data_source)
    span = raw_answer_span(response if type(response) is str else str(response))
    if span is None:
        return NO_ANSWER
    if not keeps_latex and "\\" in span:
        span = plain_text(span)
        if not span:
            return NO_ANSWER
    options = normalize_choices(choices) if choices is not None else None
    if type(ground_truth) is str:
        return checker(span, ground_truth, options, timeout_s)
    verdict = NO_ANSWER
    for gold in _golds(ground_truth):
        verdict = checker(span, gold, options, timeout_s)
        if verdict[0]:
            return verdict
    return verdict
