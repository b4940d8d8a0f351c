"""The whole ablation on the CPU with a tiny model: ``python -m exgrpo_verl ablation --student cpu
--steps 1 --eval-limit 2`` trains four arms with stock main_ppo (hf rollout, CPU platform), evaluates
five, writes the report and chart; the same command again runs nothing; --dry-run prints exactly the
commands that ran.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from exgrpo_verl.testing import save_tiny_model
from tests.ei_fixtures import GSM8K_MAIN, write_jsonl

pytestmark = pytest.mark.slow

ARMS = ("sft", "grpo", "exgrpo_plain", "exgrpo_aux", "exgrpo")
TRAINED = ARMS[1:]
# the smallest run: one question per step, two trajectories (one full dialogue, one partial), short
# answers (the final-answer budget is also eval's), no validation during training
SMALL = (
    "trainer.test_freq=-1",
    "data.train_batch_size=1",
    "actor_rollout_ref.actor.ppo_mini_batch_size=1",
    "actor_rollout_ref.rollout.n=2",
    "exgrpo.probe_max_tokens=16",
    "exgrpo.final_max_tokens=16",
)


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    work = tmp_path_factory.mktemp("ablation_cpu")
    questions = write_jsonl(work / "gsm8k.jsonl", GSM8K_MAIN)
    py = [sys.executable, "-m", "exgrpo_verl"]
    for argv in (
        [*py, "ei-build", "--dataset", "gsm8k", "--local-path", str(questions), "--out-dir", "ei"],
        [*py, "ei-eval-set", "--dataset", "gsm8k", "--local-path", str(questions), "--out", "ei/val.parquet"],
    ):
        result = run(argv, work)
        assert result.returncode == 0, result.stderr[-3000:]
    model = save_tiny_model(work / "tiny", "qwen2")
    command = [
        *py,
        "ablation",
        "--sft-model",
        str(model),
        "--data-dir",
        "ei",
        "--out-dir",
        "out",
        "--student",
        "cpu",
        "--steps",
        "1",
        "--eval-datasets",
        "gsm8k",
        "--eval-local-path",
        f"gsm8k={questions}",
        "--eval-limit",
        "2",
        "--",
        *SMALL,
    ]
    first = run(command, work)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-6000:]
    out = work / "out"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent.name in ARMS}
    second = run(command, work)
    dry = run([*command[: -len(SMALL) - 1], "--dry-run", "--", *SMALL], work)
    return {"work": work, "out": out, "model": model, "first": first, "second": second, "dry": dry, "before": before}


def accuracy_table(markdown: str) -> dict[str, dict[str, str]]:
    lines = markdown.splitlines()
    start = lines.index("## Accuracy (%)") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    header = rows[0]
    return {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in rows[2:]}


def test_report_has_every_arm_and_the_papers_rows(ablation):
    out = ablation["out"]
    table = accuracy_table((out / "report.md").read_text())
    assert list(table)[:5] == list(ARMS)
    for arm in ARMS:
        results = json.loads((out / arm / "eval.json").read_text())
        assert results["run"] == arm and results["datasets"]["gsm8k"]["answers"] == 2
        assert float(table[arm]["gsm8k"]) == pytest.approx(results["datasets"]["gsm8k"]["accuracy"], abs=0.005)
        assert table[arm]["Held-in avg"].endswith("*")  # one dataset of eight
    assert table["paper Qwen2.5-7B: + r_dsu = ExGRPO (exgrpo)"]["Held-in avg"] == "82.54"
    assert table["paper Qwen2.5-7B: SFT on EI data (sft)"]["Held-in avg"] == "79.17"
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the console shows the same table
    assert "| exgrpo_aux |" in ablation["first"].stdout


def test_one_line_per_arm_as_it_starts_and_ends(ablation):
    printed = ablation["first"].stdout
    for index, arm in enumerate(ARMS, 1):
        assert re.search(rf"^\[{index}/5\] {arm}: start \(", printed, re.M), arm
        ended = re.search(
            rf"^\[{index}/5\] {arm}: done in (\d+m)?\d+s \((train [\dms]+, )?eval [\dms]+\)", printed, re.M
        )
        assert ended, arm
        assert ("train " in ended.group(0)) == (arm in TRAINED)


def test_each_arm_trains_what_it_claims(ablation):
    """From verl's own console metrics: which ExGRPO parts ran in which arm."""
    out = ablation["out"]
    logs = {arm: (out / arm / "train.log").read_text(errors="replace") for arm in TRAINED}
    assert "exgrpo/p_full" not in logs["grpo"] and "critic/score/mean" in logs["grpo"]
    assert "--config-name grpo_fsdp" in logs["grpo"].splitlines()[0]
    for arm in ("exgrpo_plain", "exgrpo_aux", "exgrpo"):
        assert "exgrpo/dsu_fire_rate" in logs[arm], arm  # probe dialogues ran
    assert "actor/exgrpo/aux_nll_per_token" not in logs["grpo"]
    for arm, aux in (("exgrpo_plain", False), ("exgrpo_aux", True), ("exgrpo", True)):
        # lambda > 0 builds teacher-forced rows from the asked probes that have a teacher answer, and
        # trains the aux term on them; lambda = 0 builds none
        # (a step whose asked probes have no teacher answer has no such rows; the e2e test checks
        # that a run with Socratic data does train the term)
        rows = sum(float(n) for n in re.findall(r"exgrpo/aux/teacher_rows:([0-9.]+)", logs[arm]))
        assert aux or rows == 0, arm
        assert ("actor/exgrpo/aux_nll_per_token" in logs[arm]) is (rows > 0), arm


