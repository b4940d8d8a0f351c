"""Date answers (Date Understanding): MM/DD/YYYY, also read from ISO dates and option letters."""

from __future__ import annotations

import re

from exgrpo_verl.answers.choices import parse_choice
from exgrpo_verl.answers.verdict import NO_ANSWER, Choices, Verdict

_US_DATE = re.compile(r"(?<!\d)(\d{1,2})\s*/\s*(\d{1,2})\s*/\s*(\d{4})(?!\d)")
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")


def _us_date(month: str, day: str, year: str) -> str | None:
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return None
    return f"{int(month):02d}/{int(day):02d}/{year}"


def parse_date(text: str) -> str | None:
    """The date ``text`` states, as zero-padded MM/DD/YYYY; None when it states none, an invalid
    one, or two different dates ("05/01/2021 or 05/02/2021")."""
    dates = {_us_date(*match.groups()) for match in _US_DATE.finditer(text)}
    dates.update(_us_date(month, day, year) for year, month, day in (m.groups() for m in _ISO_DATE.finditer(text)))
    return dates.pop() if len(dates) == 1 else None


def check_date(span: str, gold: object, choices: Choices | None, timeout_s: float = 0.0) -> Verdict:
    pred = parse_date(span)
    if pred is None and choices:
        label = parse_choice(span, choices)
        pred = parse_date(choices[label]) if label is not None else None
    if pred is None:
        return NO_ANSWER
    gold_text = str(gold)
    if choices and gold_text.strip() in choices:
        gold_text = choices[gold_text.strip()]
    return (pred == parse_date(gold_text), pred)
