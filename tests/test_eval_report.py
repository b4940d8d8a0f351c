"""``report``: the markdown table parsed back against the results files, and a real PNG chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exgrpo_verl.__main__ import main
from exgrpo_verl.data_sources import get_data_source
from exgrpo_verl.eval.report import PAPER_REFERENCES
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

    png = chart.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


def test_report_names_a_file_that_is_not_results(tmp_path, capsys):
    bogus = tmp_path / "notes.json"
    bogus.write_text(json.dumps({"accuracy": 1}))
    assert main(["report", str(bogus)]) == 2
    assert str(bogus) in capsys.readouterr().err
