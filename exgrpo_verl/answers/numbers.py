"""Plain-number answers (GSM8K, GSM8K-Reversal, numeric TabMWP).

"1,000", "$18", "18.0", "18 dollars", "\\frac{3}{4}" and "3/4" all read as numbers; units and
currency are ignored, and a right-hand side after "=" wins ("48 + 24 = 72" and "x = 72" read 72).
A span is a number only when it commits to one: an inequality ("x >= 72", "73 \\neq 72") or two
different numbers ("72 or 73", "2 \\times 10^3", "5 hours 30 minutes") is no answer. This runs once
per rollout, so the common case (a short span with one integer) takes a single regex search.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from exgrpo_verl.answers.verdict import NO_ANSWER, Choices, Verdict

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_FRAC = re.compile(r"(-?)\\[dt]?frac\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+(?![a-zA-Z]))?(?:\s*/\s*-?\d+(?:\.\d+)?)?")
_WHOLE_NUMBER = re.compile(r"\s*" + _NUMBER.pattern + r"\s*")
_RELATION = re.compile(r"[<>\u2264\u2265\u2260]|!=|\\(?:le|ge|leq|geq|ne|neq|lt|gt|leqslant|geqslant|not)(?![a-zA-Z])")
_REL_TOL = 1e-6


def _clean(text: str) -> str | None:
    """``text`` without separators and currency, from its last "=" on; None for an inequality."""
    if "\\" in text or not text.isascii():
        if _RELATION.search(text):
            return None
        text = text.replace("\u2212", "-").replace("\\!", "").replace("\\,", "").replace("\\$", "")
    elif ("<" in text or ">" in text or "!=" in text) and _RELATION.search(text):
        return None
    if "," in text:
        text = _THOUSANDS.sub("", text)
    if "=" in text:
        text = text.rsplit("=", 1)[1]
    return text


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _ratio(numerator: str, denominator: str) -> float | None:
    den = float(denominator)
    return float(numerator) / den if den else None


def _token_value(token: str) -> float | None:
    if "/" in token:
        numerator, denominator = token.replace(" ", "").split("/", 1)
        return _finite(_ratio(numerator, denominator))
    return _finite(float(token))


def parse_number(text: str) -> float | None:
    """The one number ``text`` states (after its last "="), or None when it states none, several
    different ones, or an inequality."""
    cleaned = _clean(text)
    if cleaned is None:
        return None
    values: list[float | None] = []
    if "frac" in cleaned:
        for frac in _FRAC.finditer(cleaned):
            value = _ratio(frac.group(2), frac.group(3))
            values.append(_finite(-value if (value is not None and frac.group(1)) else value))
        cleaned = _FRAC.sub(" ", cleaned)
    values.extend(_token_value(match.group()) for match in _NUMBER.finditer(cleaned))
    if not values or values[0] is None or any(value != values[0] for value in values[1:]):
        return None
    return values[0]


@lru_cache(maxsize=65536)
def _gold_number(gold: str) -> float | None:
    return parse_number(gold)


def is_plain_number(text: str) -> bool:
    """True when ``text`` is nothing but a number (after removing currency and separators)."""
    cleaned = _clean(str(text))
    if cleaned is None:
        return False
    cleaned = cleaned.strip().strip("$%").rstrip(".")
    return bool(cleaned) and _WHOLE_NUMBER.fullmatch(cleaned) is not None


def numbers_equal(pred: float, gold: float) -> bool:
    """Equal, within a relative tolerance of 1e-6 unless both are whole numbers (1000001 is not
    1000000)."""
    if pred == gold:
        return True
    if pred.is_integer() and gold.is_integer():
        return False
    return abs(pred - gold) <= _REL_TOL * max(1.0, abs(gold))


def check_number(span: str, gold: object, choices: Choices | None = None, timeout_s: float = 0.0) -> Verdict:
    """Numeric equality with a relative tolerance of 1e-6."""
    if span.isdigit() and span.isascii():  # the common case: a plain integer
        pred: float | None = float(span)
        pred_text = span
    else:
        pred = parse_number(span)
        if pred is None:
            return NO_ANSWER
        pred_text = repr(int(pred)) if pred.is_integer() else repr(pred)
    gold_value = _gold_number(gold) if type(gold) is str else _gold_number(str(gold))
    if gold_value is None:
        return (False, pred_text)
    return (pred == gold_value or numbers_equal(pred, gold_value), pred_text)