def test_every_trained_arm_changed_the_start_model(ablation):
    from safetensors.torch import load_file

    start = load_file(ablation["model"] / "model.safetensors")
    for arm in TRAINED:
        record = json.loads((ablation["out"] / arm / "train.done.json").read_text())
        checkpoint = Path(record["checkpoint"])
        assert checkpoint == ablation["out"] / arm / "checkpoints" / "global_step_1" / "actor" / "huggingface"
        trained = {}
        for file in checkpoint.glob("*.safetensors"):
            trained.update(load_file(file))
        assert any(not torch.equal(start[key], trained[key]) for key in start), arm
        assert json.loads((ablation["out"] / arm / "eval.json").read_text())["model"] == str(checkpoint)


def test_rerun_runs_nothing_new(ablation):
    second = ablation["second"]
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("finished before, skipped") == 5 and ": start (" not in second.stdout
    now = {p: p.stat().st_mtime_ns for p in ablation["before"]}
    assert now == ablation["before"]  # no log, checkpoint, result or marker rewritten
    assert "| exgrpo |" in second.stdout


def test_dry_run_prints_the_commands_that_ran(ablation):
    dry = ablation["dry"]
    assert dry.returncode == 0, dry.stderr
    printed = [shlex.split(line) for line in dry.stdout.splitlines() if "verl.trainer.main_ppo" in line]
    ran = [json.loads((ablation["out"] / arm / "train.done.json").read_text())["command"] for arm in TRAINED]
    # each line: mkdir -p OUT/<arm>/metrics && VERL_FILE_LOGGER_PATH=OUT/<arm>/metrics/run-NNN.jsonl <command>
    for argv, arm in zip(printed, TRAINED, strict=True):
        assert argv[:4] == ["mkdir", "-p", str(ablation["out"] / arm / "metrics"), "&&"]
        assert argv[4] == f"VERL_FILE_LOGGER_PATH={ablation['out'] / arm / 'metrics' / 'run-002.jsonl'}"
    printed = [argv[5:] for argv in printed]
    assert printed == ran
    assert all(argv[:2] == ["env", "VERL_PLATFORM=cpu"] for argv in printed)


def test_every_trained_arm_leaves_curves_from_verls_file_logger(ablation):
    out = ablation["out"]
    rows = list(csv.DictReader((out / "curves.csv").open()))
    logged = {(row["arm"], row["metric"]) for row in rows if row["step"] == "1"}
    for arm in TRAINED:
        assert (arm, "critic/score/mean") in logged, arm
        assert ((arm, "exgrpo/p_full") in logged) is (arm != "grpo"), arm
        assert [p.name for p in (out / arm / "metrics").iterdir()] == ["run-001.jsonl"]  # the rerun trained nothing
    assert {row["arm"] for row in rows} == set(TRAINED)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "## Training curves" in report and "![training curves](curves.png)" in report
    assert "| `critic/score/mean` |" in report
