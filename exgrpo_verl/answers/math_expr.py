"""Math-expression answers (MATH): cheap exact comparisons first, then math-verify in a helper.

Both sides go through the same steps. Two spans that are the same text once spacing, ``\\left``,
``\\dfrac``, degree and percent signs and text wrappers (``\\text{}``, ``\\mbox{}``,
``\\mathrm{}``) are normalised away are the same answer; two plain decimal numbers (".5", "0.50",
"1,000") are compared as exact decimals. Everything else (fractions, roots, expressions, sets,
intervals, matrices, equations, inequalities) goes to math-verify in a helper process, see
:mod:`exgrpo_verl.answers.math_helpers` and :mod:`exgrpo_verl.answers.math_equivalence`.

No shortcut here reads a number out of a relation: "x - y = 10" is not the number 10.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from exgrpo_verl.answers import math_helpers
from exgrpo_verl.answers.verdict import Choices, Verdict

DEFAULT_TIMEOUT_S = 5.0

_TEXT_WRAPPERS = re.compile(
    r"\\(?:text|textrm|textnormal|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}"
)
_NOISE = re.compile(r"\\left|\\right|\\[,;:! ]|\\displaystyle|\^\{?\\circ\}?|\\%|%|\$|\s+")
_FRAC_ALIASES = re.compile(r"\\[dtc]frac")
_PERCENT_WORDS = re.compile(r"(?<=\d)\s*(?:percentage|percent|pct)\b")
_THIN_SPACES = re.compile(r"\\[,!]|\{,\}|\\\$|\$|\s+$|^\s+")
_PLAIN_DECIMAL = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_ROUNDING = Decimal("0.000001")
"""Decimals with more places than this are compared rounded to it, as math-verify rounds floats."""


def normalize_latex(expr: str) -> str:
    """The form two answers are compared in as text."""
    if "\\" in expr:
        expr = _TEXT_WRAPPERS.sub(r"\1", _FRAC_ALIASES.sub(r"\\frac", expr))
    if "p" in expr:
        expr = _PERCENT_WORDS.sub("%", expr)
    return _NOISE.sub("", expr).rstrip(".")


def plain_decimal(text: str) -> Decimal | None:
    """``text`` as an exact decimal when it is nothing but a number ("-.5", "1,000", "\\$18.50")."""
    text = _THIN_SPACES.sub("", text)
    if not _PLAIN_DECIMAL.fullmatch(text):
        return None
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def decimals_equal(pred: Decimal, gold: Decimal) -> bool:
    if pred == gold:
        return True
    places = max(-pred.as_tuple().exponent, -gold.as_tuple().exponent)  # type: ignore[operator]
    return places > 6 and pred.quantize(_ROUNDING) == gold.quantize(_ROUNDING)


def math_equal(pred: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether ``pred`` and ``gold`` are the same mathematical answer, decided within ``timeout_s``
    (a check that cannot finish in time, or whose helper fails, is False)."""
    normalized = normalize_latex(pred)
    if normalized and normalized == normalize_latex(gold):
        return True
    pred_value, gold_value = plain_decimal(pred), plain_decimal(gold)
    if pred_value is not None and gold_value is not None:
        return decimals_equal(pred_value, gold_value)
    return math_helpers.equivalent(pred, gold, timeout_s)


def check_math(
    span: str, gold: object, choices: Choices | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Verdict:
    """``span`` is the raw answer (LaTeX text wrappers intact, as in the gold)."""
    return (math_equal(span, str(gold), timeout_s), span)
