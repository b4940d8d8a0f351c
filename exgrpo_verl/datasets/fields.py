"""Typed access to raw row fields; every problem raises FieldError naming the field."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from exgrpo_verl.datasets.errors import FieldError


def text(row: Mapping[str, Any], name: str, *, allow_empty: bool = False, numbers: bool = False) -> str:
    """A required string field. ``numbers``: a number is accepted and converted (answers, labels);
    elsewhere a number is a malformed row (``"question": 5`` is not a question)."""
    value = row.get(name)
    if value is None:
        raise FieldError(name, "missing")
    allowed = (str, int, float) if numbers else (str,)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise FieldError(name, f"must be a string, got {type(value).__name__} {_preview(value)}")
    value = str(value).strip()
    if not value and not allow_empty:
        raise FieldError(name, "is empty")
    return value


def _preview(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def optional_text(row: Mapping[str, Any], name: str) -> str | None:
    """A string field that may be absent or empty (then None)."""
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v).strip() for v in value if str(v).strip())
    elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FieldError(name, f"must be a string, got {type(value).__name__}")
    value = str(value).strip()
    return value or None


def first_present(row: Mapping[str, Any], *names: str) -> str:
    """The first of ``names`` the row has (for datasets whose copies name a field differently)."""
    for name in names:
        if row.get(name) is not None:
            return name
    raise FieldError(" or ".join(names), "missing")


def structured(row: Mapping[str, Any], name: str) -> Any:
    """A nested field (dict or list); csv cells and some exports hold it as a JSON string."""
    value = row.get(name)
    if value is None:
        raise FieldError(name, "missing")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise FieldError(name, f"is a string that is not JSON ({error.msg})") from error
    if hasattr(value, "tolist"):
        value = value.tolist()
    return value


def hf_choices(row: Mapping[str, Any], name: str = "choices") -> dict[str, str]:
    """HF multiple-choice options {"label": [...], "text": [...]} as {label: text}."""
    raw = structured(row, name)
    if not isinstance(raw, Mapping) or "label" not in raw or "text" not in raw:
        raise FieldError(name, 'must be {"label": [...], "text": [...]}')
    labels, texts = raw["label"], raw["text"]
    labels = labels.tolist() if hasattr(labels, "tolist") else labels
    texts = texts.tolist() if hasattr(texts, "tolist") else texts
    if not isinstance(labels, Sequence) or not isinstance(texts, Sequence) or isinstance(labels, str):
        raise FieldError(name, "label and text must be lists")
    if len(labels) != len(texts) or len(labels) < 2:
        raise FieldError(name, f"needs at least 2 options with one text per label, got {len(labels)}/{len(texts)}")
    options = {str(label).strip(): str(option).strip() for label, option in zip(labels, texts, strict=True)}
    if len(options) != len(labels) or any(not label for label in options):
        raise FieldError(name, "labels must be distinct and non-empty")
    return options


def letter_labels(options: Sequence[str]) -> dict[str, str]:
    """A list of option texts labelled A, B, C, ..."""
    if len(options) > 26:
        raise FieldError("choices", f"at most 26 options are supported, got {len(options)}")
    return {chr(ord("A") + i): str(option).strip() for i, option in enumerate(options)}


def boolean(row: Mapping[str, Any], name: str) -> bool:
    """A yes/no gold answer stored as bool, 0/1 or "true"/"false"/"yes"/"no"."""
    value = row.get(name)
    if value is None:
        raise FieldError(name, "missing")
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    lowered = str(value).strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise FieldError(name, f"must be a boolean, got {value!r}")
