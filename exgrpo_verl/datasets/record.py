"""One record type for every dataset: what the probes, prompts, writers and eval all read."""

from __future__ import annotations

from dataclasses import dataclass, field

from exgrpo_verl.data_sources import AnswerType, get_data_source


@dataclass(frozen=True)
class Record:
    """A question with its gold answer, in the form the project's checkers grade against.

    ``question`` already shows the options of a multiple-choice question; ``choices`` keeps them
    as {label: text} for graders that accept the option text. ``sub_questions`` holds GSM8K
    Socratic (sub-question, answer) pairs when the source has them.
    """

    id: str
    data_source: str
    question: str
    answer: str
    split: str
    rationale: str | None = None
    choices: dict[str, str] | None = None
    sub_questions: tuple[tuple[str, str], ...] = field(default=())

    @property
    def answer_type(self) -> AnswerType:
        return get_data_source(self.data_source).answer_type

    def choices_column(self) -> dict[str, list[str]] | None:
        """Options in HF's {"label": [...], "text": [...]} shape, which survives parquet unchanged
        (a {label: text} dict would become a struct padded with every other row's labels)."""
        if not self.choices:
            return None
        return {"label": list(self.choices), "text": list(self.choices.values())}
