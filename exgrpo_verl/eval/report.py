"""``python -m exgrpo_verl report``: eval results files -> a markdown table (runs x datasets, with
averages and the paper's published averages for reference) and, optionally, a grouped bar chart."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exgrpo_verl.data_sources import DATA_SOURCES
from exgrpo_verl.eval.errors import EvalError
from exgrpo_verl.eval.results import load_results
from exgrpo_verl.eval.uncertainty import accuracy_interval, answers_correct, compare

AVERAGE_COLUMNS = {"held_in": "Held-in avg", "ood": "OOD avg"}
MISSING = "—"
INCOMPLETE = "*"


@dataclass(frozen=True)
class Reference:
    """A published result the paper reports only as a group average."""

    label: str
    held_in: float


# The paper's held-in averages (8 datasets) for its two students, zero-shot and after ExGRPO.
PAPER_REFERENCES: tuple[Reference, ...] = (
    Reference("paper: Qwen2.5-7B zero-shot", 77.99),
    Reference("paper: Qwen2.5-7B ExGRPO", 82.54),
    Reference("paper: Gemma-7b zero-shot", 46.80),
    Reference("paper: Gemma-7b ExGRPO", 67.19),
)

# The paper's ablation (Table 3, Qwen2.5-7B-Instruct, held-in averages), each row named by the arm of
# `python -m exgrpo_verl ablation` that reproduces it. The plain-GRPO baseline has no paper row.
ABLATION_REFERENCES: tuple[Reference, ...] = (
    Reference("paper Qwen2.5-7B: SFT on EI data (sft)", 79.17),
    Reference("paper Qwen2.5-7B: + RL (exgrpo_plain)", 80.13),
    Reference("paper Qwen2.5-7B: + L_SFT-aux (exgrpo_aux)", 81.23),
    Reference("paper Qwen2.5-7B: + r_dsu = ExGRPO (exgrpo)", 82.54),
    Reference("paper Qwen2.5-7B: RL without SFT warm-up (exgrpo_no_sft)", 15.99),
)

REFERENCE_SETS = {"main": PAPER_REFERENCES, "ablation": ABLATION_REFERENCES}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Markdown table and bar chart of eval results (runs x datasets, with averages)."
    parser.add_argument("results", nargs="+", help="results files written by `eval --out`")
    parser.add_argument("--out", help="markdown file (default: print)")
    parser.add_argument("--plot", help="PNG file for a grouped bar chart (needs matplotlib: exgrpo_verl[plot])")
    parser.add_argument(
        "--reference",
        choices=sorted(REFERENCE_SETS),
        default="main",
        help="the paper's rows to add: main (zero-shot and ExGRPO per student) or ablation (Table 3)",
    )
    parser.add_argument("--no-reference", action="store_true", help="leave out the paper's published averages")


def run(args: argparse.Namespace) -> int:
    try:
        runs = load_results(args.results)
        references = () if args.no_reference else REFERENCE_SETS[args.reference]
        markdown = build_markdown(runs, references)
        if args.plot:
            from exgrpo_verl.eval.plot import grouped_bar_chart

            grouped_bar_chart(runs, references, args.plot)
    except EvalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(markdown, encoding="utf-8")
        print(f"table: {args.out}")
    else:
        print(markdown, end="")
    if args.plot:
        print(f"chart: {args.plot}")
    return 0


def dataset_columns(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Datasets any run evaluated, held-in first, in the paper's order."""
    present = {name for r in runs for name in r["datasets"]}
    return [s.name for s in DATA_SOURCES if s.name in present]


