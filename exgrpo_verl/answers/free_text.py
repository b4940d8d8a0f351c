"""TabMWP answers: numbers when the gold is a number, otherwise normalised text or an option."""

from __future__ import annotations

from exgrpo_verl.answers.choices import normalize_text, parse_choice
from exgrpo_verl.answers.numbers import check_number, is_plain_number
from exgrpo_verl.answers.verdict import Choices, Verdict


def check_free_text(span: str, gold: object, choices: Choices | None, timeout_s: float = 0.0) -> Verdict:
    gold_text = str(gold)
    if is_plain_number(gold_text):
        return check_number(span, gold_text)
    if choices:
        label = parse_choice(span, choices)
        if label is not None:
            span = choices[label]
    pred = normalize_text(span)
    return (bool(pred) and pred == normalize_text(gold_text), pred)
