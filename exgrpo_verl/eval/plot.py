"""Grouped bar chart of eval results: one group per dataset plus the two averages, one bar per run.

Uses matplotlib's object API (no pyplot), so it neither needs a display nor changes the caller's
matplotlib backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exgrpo_verl.eval.errors import BackendNotInstalledError


def grouped_bar_chart(runs: Sequence[dict[str, Any]], references: Sequence[Any], path: str | Path) -> Path:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise BackendNotInstalledError(
            "--plot needs matplotlib, which is not installed: pip install 'exgrpo_verl[plot]'"
        ) from error
    from exgrpo_verl.eval.report import AVERAGE_COLUMNS, dataset_columns

    columns = dataset_columns(runs)
    groups = [*columns, *AVERAGE_COLUMNS.values()]
    series: list[tuple[str, list[float], bool]] = []
    for r in runs:
        values = [_value(r["datasets"].get(name, {}).get("accuracy")) for name in columns]
        values += [_value(r["averages"][group]["accuracy"]) for group in AVERAGE_COLUMNS]
        series.append((r["run"], values, False))
    for ref in references:
        values = [math.nan] * len(columns) + [ref.held_in, math.nan]
        series.append((ref.label, values, True))

    # Each group shows only the series that have a value there (paper rows: the held-in average),
    # centred on the group, so dataset groups are not padded with empty slots.
    present = [[i for i, (_, values, _) in enumerate(series) if not math.isnan(values[g])] for g in range(len(groups))]
    width = 0.8 / max(1, max(len(p) for p in present))
    bars = sum(len(p) for p in present)
    figure = Figure(figsize=(min(24.0, max(8.0, 2.5 + 0.3 * bars + 0.5 * len(groups))), 4.8), dpi=120)
    axes = figure.add_subplot()
    for index, (label, values, is_reference) in enumerate(series):
        xs, heights = [], []
        for g, members in enumerate(present):
            if index in members:
                xs.append(g + width * (members.index(index) - (len(members) - 1) / 2))
                heights.append(values[g])
        style = {"hatch": "//", "alpha": 0.6} if is_reference else {}
        drawn = axes.bar(xs, heights, width, label=label, **style)
        if len(series) <= 6:
            axes.bar_label(drawn, fmt="%.1f", fontsize=6, padding=1)
    axes.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 108)  # room for the labels of 100% bars
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _value(value: float | None) -> float:
    return math.nan if value is None else float(value)
