"""What the eval asks a model: one item per question, from the dataset loaders, an RL/val parquet,
or a jsonl of :class:`Record` fields.

Every item's prompt is :func:`exgrpo_verl.prompts.question_messages` (the training prompt with its
\\boxed{} instruction) unless it comes from a parquet, whose rows already carry the prompt they
were trained or validated with. :func:`load_dataset_items` is the only place that calls the
dataset loaders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exgrpo_verl.data_sources import UnknownDataSourceError, get_data_source
from exgrpo_verl.datasets.record import Record
from exgrpo_verl.eval.errors import EvalError
from exgrpo_verl.prompts import question_messages


@dataclass(frozen=True)
class EvalItem:
    """One question to ask: its dataset (canonical name), id, chat prompt and gold answer."""

    dataset: str
    id: str
    messages: tuple[Mapping[str, str], ...]
    gold: Any
    choices: Any = None

    @property
    def prompt_sha(self) -> str:
        """Fingerprint of the prompt, so a resumed run can tell that a stored answer is for it."""
        payload = json.dumps([dict(m) for m in self.messages], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def item_from_record(record: Record) -> EvalItem:
    return EvalItem(
        dataset=get_data_source(record.data_source).name,
        id=str(record.id),
        messages=tuple(question_messages(record.question, record.data_source)),
        gold=record.answer,
        choices=record.choices,
    )


def items_from_records(records: Iterable[Record]) -> list[EvalItem]:
    """Items for records, refusing two records with the same (dataset, id): their answers would
    share one key in the generations file."""
    items = [item_from_record(r) for r in records]
    _check_unique(items, "records")
    return items


def load_dataset_items(name: str, split: str, local_path: str | None, limit: int | None) -> list[EvalItem]:
    """Items of one of the twelve datasets, read by the project's dataset loaders (the hub copy,
    or ``local_path`` in the dataset's own format); the first ``limit`` when given."""
    from exgrpo_verl.datasets import load_records

    return items_from_records(load_records(name, split, [local_path] if local_path else None, limit=limit).records)


def read_records_jsonl(path: str | Path) -> list[Record]:
    """Records from a jsonl file, one object of :class:`Record` fields per line (``id``,
    ``data_source``, ``question``, ``answer``, optional ``split``, ``choices`` as {label: text})."""
    records = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise EvalError(f"{where}: not a JSON object ({error.msg})") from error
        if not isinstance(row, dict):
            raise EvalError(f"{where}: expected a JSON object, got {type(row).__name__}")
        missing = [key for key in ("id", "data_source", "question", "answer") if row.get(key) in (None, "")]
        if missing:
            raise EvalError(f"{where}: missing field(s) {', '.join(missing)}")
        try:
            get_data_source(row["data_source"])
        except UnknownDataSourceError as error:
            raise EvalError(f"{where}: {error}") from error
        records.append(
            Record(
                id=str(row["id"]),
                data_source=str(row["data_source"]),
                question=str(row["question"]),
                answer=str(row["answer"]),
                split=str(row.get("split") or "test"),
                rationale=row.get("rationale"),
                choices=row.get("choices") or None,
            )
        )
    return records


def read_rl_parquet(path: str | Path) -> list[EvalItem]:
    """Items from rows in the project's RL/val parquet schema (:mod:`exgrpo_verl.schema`):
    ``data_source``, ``prompt``, ``reward_model.ground_truth``, ``extra_info.{id, index, choices}``."""
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, ValueError) as error:
        raise EvalError(f"{path}: cannot read as parquet ({error})") from error
    items = []
    for index, row in enumerate(rows):
        where = f"{path} row {index}"
        try:
            dataset = get_data_source(str(row.get("data_source"))).name
        except UnknownDataSourceError as error:
            raise EvalError(f"{where}: {error}") from error
        prompt = row.get("prompt")
        if not isinstance(prompt, Sequence) or not prompt or not all(isinstance(m, Mapping) for m in prompt):
            raise EvalError(f"{where}: 'prompt' must be a list of {{role, content}} messages")
        reward_model = row.get("reward_model") or {}
        if reward_model.get("ground_truth") is None:
            raise EvalError(f"{where}: reward_model.ground_truth is missing")
        extra_info = row.get("extra_info") or {}
        item_id = extra_info.get("id")
        if item_id is None:
            item_id = f"row{extra_info.get('index', index)}"
        items.append(
            EvalItem(
                dataset=dataset,
                id=str(item_id),
                messages=tuple({"role": str(m["role"]), "content": str(m["content"])} for m in prompt),
                gold=reward_model["ground_truth"],
                choices=extra_info.get("choices"),
            )
        )
    _check_unique(items, str(path))
    return items


def _check_unique(items: Sequence[EvalItem], source: str) -> None:
    seen: set[tuple[str, str]] = set()
    for item in items:
        key = (item.dataset, item.id)
        if key in seen:
            raise EvalError(f"{source}: two questions of {item.dataset} share the id {item.id!r}; ids must be unique")
        seen.add(key)
