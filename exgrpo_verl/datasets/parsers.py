"""One row parser per dataset: a raw row (hub or original file format) -> Record.

Each parser raises FieldError for a malformed row; the loader adds the file/row location. A
parser returns None for a well-formed row that yields no record (GSM8K-Reversal: no number can
be hidden), which the loader counts separately.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exgrpo_verl.answers.dates import parse_date
from exgrpo_verl.answers.extract import last_boxed
from exgrpo_verl.answers.labels import NLI
from exgrpo_verl.datasets import fields, gsm8k, render
from exgrpo_verl.datasets.errors import FieldError
from exgrpo_verl.datasets.record import Record

Row = Mapping[str, Any]


@dataclass(frozen=True)
class RowContext:
    dataset: str
    split: str
    index: int
    """0-based position of the row among all rows read for this load."""

    def default_id(self) -> str:
        return f"{self.dataset}-{self.split}-{self.index}"

    def record(self, row: Row, id_field: str | None = None, **values: Any) -> Record:
        record_id = fields.optional_text(row, id_field) if id_field else None
        return Record(id=record_id or self.default_id(), data_source=self.dataset, split=self.split, **values)


def _choice_record(row: Row, ctx: RowContext, stem_field: str, rationale: str | None = None) -> Record:
    """ARC / CommonsenseQA / OpenBookQA: HF choices; numeric labels (1-4, some ARC rows) become A-D
    so every multiple-choice question asks for a letter."""
    stem = fields.text(row, stem_field)
    options = fields.hf_choices(row)
    key = fields.text(row, "answerKey", numbers=True)
    if key not in options:
        raise FieldError("answerKey", f"{key!r} is not one of the labels {list(options)}")
    if all(label.isdigit() for label in options):
        relabel = {label: chr(ord("A") + i) for i, label in enumerate(options)}
        options = {relabel[label]: text for label, text in options.items()}
        key = relabel[key]
    return ctx.record(
        row, "id", question=render.with_options(stem, options), answer=key, choices=options, rationale=rationale
    )


def parse_arc(row: Row, ctx: RowContext) -> Record:
    return _choice_record(row, ctx, "question")


def parse_commonsense_qa(row: Row, ctx: RowContext) -> Record:
    if not fields.optional_text(row, "answerKey"):
        raise FieldError("answerKey", "is empty (the hub's test split has no labels; use validation)")
    return _choice_record(row, ctx, "question")


def parse_openbookqa(row: Row, ctx: RowContext) -> Record:
    # The "additional" config carries the supporting science fact.
    return _choice_record(row, ctx, "question_stem", rationale=fields.optional_text(row, "fact1"))


def parse_boolq(row: Row, ctx: RowContext) -> Record:
    gold = fields.boolean(row, fields.first_present(row, "answer", "label"))
    question = render.passage_question(fields.text(row, "passage"), fields.text(row, "question"))
    return ctx.record(row, "idx", question=question, answer="yes" if gold else "no")


def parse_math(row: Row, ctx: RowContext) -> Record:
    """MATH / MATH-500: the gold answer is the last \\boxed{} of the solution (an ``answer``
    column, as in MATH-500, is used only when the solution has none)."""
    problem = fields.text(row, "problem")
    solution = fields.text(row, "solution")
    answer = last_boxed(solution)
    if answer is None or not answer.strip():
        answer = fields.optional_text(row, "answer")
        if answer is None:
            raise FieldError("solution", "has no \\boxed{} final answer")
    return ctx.record(row, "unique_id", question=problem, answer=answer.strip(), rationale=solution)


def parse_gsm8k(row: Row, ctx: RowContext) -> Record:
    solution = gsm8k.parse_solution(fields.text(row, "answer"))
    return ctx.record(
        row,
        None,
        question=fields.text(row, "question"),
        answer=solution.answer,
        rationale=solution.rationale,
        sub_questions=solution.sub_questions,
    )


_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_gsm8k_reversal(row: Row, ctx: RowContext) -> Record | None:
    """A GSM8K row (main or Socratic) becomes a backward question; a ready-made reversal row
    ({question, answer: number}) is taken as it is."""
    question = fields.text(row, "question")
    answer_field = fields.text(row, "answer", numbers=True)
    if "####" not in answer_field and _PLAIN_NUMBER.fullmatch(answer_field.replace(",", "")):
        return ctx.record(row, "id", question=question, answer=answer_field.replace(",", ""))
    derived = gsm8k.reversal_question(question, gsm8k.parse_solution(answer_field))
    if derived is None:
        return None
    backward, hidden = derived
    return ctx.record(row, None, question=backward, answer=hidden)


def _single_gold(scores: Mapping[str, Any], field: str) -> str:
    winners = [option for option, score in scores.items() if _score(score, field) == 1]
    if len(winners) != 1:
        raise FieldError(field, f"needs exactly one option scored 1, got {len(winners)}")
    return str(winners[0]).strip()


def _score(value: Any, field: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise FieldError(field, f"score {value!r} is not a number") from error


def _bigbench_scores(row: Row) -> tuple[str, dict[str, Any], str | None]:
    """(input, {option: score}, target text) from a BIG-bench task.json example or the
    tasksource/bigbench hub layout (inputs, targets, multiple_choice_targets/_scores)."""
    if "target_scores" in row:
        scores = fields.structured(row, "target_scores")
        if not isinstance(scores, Mapping) or len(scores) < 2:
            raise FieldError("target_scores", "must map at least 2 options to scores")
        target = row.get("target")
        target_text = target[0] if isinstance(target, list) and target else target
        return fields.text(row, "input"), dict(scores), (str(target_text) if target_text else None)
    options = fields.structured(row, "multiple_choice_targets")
    scores = fields.structured(row, "multiple_choice_scores")
    if not isinstance(options, list) or not isinstance(scores, list) or len(options) != len(scores):
        raise FieldError("multiple_choice_scores", "must be a list as long as multiple_choice_targets")
    targets = row.get("targets")
    target_text = targets[0] if isinstance(targets, list) and targets else None
    question = fields.text(row, "inputs")
    question = re.sub(r"^Q:\s*", "", question)
    question = re.sub(r"\s*A:\s*$", "", question)
    return question, dict(zip(options, scores, strict=True)), target_text


def parse_strategyqa(row: Row, ctx: RowContext) -> Record:
    """BIG-bench task.json ({input, target_scores, target: "Yes. <explanation>"}) or the
    ChilleD/StrategyQA hub layout ({qid, question, answer: bool, facts})."""
    if "target_scores" in row or "multiple_choice_targets" in row:
        question, scores, target = _bigbench_scores(row)
        gold = _single_gold(scores, "target_scores").lower()
        if gold not in ("yes", "no"):
            raise FieldError("target_scores", f"options must be Yes/No, got {list(scores)}")
        rationale = None
        if target:
            rationale = re.sub(r"^\s*(yes|no)\b[.,:]?\s*", "", target, flags=re.IGNORECASE).strip() or None
        return ctx.record(row, "qid", question=question, answer=gold, rationale=rationale)
    gold = fields.boolean(row, "answer")
    return ctx.record(
        row,
        "qid",
        question=fields.text(row, "question"),
        answer="yes" if gold else "no",
        rationale=fields.optional_text(row, "facts"),
    )


def parse_date_understanding(row: Row, ctx: RowContext) -> Record:
    """BIG-bench task.json ({input, target_scores: {MM/DD/YYYY: 0/1}}) or tasksource/bigbench.
    The options are shown as (A)...(F); the gold answer is the date itself."""
    question, scores, _ = _bigbench_scores(row)
    gold = _single_gold(scores, "target_scores")
    if parse_date(gold) is None:
        raise FieldError("target_scores", f"gold option {gold!r} is not a MM/DD/YYYY date")
    options = fields.letter_labels([str(option).strip() for option in scores])
    return ctx.record(row, "idx", question=render.with_options(question, options), answer=gold, choices=options)


def _nli_gold(row: Row) -> str:
    field = fields.first_present(row, "label", "gold_label")
    label = NLI.canonical(row[field])
    if label is None:
        raise FieldError(field, f"{row[field]!r} is not entailment/neutral/contradiction or 0/1/2")
    return label


def parse_anli(row: Row, ctx: RowContext) -> Record:
    question = render.nli_question(fields.text(row, "premise"), fields.text(row, "hypothesis"))
    return ctx.record(
        row, "uid", question=question, answer=_nli_gold(row), rationale=fields.optional_text(row, "reason")
    )


def parse_esnli(row: Row, ctx: RowContext) -> Record:
    """HF layout (premise, hypothesis, label, explanation_1) or the original csv (Sentence1,
    Sentence2, gold_label, Explanation_1, pairID)."""
    premise = fields.text(row, fields.first_present(row, "premise", "Sentence1"))
    hypothesis = fields.text(row, fields.first_present(row, "hypothesis", "Sentence2"))
    explanation = fields.optional_text(row, "explanation_1") or fields.optional_text(row, "Explanation_1")
    return ctx.record(
        row, "pairID", question=render.nli_question(premise, hypothesis), answer=_nli_gold(row), rationale=explanation
    )


def parse_tabmwp(row: Row, ctx: RowContext) -> Record:
    """PromptPG's problems_*.json layout ({pid: {question, choices, answer, unit, table_title,
    table, solution, ...}}); the table is shown as plain text above the question."""
    question = render.table_question(
        fields.optional_text(row, "table_title"), fields.optional_text(row, "table"), fields.text(row, "question")
    )
    answer = fields.text(row, "answer", numbers=True)
    raw_choices = row.get("choices")
    choices = None
    if raw_choices is not None and raw_choices != "":
        options = fields.structured(row, "choices")
        if not isinstance(options, list) or len(options) < 2:
            raise FieldError("choices", "must be a list of at least 2 options or null")
        choices = fields.letter_labels([str(option) for option in options])
        if answer not in choices.values():
            raise FieldError("answer", f"{answer!r} is not one of the choices {list(choices.values())}")
        question = render.with_options(question, choices)
    record_id = fields.optional_text(row, "pid") or fields.optional_text(row, "_key")
    return Record(
        id=record_id or ctx.default_id(),
        data_source=ctx.dataset,
        split=ctx.split,
        question=question,
        answer=answer,
        rationale=fields.optional_text(row, "solution"),
        choices=choices,
    )
