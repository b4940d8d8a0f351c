"""Errors for bad dataset rows: each names the file (or hub split), the row and the field."""

from __future__ import annotations


class FieldError(ValueError):
    """A row's field is missing or malformed; the loader adds where the row came from."""

    def __init__(self, field: str | None, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"field {field!r}: {problem}" if field else problem)


class DatasetRowError(ValueError):
    """A malformed row: ``location`` names the file (or hub split) and row, ``field`` the field.
    ``skipped``: the row was skipped (--skip-bad-rows given), so the message does not suggest it."""

    def __init__(self, dataset: str, location: str, field: str | None, problem: str, skipped: bool = False):
        self.dataset = dataset
        self.location = location
        self.field = field
        self.problem = problem
        self.skipped = skipped
        where = f"{location}, field {field!r}" if field else location
        hint = "" if skipped else " (pass --skip-bad-rows to skip such rows)"
        super().__init__(f"{dataset}: {where}: {problem}{hint}")


class DatasetFileError(ValueError):
    """A whole file cannot be read (unknown extension, invalid JSON document, no such file)."""
