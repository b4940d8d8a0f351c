"""Closed label sets with synonyms: yes/no (StrategyQA, BoolQ) and NLI (ANLI, e-SNLI)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from exgrpo_verl.answers.verdict import NO_ANSWER, Choices, Verdict

_WORDS = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class LabelSet:
    """Canonical labels, the words that mean each, and the order used for integer gold labels."""

    synonyms: dict[str, str]
    order: tuple[str, ...]
    first_word_wins: bool
    """Yes/no answers often go on to explain ("Yes, there is no ..."), so their first word decides,
    unless the next word is the other label ("yes or no", "yes/no"); an NLI answer that names two
    labels is ambiguous."""

    def canonical(self, value: object) -> str | None:
        """Map a gold value (str, bool, int) to a canonical label."""
        if isinstance(value, bool):
            value = "yes" if value else "no"
        if isinstance(value, int) and 0 <= value < len(self.order):
            return self.order[value]
        text = str(value).strip().lower()
        if text.isascii() and text.isdigit() and int(text) < len(self.order):
            return self.order[int(text)]
        return self.parse(text)

    def parse(self, span: str) -> str | None:
        """The label a response commits to, or None when it names none, several, or a negated one
        ("not true"); see ``first_word_wins``."""
        words = _WORDS.findall(span.lower())
        if not words:
            return None
        if self.first_word_wins and words[0] in self.synonyms:
            first = self.synonyms[words[0]]
            return None if self._hedged(first, words) else first
        found = set()
        for prev, word in zip(["", *words], words, strict=False):
            if word in self.synonyms:
                if prev == "not":
                    return None
                found.add(self.synonyms[word])
        return found.pop() if len(found) == 1 else None

    def _hedged(self, first: str, words: list[str]) -> bool:
        """ "yes or no", "yes/no", "yes and no", or nothing but two different labels."""
        connector = len(words) > 2 and words[1] in ("or", "and")
        second = words[2] if connector else words[1] if len(words) > 1 else None
        if second not in self.synonyms or self.synonyms[second] == first:
            return False
        return connector or len(words) == 2


YES_NO = LabelSet(
    synonyms={"yes": "yes", "true": "yes", "correct": "yes", "no": "no", "false": "no", "incorrect": "no"},
    order=("no", "yes"),
    first_word_wins=True,
)

NLI = LabelSet(
    synonyms={
        "entailment": "entailment",
        "entails": "entailment",
        "entailed": "entailment",
        "entail": "entailment",
        "neutral": "neutral",
        "neither": "neutral",
        "contradiction": "contradiction",
        "contradicts": "contradiction",
        "contradictory": "contradiction",
        "contradict": "contradiction",
    },
    order=("entailment", "neutral", "contradiction"),
    first_word_wins=False,
)


def check_label(span: str, gold: object, labels: LabelSet) -> Verdict:
    pred = labels.parse(span)
    if pred is None:
        return NO_ANSWER
    return (pred == labels.canonical(gold), pred)


def check_yes_no(span: str, gold: object, choices: Choices | None = None, timeout_s: float = 0.0) -> Verdict:
    return check_label(span, gold, YES_NO)


def check_nli(span: str, gold: object, choices: Choices | None = None, timeout_s: float = 0.0) -> Verdict:
    return check_label(span, gold, NLI)
