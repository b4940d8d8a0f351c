"""``report``: the markdown table parsed back against the results files, and a real PNG chart."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from exgrpo_verl.__main__ import main
from exgrpo_verl.data_sources import get_data_source
from exgrpo_verl.eval.report import PAPER_REFERENCES
from exgrpo_verl.eval.uncertainty import accuracy_interval, answers_correct, compare
from tests.eval_fixtures import FIXTURE_RECORDS, StubChatServer, write_records_jsonl


def _run(tmp_path: Path, name: str, wrong_ids: set[str]) -> Path:
    questions = write_records_jsonl(tmp_path / "questions.jsonl")
    out = tmp_path / "results" / f"{name}.json"

    def script(record, request):
        return "\\boxed{42}" if record.id in wrong_ids else f"\\boxed{{{record.answer}}}"

    with StubChatServer(script) as stub:
        argv = ["eval", "--backend", "openai", "--base-url", stub.base_url, "--model", stub.model]
        assert main([*argv, "--records", str(questions), "--out", str(out), "--no-progress"]) == 0
    return out


def parse_markdown_table(markdown: str, heading: str) -> dict[str, dict[str, str]]:
    """{row label: {column: cell}} of the table under ``heading``."""
    lines = markdown.splitlines()
    start = lines.index(heading) + 2
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    header, rows = table[0], table[2:]
    assert set(table[1]) <= {"---", "---:"}
    return {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in rows}


def test_report_table_matches_results_and_plot_is_a_png(tmp_path):
    first = _run(tmp_path, "zero-shot", {"g1", "g2", "m2", "c1", "s1", "d1"})
    second = _run(tmp_path, "exgrpo", {"g2", "a1"})
    report, chart = tmp_path / "report.md", tmp_path / "report.png"
    assert main(["report", str(first), str(second), "--out", str(report), "--plot", str(chart)]) == 0

    table = parse_markdown_table(report.read_text(), "## Accuracy (%)")
    datasets = [s.name for s in map(get_data_source, dict.fromkeys(r.data_source for r in FIXTURE_RECORDS))]
    for path in (first, second):
        results = json.loads(path.read_text())
        row = table[results["run"]]
        assert set(row) == {*datasets, "Held-in avg", "OOD avg"}
        for name in datasets:
            assert float(row[name]) == pytest.approx(results["datasets"][name]["accuracy"], abs=0.005)
        for group, column in (("held_in", "Held-in avg"), ("ood", "OOD avg")):
            cell = row[column]
            assert cell.endswith("*")  # fixtures cover only part of each group
            assert float(cell.rstrip("*")) == pytest.approx(results["averages"][group]["accuracy"], abs=0.005)
    for ref in PAPER_REFERENCES:
        assert float(table[ref.label]["Held-in avg"]) == ref.held_in
    assert table["paper: Qwen2.5-7B zero-shot"]["Held-in avg"] == "77.99"
    assert table["paper: Gemma-7b ExGRPO"]["Held-in avg"] == "67.19"

    counts = parse_markdown_table(report.read_text(), "## Correct / answers")
    assert counts["zero-shot"]["gsm8k"] == "1/3" and counts["exgrpo"]["anli"] == "0/1"

    intervals = parse_markdown_table(report.read_text(), "## 95% intervals (Wilson)")
    low, high = map(float, intervals["zero-shot"]["gsm8k"].split("–"))
    assert (low, high) == pytest.approx(_wilson(1, 3), abs=0.05)
    paired = parse_markdown_table(report.read_text(), "## Against zero-shot, question by question")
    assert set(paired) == {"exgrpo"}  # each later run against the first
    assert paired["exgrpo"]["gsm8k"] == "+1 / −0 of 3, p = 1"  # g1 fixed, g2 wrong in both
    assert paired["exgrpo"]["anli"] == "+0 / −1 of 1, p = 1"

    png = chart.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


def _wilson(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return 100 * (centre - half), 100 * (centre + half)


@pytest.mark.parametrize(("correct", "n"), [(0, 10), (42, 221), (221, 221), (7, 100)])
def test_accuracy_interval_is_wilsons(correct, n):
    assert accuracy_interval(correct, n) == pytest.approx(_wilson(correct, n), abs=1e-3)
    assert accuracy_interval(0, 0) is None


def test_paired_comparison_is_an_exact_mcnemar_test():
    first = {("d", str(i), 0): i < 12 for i in range(30)}  # right on 0..11
    second = {("d", str(i), 0): 2 <= i < 22 for i in range(30)}  # loses 0, 1; gains 12..21
    comparison = compare(first, second, "d")
    assert (comparison.shared, comparison.only_first, comparison.only_second) == (30, 2, 10)
    assert comparison.p_value == pytest.approx(2 * (1 + 12 + 66) / 2**12)  # 2 P(X <= 2), X ~ Bin(12, 1/2)
    assert compare(first, first, "d").p_value == 1.0
    assert compare(first, second, "other") is None


def test_answers_file_cut_mid_line_still_pairs(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text(
        '{"format": "x"}\n{"dataset": "d", "id": "1", "sample": 0, "correct": true}\n{"dataset": "d", "id"',
        encoding="utf-8",
    )
    assert answers_correct(path) == {("d", "1", 0): True}


def test_report_names_a_file_that_is_not_results(tmp_path, capsys):
    bogus = tmp_path / "notes.json"
    bogus.write_text(json.dumps({"accuracy": 1}))
    assert main(["report", str(bogus)]) == 2
    assert str(bogus) in capsys.readouterr().err
