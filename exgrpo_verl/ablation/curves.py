"""Training curves of the ablation's arms, from verl's own file logger.

Each training attempt of an arm logs to its own ``OUT/<arm>/metrics/run-NNN.jsonl`` (verl's ``file``
backend, ``VERL_FILE_LOGGER_PATH``; the logger truncates its file, so a resumed arm gets a new one).
Reading an arm merges its attempts in order: a step logged again after a resume takes the later
values, and every earlier step is kept. ``curves.csv`` holds every numeric metric of every step in
long form (``arm,step,metric,value``); ``curves.png`` plots the ones people judge a run by.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

# (metric, panel title): plotted when any arm logged it, in this order
PLOTTED = (
    ("critic/score/mean", "trained reward (score mean)"),
    ("exgrpo/p_full", "P_full (Eq. 4)"),
    ("exgrpo/p_partial", "P_partial (Eq. 4)"),
    ("exgrpo/dsu_fire_rate", "r_dsu fire rate"),
    ("actor/exgrpo/aux_nll_per_token", "L_SFT-aux NLL / token"),
    ("exgrpo/truncated/fraction", "truncated dialogues"),
    ("response_length/mean", "response length (tokens)"),
)
VALIDATION_PREFIX = "val-core/"
"""verl's validation metrics (``val-core/<data_source>/<reward key>/...``): one panel each."""

Curves = dict[int, dict[str, float]]


def metrics_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("run-*.jsonl"))


def next_metrics_file(folder: Path) -> Path:
    """The file the next training attempt logs to (earlier attempts' files are kept); verl's logger
    does not create its folder."""
    used = [int(path.stem.split("-", 1)[1]) for path in metrics_files(folder) if path.stem.split("-", 1)[1].isdigit()]
    return folder / f"run-{max(used, default=0) + 1:03d}.jsonl"


def read_curves(files: Iterable[Path]) -> Curves:
    """Step -> numeric metrics, later files (a resumed attempt) overriding the same step."""
    curves: Curves = {}
    for path in files:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step, data = int(record["step"]), record["data"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut off by a killed run: the rest of the file still counts
            if not isinstance(data, Mapping):
                continue
            values = {k: float(v) for k, v in data.items() if isinstance(v, int | float) and not isinstance(v, bool)}
            curves.setdefault(step, {}).update(values)
    return curves


def write_csv(curves: Mapping[str, Curves], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["arm", "step", "metric", "value"])
        for arm, steps in curves.items():
            for step in sorted(steps):
                for metric in sorted(steps[step]):
                    writer.writerow([arm, step, metric, repr(steps[step][metric])])
    return path


def plotted_metrics(curves: Mapping[str, Curves]) -> list[tuple[str, str]]:
    present = {metric for steps in curves.values() for values in steps.values() for metric in values}
    panels = [(metric, title) for metric, title in PLOTTED if metric in present]
    validation = sorted(m for m in present if m.startswith(VALIDATION_PREFIX) and "/mean@" in m)
    return panels + [(metric, f"validation: {metric[len(VALIDATION_PREFIX) :]}") for metric in validation]


def series(steps: Curves, metric: str) -> tuple[list[int], list[float]]:
    points = [(step, values[metric]) for step, values in sorted(steps.items()) if metric in values]
    return [s for s, _ in points], [v for _, v in points]


def figure_of(curves: Mapping[str, Curves]):
    """The curves' matplotlib figure (None without a plotted metric). An arm keeps its colour in every
    panel, also in the panels some arms have no line in (P_full: ExGRPO arms only)."""
    from matplotlib.figure import Figure  # object API: no display, the caller's backend untouched
    from matplotlib.lines import Line2D

    panels = plotted_metrics(curves)
    if not panels:
        return None
    colours = {arm: f"C{index % 10}" for index, arm in enumerate(curves)}
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.6 * columns, 3.2 * rows), dpi=110)
    for index, (metric, title) in enumerate(panels, 1):
        axes = figure.add_subplot(rows, columns, index)
        for arm, steps in curves.items():
            xs, ys = series(steps, metric)
            if xs:
                marker = "o" if len(xs) <= 12 else None
                axes.plot(xs, ys, marker=marker, markersize=3, label=arm, color=colours[arm])
        axes.set_title(title, fontsize=9)
        axes.set_xlabel("step", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
    handles = [Line2D([], [], color=colour, label=arm) for arm, colour in colours.items()]
    figure.axes[0].legend(handles=handles, fontsize=7)
    figure.tight_layout()
    return figure


def plot(curves: Mapping[str, Curves], path: Path) -> Path | None:
    """One panel per metric, one line per arm; None when no arm logged a plotted metric."""
    figure = figure_of(curves)
    if figure is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def markdown_section(curves: Mapping[str, Curves], image: str | None) -> str:
    """The report's "Training curves" section: the image and, per arm, each plotted metric's first and
    last logged value (with its step), so the direction reads without the picture."""
    lines = ["## Training curves", ""]
    panels = plotted_metrics(curves)
    if not panels:
        lines.append("No training metrics were logged (the arms' `trainer.logger` needs `file`).")
        return "\n".join(lines) + "\n"
    if image:
        lines += [f"![training curves]({image})", ""]
    lines += [
        "From verl's file logger, every metric of every step in `curves.csv`. Cells: first → last logged value (step).",
        "",
    ]
    arms = list(curves)
    lines.append("| metric | " + " | ".join(arms) + " |")
    lines.append("|---|" + "---|" * len(arms))
    for metric, _ in panels:
        cells = [_first_last(curves[arm], metric) for arm in arms]
        lines.append(f"| `{metric}` | " + " | ".join(cells) + " |")
    steps = ", ".join(f"{arm}: {len(curves[arm])}" for arm in arms)
    lines += ["", f"Logged steps per arm: {steps}."]
    return "\n".join(lines) + "\n"


def _first_last(steps: Curves, metric: str) -> str:
    xs, ys = series(steps, metric)
    if not xs:
        return "—"
    if len(xs) == 1:
        return f"{ys[0]:.3g} ({xs[0]})"
    return f"{ys[0]:.3g} ({xs[0]}) → {ys[-1]:.3g} ({xs[-1]})"


def write_all(curves: Mapping[str, Curves], csv_path: Path, png_path: Path) -> tuple[Path, Path | None]:
    """curves.csv always (a header at least); curves.png when matplotlib is installed and there is data."""
    write_csv(curves, csv_path)
    try:
        image = plot(curves, png_path)
    except ImportError:
        image = None
    return csv_path, image


def arm_curves(names: Sequence[str], metrics_folder) -> dict[str, Curves]:
    """The arms that logged anything, in the given order."""
    curves = {name: read_curves(metrics_files(metrics_folder(name))) for name in names}
    return {name: steps for name, steps in curves.items() if steps}
