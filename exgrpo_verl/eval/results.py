"""The results file ``eval --out`` writes and ``report`` reads."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exgrpo_verl.eval.errors import EvalError

RESULTS_FORMAT = "exgrpo_verl.eval.results/1"


def write_results(path: str | Path, results: dict[str, Any]) -> None:
    """Write atomically, so a kill never leaves half a results file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps({"format": RESULTS_FORMAT, **results}, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def load_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Results files in the given order; a run label used twice gets its file name appended."""
    runs = []
    for path in paths:
        try:
            results = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise EvalError(f"{path}: cannot read results ({error})") from error
        if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
            raise EvalError(f"{path}: not an eval results file (no {RESULTS_FORMAT!r} format field)")
        runs.append(results)
    labels = [r["run"] for r in runs]
    for results, path in zip(runs, paths, strict=True):
        if labels.count(results["run"]) > 1:
            results["run"] = f"{results['run']} ({Path(path).name})"
    return runs
