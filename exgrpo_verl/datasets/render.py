"""How each kind of question is shown to the model (options, passages, NLI pairs).

The \\boxed{} instruction is added later by exgrpo_verl.prompts; this only builds the question.
"""

from __future__ import annotations

from collections.abc import Mapping


def with_options(question: str, choices: Mapping[str, str]) -> str:
    """The question followed by its options, one "(A) text" per line."""
    lines = [f"({label}) {text}" for label, text in choices.items()]
    return f"{question.strip()}\n\nAnswer choices:\n" + "\n".join(lines)


def passage_question(passage: str, question: str) -> str:
    """A reading-comprehension yes/no question (BoolQ stores it lower-case without "?")."""
    question = question.strip()
    question = question[:1].upper() + question[1:]
    if not question.endswith("?"):
        question += "?"
    return f"Passage: {passage.strip()}\n\nQuestion: {question}"


def nli_question(premise: str, hypothesis: str) -> str:
    return (
        f"Premise: {premise.strip()}\nHypothesis: {hypothesis.strip()}\n\n"
        "Does the premise entail the hypothesis, contradict it, or neither (neutral)?"
    )


def table_question(title: str | None, table: str | None, question: str) -> str:
    """A TabMWP question: the table (with its title) above the question."""
    parts = []
    if title:
        parts.append(title.strip())
    if table:
        parts.append(table.strip())
    parts.append(question.strip())
    return "\n\n".join(parts) if len(parts) > 1 else parts[0]
