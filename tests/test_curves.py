"""The ablation's training curves: verl file-logger lines -> curves.csv, curves.png, the report section."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from exgrpo_verl.ablation import curves


def logged(path: Path, steps: dict[int, dict], tail: str = "") -> Path:
    """A file as verl's FileLogger writes it: one {"step", "data"} JSON object per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"step": s, "data": d}) + "\n" for s, d in steps.items()) + tail)
    return path


def test_attempts_are_numbered_and_a_resume_keeps_earlier_steps(tmp_path):
    folder = tmp_path / "exgrpo" / "metrics"
    assert curves.next_metrics_file(folder) == folder / "run-001.jsonl"
    assert not folder.exists()  # choosing a name creates nothing
    logged(folder / "run-001.jsonl", {1: {"critic/score/mean": 0.1}, 2: {"critic/score/mean": 0.2, "x": 1}})
    assert curves.next_metrics_file(folder) == folder / "run-002.jsonl"
    # the resumed attempt logs step 2 again (after the step-1 checkpoint) and step 3; a killed run cut a line
    logged(folder / "run-002.jsonl", {2: {"critic/score/mean": 0.25}, 3: {"critic/score/mean": 0.3}}, '{"step": 4, "da')
    read = curves.read_curves(curves.metrics_files(folder))
    assert sorted(read) == [1, 2, 3]
    assert read[2] == {"critic/score/mean": 0.25, "x": 1.0}  # the later value wins, other metrics of the step stay
    assert read[1] == {"critic/score/mean": 0.1}


def test_only_numbers_become_curve_values(tmp_path):
    path = logged(tmp_path / "run-001.jsonl", {1: {"a": 1, "b": 0.5, "flag": True, "text": "hi", "none": None}})
    assert curves.read_curves([path]) == {1: {"a": 1.0, "b": 0.5}}


def test_csv_is_long_form_one_row_per_metric_and_step(tmp_path):
    data = {"grpo": {1: {"critic/score/mean": 0.5}}, "exgrpo": {1: {"critic/score/mean": 0.25, "exgrpo/p_full": 1.0}}}
    path = curves.write_csv(data, tmp_path / "curves.csv")
    rows = list(csv.DictReader(path.open()))
    assert [tuple(r.values()) for r in rows] == [
        ("grpo", "1", "critic/score/mean", "0.5"),
        ("exgrpo", "1", "critic/score/mean", "0.25"),
        ("exgrpo", "1", "exgrpo/p_full", "1.0"),
    ]


def test_plot_and_report_section_show_what_each_arm_logged(tmp_path):
    data = {
        "grpo": {s: {"critic/score/mean": 0.1 * s} for s in (1, 2, 3)},
        "exgrpo": {
            1: {"critic/score/mean": 0.2, "exgrpo/p_full": 0.5, "val-core/gsm8k/reward/mean@1": 0.1},
            2: {"critic/score/mean": 0.4, "exgrpo/p_full": 0.75},
        },
    }
    panels = [metric for metric, _ in curves.plotted_metrics(data)]
    assert panels == ["critic/score/mean", "exgrpo/p_full", "val-core/gsm8k/reward/mean@1"]
    csv_path, image = curves.write_all(data, tmp_path / "curves.csv", tmp_path / "curves.png")
    assert image is not None and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and csv_path.is_file()
    section = curves.markdown_section(data, image.name)
    assert section.startswith("## Training curves\n") and "![training curves](curves.png)" in section
    assert "| `critic/score/mean` | 0.1 (1) → 0.3 (3) | 0.2 (1) → 0.4 (2) |" in section
    assert "| `exgrpo/p_full` | — | 0.5 (1) → 0.75 (2) |" in section
    assert "Logged steps per arm: grpo: 3, exgrpo: 2." in section


def test_no_logged_metrics_say_why(tmp_path):
    section = curves.markdown_section({}, None)
    assert "trainer.logger" in section and "needs `file`" in section
    csv_path, image = curves.write_all({}, tmp_path / "curves.csv", tmp_path / "curves.png")
    assert image is None and csv_path.read_text().strip() == "arm,step,metric,value"


def test_an_arm_keeps_its_colour_in_every_panel():
    """P_full has no grpo line: exgrpo must not take the first colour there (it is grpo's in the legend)."""
    data = {
        "grpo": {1: {"critic/score/mean": 0.1}},
        "exgrpo": {1: {"critic/score/mean": 0.2, "exgrpo/p_full": 0.5}},
    }
    figure = curves.figure_of(data)
    colour = {}
    for axes in figure.axes:
        for line in axes.get_lines():
            assert colour.setdefault(line.get_label(), line.get_color()) == line.get_color()
    assert set(colour) == {"grpo", "exgrpo"} and colour["grpo"] != colour["exgrpo"]
    legend = figure.axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["grpo", "exgrpo"]
    assert [handle.get_color() for handle in legend.legend_handles] == [colour["grpo"], colour["exgrpo"]]
