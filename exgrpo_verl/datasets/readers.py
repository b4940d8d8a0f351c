"""Raw rows from local files (jsonl/json/parquet/csv) or the Hugging Face hub, with locations.

Every row carries a human-readable location ("gsm8k/test.jsonl line 17", "openai/gsm8k[main]
test row 3") so a malformed row can be reported precisely and, with --skip-bad-rows, skipped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exgrpo_verl.datasets.errors import DatasetFileError

LOCAL_FORMATS = (".jsonl", ".json", ".parquet", ".csv")


@dataclass(frozen=True)
class SourceRow:
    """One raw row: where it came from, and its fields (``None`` when the row is not an object)."""

    location: str
    data: dict[str, Any] | None
    problem: str | None = None
    """Why ``data`` is None (invalid JSON line, not an object)."""


def _json_rows(path: Path) -> Iterator[SourceRow]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetFileError(f"{path}: not a valid JSON document ({error})") from error
    if isinstance(document, dict) and isinstance(document.get("examples"), list):
        items: list[tuple[str, Any]] = [(f"examples[{i}]", row) for i, row in enumerate(document["examples"])]
    elif isinstance(document, dict) and isinstance(document.get("data"), list):
        items = [(f"data[{i}]", row) for i, row in enumerate(document["data"])]
    elif isinstance(document, list):
        items = [(f"row {i + 1}", row) for i, row in enumerate(document)]
    elif isinstance(document, dict) and document and all(isinstance(v, dict) for v in document.values()):
        # {id: row} (TabMWP's problems_*.json): the key becomes the row's "_key".
        items = [(f"entry {key!r}", {"_key": key, **row}) for key, row in document.items()]
    else:
        raise DatasetFileError(
            f"{path}: expected a list of rows, {{'examples': [...]}} (BIG-bench task.json), "
            "{'data': [...]} or {id: row}"
        )
    for where, row in items:
        location = f"{path} {where}"
        if isinstance(row, dict):
            yield SourceRow(location, row)
        else:
            yield SourceRow(location, None, f"row is a {type(row).__name__}, not an object")


def _jsonl_rows(path: Path) -> Iterator[SourceRow]:
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            location = f"{path} line {line_number}"
            try:
                # Without its line ending, so an error at the end of the line reports this line's column.
                row = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as error:
                yield SourceRow(location, None, f"not valid JSON ({error.msg} at column {error.colno})")
                continue
            if isinstance(row, dict):
                yield SourceRow(location, row)
            else:
                yield SourceRow(location, None, f"row is a {type(row).__name__}, not an object")


def _parquet_rows(path: Path) -> Iterator[SourceRow]:
    import pyarrow.parquet as pq

    for index, row in enumerate(pq.read_table(path).to_pylist(), start=1):
        yield SourceRow(f"{path} row {index}", row)


def _csv_rows(path: Path) -> Iterator[SourceRow]:
    with path.open(encoding="utf-8", newline="") as handle:
        for index, row in enumerate(csv.DictReader(handle), start=1):
            # csv has no nulls: an empty cell is a missing value.
            yield SourceRow(f"{path} row {index}", {k: (v if v != "" else None) for k, v in row.items() if k})


def read_local(path: str | Path) -> Iterator[SourceRow]:
    """Rows of a .jsonl, .json, .parquet or .csv file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    readers = {".jsonl": _jsonl_rows, ".json": _json_rows, ".parquet": _parquet_rows, ".csv": _csv_rows}
    if suffix not in readers:
        raise DatasetFileError(f"{path}: unsupported format {suffix!r}; use one of {', '.join(LOCAL_FORMATS)}")
    return readers[suffix](path)


def read_hub(hub_name: str, config: str | None, split: str) -> Iterator[SourceRow]:
    """Rows of a dataset on the Hugging Face hub (or a local dataset directory) via ``datasets``."""
    import datasets

    dataset = datasets.load_dataset(hub_name, config, split=split)
    label = f"{hub_name}[{config}]" if config else hub_name
    for index, row in enumerate(dataset, start=1):
        yield SourceRow(f"{label} {split} row {index}", dict(row))
