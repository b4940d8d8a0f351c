"""Multiple-choice answers (CommonsenseQA A-E, ARC A-D or 1-4, OpenBookQA A-D).

Accepted: "B", "(B)", "B)", "B. text", "Option B", and the option text itself when exactly one
option matches. A span that names a second option ("A or B", "A, B", "(B) and (C)") is no answer.
Options come from ``extra_info["choices"]`` in any of the shapes :func:`normalize_choices` reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from exgrpo_verl.answers.verdict import NO_ANSWER, Choices, Verdict

_LETTER = re.compile(
    r"(?P<keyword>(?:option|choice|answer)\s*)?[\(\[]?(?P<label>[A-Z]|\d)(?:[\)\]]|[.:,](?!\d)|(?=\s)|$)",
    re.IGNORECASE,
)
_OTHER_LABEL = re.compile(r"(?<![\w'])(?:\((?P<any>[A-Za-z]|\d)\)|(?P<upper>[A-Z]|\d))(?![\w'])")
_PUNCT = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")
_DEFAULT_LABELS = ("A", "B", "C", "D", "E")


def normalize_choices(raw: Any) -> Choices | None:
    """Read options as {label: text} from a dict, HF's {"label": [...], "text": [...]}, or a list
    of texts (labelled A, B, ...). Returns None when ``raw`` holds no options."""
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        if "label" in raw and "text" in raw:
            return {
                str(label).strip(): str(text)
                for label, text in zip(list(raw["label"]), list(raw["text"]), strict=False)
            }
        return {str(label).strip(): str(text) for label, text in raw.items()} or None
    if isinstance(raw, Sequence) or hasattr(raw, "tolist"):
        texts = list(raw.tolist() if hasattr(raw, "tolist") else raw)
        return {chr(ord("A") + i): str(text) for i, text in enumerate(texts[:26])} or None
    return None


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation, collapse spaces: the form option texts are compared in."""
    return _SPACES.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def _text_match(span: str, choices: Choices, exact: bool) -> str | None:
    norm = normalize_text(span)
    if not norm:
        return None
    hits = []
    for label, text in choices.items():
        option = normalize_text(text)
        if not option:
            continue
        if norm == option or (not exact and re.search(rf"(?<!\w){re.escape(option)}(?!\w)", norm)):
            hits.append(label)
    return hits[0] if len(hits) == 1 else None


def _names_another(rest: str, label: str, labels: Sequence[str], choices: Choices | None) -> bool:
    """Whether the text after the chosen label names a different option ("A or B")."""
    if not rest.strip(" .,;:)]"):
        return False
    if choices and label in choices:
        option = normalize_text(choices[label])
        if option and normalize_text(rest).startswith(option):
            return False  # "B. A dog" when option B is "A dog"
    for match in _OTHER_LABEL.finditer(rest):
        other = (match.group("any") or match.group("upper")).upper()
        if other != label and other in labels:
            return True
    return False


def _letter(span: str, labels: Sequence[str], choices: Choices | None = None) -> str | None:
    stripped = span.strip()
    match = _LETTER.match(stripped)
    if match is None:
        return None
    label = match.group("label")
    if label.islower() and not match.group("keyword") and len(stripped.strip("()[]")) != 1:
        return None  # "a dog" is an article, not option (a)
    label = label.upper()
    if label not in labels or _names_another(stripped[match.end() :], label, labels, choices):
        return None
    return label


def parse_choice(span: str, choices: Choices | None) -> str | None:
    """The option label a response commits to, or None."""
    labels = tuple(choices) if choices else _DEFAULT_LABELS + ("1", "2", "3", "4", "5")
    if choices:
        exact = _text_match(span, choices, exact=True)
        if exact is not None:
            return exact
    letter = _letter(span, labels, choices)
    if letter is not None:
        return letter
    return _text_match(span, choices, exact=False) if choices else None


def gold_label(gold: object, choices: Choices | None) -> str:
    """Gold may be a label or the option text."""
    text = str(gold).strip()
    if choices and text not in choices:
        by_text = _text_match(text, choices, exact=True)
        if by_text is not None:
            return by_text
    return text.upper()


def check_choice(span: str, gold: object, choices: Choices | None, timeout_s: float = 0.0) -> Verdict:
    pred = parse_choice(span, choices)
    if pred is None:
        return NO_ANSWER
    return (pred == gold_label(gold, choices), pred)
