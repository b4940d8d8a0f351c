"""Load any of the twelve datasets into Records, from the hub (default) or local files.

``load_records("gsm8k", "test", local_paths=["gsm8k/test.jsonl", "gsm8k/test_socratic.jsonl"])``
reads the files in the dataset's own format; without local paths the hub copy named in
:data:`DATASETS` is read with ``datasets.load_dataset``. A malformed row raises
:class:`DatasetRowError` naming the file, row and field; with ``skip_bad_rows`` it is counted
and skipped and every other row is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from exgrpo_verl.data_sources import get_data_source
from exgrpo_verl.datasets import parsers
from exgrpo_verl.datasets.errors import DatasetRowError, FieldError
from exgrpo_verl.datasets.readers import SourceRow, read_hub, read_local
from exgrpo_verl.datasets.record import Record

Parser = Callable[[Mapping[str, Any], parsers.RowContext], "Record | None"]

MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)


@dataclass(frozen=True)
class HubSource:
    name: str
    config: str | None
    split: str


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is read: its row parser, hub copy, and what --local-path accepts."""

    name: str
    parse: Parser
    local_format: str
    hub: Callable[[str], list[HubSource]] | None
    """split -> the hub splits to read; None when there is no canonical hub copy."""
    no_hub_reason: str = ""
    merge: Callable[[list[Record]], list[Record]] | None = None


def _one(name: str, config: str | None = None) -> Callable[[str], list[HubSource]]:
    return lambda split: [HubSource(name, config, split)]


def _anli_hub(split: str) -> list[HubSource]:
    """ANLI's hub splits are per round (test_r1..r3); "test" reads all three rounds."""
    alias = {"validation": "dev", "dev": "dev", "train": "train", "test": "test"}
    if split in alias:
        return [HubSource("facebook/anli", None, f"{alias[split]}_r{r}") for r in (1, 2, 3)]
    return [HubSource("facebook/anli", None, split)]


def _math_hub(split: str) -> list[HubSource]:
    """The standard 500-problem test subset for "test"; the full MATH (all subjects) otherwise."""
    if split == "test":
        return [HubSource("HuggingFaceH4/MATH-500", None, "test")]
    return [HubSource("EleutherAI/hendrycks_math", subject, split) for subject in MATH_SUBJECTS]


def _gsm8k_hub(split: str) -> list[HubSource]:
    """Both configs: "main" for the solution, "socratic" for the sub-questions (merged by question)."""
    return [HubSource("openai/gsm8k", "main", split), HubSource("openai/gsm8k", "socratic", split)]


def merge_gsm8k(records: list[Record]) -> list[Record]:
    """One record per question: a Socratic copy of a question adds its sub-questions to the main
    copy (both files list the same questions in the same order, so ids stay positional)."""
    merged: dict[str, Record] = {}
    for record in records:
        seen = merged.get(record.question)
        if seen is None:
            merged[record.question] = record
        elif record.sub_questions and not seen.sub_questions:
            merged[record.question] = replace(seen, sub_questions=record.sub_questions)
    return list(merged.values())