def build_markdown(runs: Sequence[dict[str, Any]], references: Sequence[Reference] = PAPER_REFERENCES) -> str:
    columns = dataset_columns(runs)
    header = ["Run", *columns, *AVERAGE_COLUMNS.values()]
    rows = []
    for r in runs:
        cells = [_pct(r["datasets"].get(name, {}).get("accuracy")) for name in columns]
        for group in AVERAGE_COLUMNS:
            average = r["averages"][group]
            mark = "" if average["complete"] or average["accuracy"] is None else INCOMPLETE
            cells.append(_pct(average["accuracy"]) + mark)
        rows.append([_escape(r["run"]), *cells])
    for ref in references:
        rows.append([ref.label, *[MISSING] * len(columns), _pct(ref.held_in), MISSING])
    counts_header = ["Run", *columns]
    counts = [[_escape(r["run"]), *[_count(r["datasets"].get(name)) for name in columns]] for r in runs]
    notes = []
    if any(
        not r["averages"][g]["complete"] and r["averages"][g]["accuracy"] is not None
        for r in runs
        for g in AVERAGE_COLUMNS
    ):
        notes.append(
            f"Averages marked {INCOMPLETE} cover only the datasets the run evaluated, not the whole group "
            "(held-in: 8 datasets, OOD: 4), so they are not comparable with the paper's."
        )
    if references:
        notes.append("Paper rows are the published held-in averages over the 8 held-in datasets.")
    parts = [
        "## Accuracy (%)",
        "",
        _table(header, rows),
        "",
        *[line for note in notes for line in (note, "")],
        "## Correct / answers",
        "",
        _table(counts_header, counts),
        "",
        *_uncertainty_section(runs, columns),
        "## Runs",
        "",
        *[
            f"- **{_escape(r['run'])}**: model `{r['model']}`, backend {r['backend']}, {_questions_from(r)}, "
            f"temperature {r['sampling']['temperature']}, {r['samples']} sample(s) per question, "
            f"max {r['sampling']['max_tokens']} tokens"
            for r in runs
        ],
        "",
    ]
    return "\n".join(parts)


def _uncertainty_section(runs: Sequence[dict[str, Any]], columns: list[str]) -> list[str]:
    """95% Wilson intervals, and each later run against the first on the questions both answered."""
    rows = []
    for r in runs:
        cells = []
        for name in columns:
            metrics = r["datasets"].get(name)
            interval = accuracy_interval(metrics["correct"], metrics["answers"]) if metrics else None
            cells.append(MISSING if interval is None else f"{interval[0]:.1f}–{interval[1]:.1f}")
        rows.append([_escape(r["run"]), *cells])
    lines = ["## 95% intervals (Wilson)", "", _table(["Run", *columns], rows), ""]
    if len(runs) < 2:
        return lines
    answers = [_answers_or_none(r) for r in runs]
    if answers[0] is None:
        return [*lines, f"No paired comparison: {_escape(runs[0]['run'])}'s answers file is missing.", ""]
    first = _escape(runs[0]["run"])
    paired = []
    for r, correct in zip(runs[1:], answers[1:], strict=True):
        cells = []
        for name in columns:
            comparison = compare(answers[0], correct, name) if correct is not None else None
            cells.append(
                MISSING
                if comparison is None
                else f"+{comparison.only_second} / −{comparison.only_first} of {comparison.shared}, "
                f"p = {comparison.p_value:.2g}"
            )
        paired.append([_escape(r["run"]), *cells])
    return [
        *lines,
        f"## Against {first}, question by question",
        "",
        _table(["Run", *columns], paired),
        "",
        f"On the answers both runs gave: +questions this run got right and {first} wrong, "
        f"−the reverse; p: exact McNemar test (two-sided) that the two runs are equally accurate.",
        "",
    ]


def _answers_or_none(results: dict[str, Any]) -> dict | None:
    path = results.get("generations")
    return answers_correct(path) if path and Path(path).is_file() else None


def _questions_from(results: dict[str, Any]) -> str:
    source = results.get("questions_from")
    if isinstance(source, list):
        return "questions from " + ", ".join(f"`{Path(p).name}`" for p in source)
    return f"split {results['split']}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def _count(metrics: dict[str, Any] | None) -> str:
    return MISSING if metrics is None else f"{metrics['correct']}/{metrics['answers']}"


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|")
