"""Stage-1 outputs: SFT parquet (verl's MultiTurnSFTDataset), RL train parquet (verl's
RLHFDataset via exgrpo_verl.schema), single-turn val/test parquet, and question subsampling."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from exgrpo_verl.answers import grade
from exgrpo_verl.datasets.record import Record
from exgrpo_verl.prompts import question_prompt
from exgrpo_verl.schema import Probe, build_rl_row


def select_fraction(count: int, fraction: float, seed: int) -> list[int]:
    """Indices of round(fraction·count) questions (at least one), in dataset order.

    The subsets are nested: with one seed, the 10% sample lies inside the 25% sample, which lies
    inside the 50% one, so data-efficiency runs differ only in how much data they see.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1], got {fraction}")
    if fraction == 1 or count == 0:
        return list(range(count))
    keep = max(1, round(fraction * count))
    order = random.Random(seed).sample(range(count), count)
    return sorted(order[:keep])


def question_target(record: Record, rationale: str | None, bare_answer: bool = False) -> str | None:
    """The assistant turn answering the original question in SFT data: the rationale, ending in the
    gold answer in \\boxed{} unless the rationale already commits to it (MATH solutions do).

    Without a rationale there is no target, unless ``bare_answer``: then the gold answer alone, which
    teaches the answer format (and the answer) but no reasoning -- a format warm-up for datasets that
    ship no rationale (CommonsenseQA, BoolQ, ...)."""
    if not rationale or not rationale.strip():
        return f"The answer is \\boxed{{{record.answer}}}." if bare_answer else None
    text = rationale.strip()
    if grade(record.data_source, text, record.answer, record.choices)[0]:
        return text
    return f"{text}\n\nThe answer is \\boxed{{{record.answer}}}."


def sft_rows(
    record: Record,
    probes: Sequence[Probe],
    question_answer: str | None,
    layout: str,
    include_question: bool,
) -> list[dict[str, Any]]:
    """SFT dialogues for one kept question (no system turn: Gemma's template rejects one).

    ``per_probe``: one row per answered probe [probe → teacher answer], plus one row
    [question → rationale]. ``dialogue``: one row with every answered probe in turn, then the
    question → rationale. Probes without a teacher answer are not SFT targets.
    """
    answered = [p for p in probes if p.get("teacher_answer")]
    question_turns: list[dict[str, str]] = []
    if include_question and question_answer:
        question_turns = [
            {"role": "user", "content": question_prompt(record.question, record.data_source)},
            {"role": "assistant", "content": question_answer},
        ]

    def row(messages: list[dict[str, str]], kind: str, rule: str | None) -> dict[str, Any]:
        return {"messages": messages, "data_source": record.data_source, "id": record.id, "kind": kind, "rule": rule}

    def turns(probe: Probe) -> list[dict[str, str]]:
        return [
            {"role": "user", "content": probe["question"]},
            {"role": "assistant", "content": str(probe["teacher_answer"])},
        ]

    if layout == "dialogue":
        messages = [turn for probe in answered for turn in turns(probe)] + question_turns
        return [row(messages, "dialogue", None)] if messages else []
    rows = [row(turns(probe), "probe", probe["rule"]) for probe in answered]
    if question_turns:
        rows.append(row(question_turns, "question", None))
    return rows


def rl_train_rows(items: Iterable[tuple[int, Record, Sequence[Probe]]]) -> list[dict[str, Any]]:
    """RL train rows (probe-dialogue agent) for (dataset index, record, kept probes)."""
    return [build_rl_row(record, index, list(probes)) for index, record, probes in items]


def eval_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Single-turn val/test rows (verl's single_turn_agent): inference asks Q alone."""
    return [build_rl_row(record, index, None) for index, record in enumerate(records)]


def write_parquet(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows atomically (a crash never leaves a half-written file under the final name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows), temporary)
    os.replace(temporary, path)
    return path


def write_json(payload: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(temporary, path)
    return path