def _dedupe_by_question(records: list[Record]) -> list[Record]:
    return list({record.question: record for record in reversed(records)}.values())[::-1]


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "strategyqa",
            parsers.parse_strategyqa,
            "BIG-bench task.json, or rows {qid, question, answer: bool, facts}",
            _one("ChilleD/StrategyQA"),
        ),
        DatasetSpec(
            "commonsense_qa",
            parsers.parse_commonsense_qa,
            "rows {id, question, choices: {label, text}, answerKey}",
            _one("tau/commonsense_qa"),
        ),
        DatasetSpec(
            "arc_challenge",
            parsers.parse_arc,
            "rows {id, question, choices: {text, label}, answerKey}",
            _one("allenai/ai2_arc", "ARC-Challenge"),
        ),
        DatasetSpec("math", parsers.parse_math, "rows {problem, solution[, answer]}", _math_hub),
        DatasetSpec(
            "gsm8k",
            parsers.parse_gsm8k,
            "rows {question, answer} (main and/or socratic files; merged by question)",
            _gsm8k_hub,
            merge=merge_gsm8k,
        ),
        DatasetSpec(
            "tabmwp",
            parsers.parse_tabmwp,
            "PromptPG problems_<split>.json ({pid: {question, choices, answer, table_title, table, solution}})",
            None,
            "TabMWP has no canonical Hugging Face copy: download problems_<split>.json from the PromptPG "
            "repository (lupantech/PromptPG, data/tabmwp) and pass --local-path, or pass --hub-name for a "
            "hub mirror in that layout",
        ),
        DatasetSpec(
            "anli",
            parsers.parse_anli,
            "rows {uid, premise, hypothesis, label: 0/1/2, reason}",
            _anli_hub,
        ),
        DatasetSpec(
            "date_understanding",
            parsers.parse_date_understanding,
            "BIG-bench task.json, or tasksource/bigbench rows",
            _one("tasksource/bigbench", "date_understanding"),
        ),
        DatasetSpec("boolq", parsers.parse_boolq, "rows {question, answer: bool, passage}", _one("google/boolq")),
        DatasetSpec(
            "openbookqa",
            parsers.parse_openbookqa,
            "rows {id, question_stem, choices: {text, label}, answerKey[, fact1]}",
            _one("allenai/openbookqa", "main"),
        ),
        DatasetSpec(
            "esnli",
            parsers.parse_esnli,
            "rows {premise, hypothesis, label, explanation_1} or the original csv",
            _one("esnli/esnli"),
        ),
        DatasetSpec(
            "gsm8k_reversal",
            parsers.parse_gsm8k_reversal,
            "GSM8K rows {question, answer} (derived), or ready-made rows {question, answer: number}",
            _one("openai/gsm8k", "main"),
            merge=_dedupe_by_question,
        ),
    )
}


@dataclass
class LoadResult:
    records: list[Record]
    bad_rows: list[DatasetRowError] = field(default_factory=list)
    """Malformed rows skipped with skip_bad_rows (empty otherwise: the first one raises)."""
    not_derivable: int = 0
    """Well-formed rows that give no record (GSM8K-Reversal: no number can be hidden)."""
    rows_read: int = 0


def dataset_spec(name: str) -> DatasetSpec:
    """The spec for a dataset name or alias (raises UnknownDataSourceError)."""
    return DATASETS[get_data_source(name).name]


def _source_rows(
    spec: DatasetSpec,
    split: str,
    local_paths: Sequence[str | Path] | None,
    hub_name: str | None,
    hub_config: str | None,
) -> Iterator[SourceRow]:
    if local_paths:
        for path in local_paths:
            yield from read_local(path)
        return
    if hub_name:
        sources = [HubSource(hub_name, hub_config, split)]
    elif spec.hub is None:
        raise ValueError(f"{spec.name}: {spec.no_hub_reason}")
    else:
        sources = spec.hub(split)
        if hub_config:
            sources = [replace(source, config=hub_config) for source in sources]
    for source in sources:
        yield from read_hub(source.name, source.config, source.split)


def parse_rows(spec: DatasetSpec, split: str, rows: Iterable[SourceRow], skip_bad_rows: bool = False) -> LoadResult:
    """Parse raw rows into records; see :func:`load_records`."""
    result = LoadResult(records=[])
    for index, row in enumerate(rows):
        result.rows_read += 1
        try:
            if row.data is None:
                raise FieldError(None, row.problem or "not a row")
            record = spec.parse(row.data, parsers.RowContext(spec.name, split, index))
        except FieldError as error:
            bad = DatasetRowError(spec.name, row.location, error.field, error.problem, skipped=skip_bad_rows)
            if not skip_bad_rows:
                raise bad from error
            result.bad_rows.append(bad)
            continue
        if record is None:
            result.not_derivable += 1
        else:
            result.records.append(record)
    if spec.merge is not None:
        result.records = spec.merge(result.records)
    return result


def load_records(
    name: str,
    split: str = "train",
    local_paths: Sequence[str | Path] | None = None,
    hub_name: str | None = None,
    hub_config: str | None = None,
    skip_bad_rows: bool = False,
    limit: int | None = None,
) -> LoadResult:
    """Records of one dataset split (the first ``limit`` when given).

    ``local_paths``: files in the dataset's own format (.jsonl/.json/.parquet/.csv), read in
    order; ``split`` then only labels the records. Otherwise the hub copy (``hub_name`` /
    ``hub_config`` override the defaults in :data:`DATASETS`) is read with ``datasets``.
    """
    spec = dataset_spec(name)
    rows = _source_rows(spec, split, local_paths, hub_name, hub_config)
    result = parse_rows(spec, split, rows, skip_bad_rows)
    if limit is not None:
        result.records = result.records[:limit]
    return result
