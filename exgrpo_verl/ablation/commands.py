"""The commands the ablation runs, composed where they are composed for users.

Training is the stock ``main_ppo`` command a recipe's run script prints under ``DRY_RUN=1`` (so the
ablation trains exactly what ``run_exgrpo_fsdp.sh`` / ``run_grpo_fsdp.sh`` would), evaluation is
``python -m exgrpo_verl eval`` on the Hugging Face copy ``latest_hf.sh`` finds, and the table is
``python -m exgrpo_verl report``. Every command is an argument list; :func:`shell_line` prints it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from exgrpo_verl.ablation.arms import AblationError, Arm
from exgrpo_verl.paths import package_dir

# run-script variables the ablation sets itself (others, e.g. NNODES or ROLLOUT_TP, pass through)
OWN_SCRIPT_VARS = ("DATA_DIR", "TRAIN_FILES", "VAL_FILES", "SFT_DIR", "MODEL_PATH", "EXPERIMENT", "CKPT_DIR", "STUDENT")
EXGRPO = [sys.executable, "-m", "exgrpo_verl"]


def recipes_dir() -> Path:
    return package_dir("recipes")


@dataclass(frozen=True)
class Layout:
    """Where each arm's files go under ``--out-dir``."""

    out: Path

    def arm(self, name: str) -> Path:
        return self.out / name

    def checkpoints(self, name: str) -> Path:
        return self.arm(name) / "checkpoints"

    def train_log(self, name: str) -> Path:
        return self.arm(name) / "train.log"

    def train_marker(self, name: str) -> Path:
        return self.arm(name) / "train.done.json"

    def results(self, name: str) -> Path:
        return self.arm(name) / "eval.json"

    def metrics(self, name: str) -> Path:
        """verl's file-logger output of each training attempt (curves.py)."""
        return self.arm(name) / "metrics"

    def eval_log(self, name: str) -> Path:
        return self.arm(name) / "eval.log"

    def eval_marker(self, name: str) -> Path:
        return self.arm(name) / "eval.done.json"

    @property
    def single_turn_rows(self) -> Path:
        return self.out / "data" / "grpo_train.parquet"

    @property
    def report(self) -> Path:
        return self.out / "report.md"

    @property
    def chart(self) -> Path:
        return self.out / "report.png"

    @property
    def curves_csv(self) -> Path:
        return self.out / "curves.csv"

    @property
    def curves_png(self) -> Path:
        return self.out / "curves.png"


@dataclass(frozen=True)
class Training:
    """What every training arm shares."""

    student: str
    train_files: Path
    val_files: Path
    steps: int | None
    overrides: tuple[str, ...]


def training_command(arm: Arm, model: str, training: Training, layout: Layout) -> list[str]:
    """The ``main_ppo`` command the arm's run script prints. Arguments: the ablation's defaults, then
    the user's overrides, then the arm's own settings (which must win: they are what it ablates)."""
    assert arm.script is not None
    # verl's file logger feeds the training curves (curves.py); a user's trainer.logger override replaces it
    args = [f"hydra.run.dir={layout.arm(arm.name) / 'hydra'}", "trainer.val_before_train=false"]
    args.append("trainer.logger=[console,file]")
    if training.steps is not None:
        args.append(f"trainer.total_training_steps={training.steps}")
    args += [*training.overrides, *arm.overrides]
    env = {key: value for key, value in os.environ.items() if key not in OWN_SCRIPT_VARS}
    env.update(
        STUDENT=training.student,
        TRAIN_FILES=str(layout.single_turn_rows if arm.single_turn else training.train_files),
        VAL_FILES=str(training.val_files),
        MODEL_PATH=model,
        EXPERIMENT=f"{arm.name}_{training.student}",
        CKPT_DIR=str(layout.checkpoints(arm.name)),
        PYTHON=sys.executable,
        DRY_RUN="1",
    )
    script = recipes_dir() / arm.script
    result = subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AblationError(f"arm {arm.name}: {script.name} refused the settings: {result.stderr.strip()}")
    printed = result.stdout.strip()
    if "$'" in printed:
        raise AblationError(f"arm {arm.name}: a path or override holds a control character: {printed}")
    return shlex.split(printed)


@dataclass(frozen=True)
class Evaluation:
    """The ``eval`` settings every arm shares."""

    datasets: str | None
    local_paths: tuple[str, ...]
    limit: int | None
    max_tokens: int
    backend: str


def eval_command(model: str, name: str, evaluation: Evaluation, layout: Layout) -> list[str]:
    argv = [*EXGRPO, "eval", "--model", model, "--backend", evaluation.backend, "--name", name]
    argv += ["--out", str(layout.results(name)), "--max-tokens", str(evaluation.max_tokens), "--no-progress"]
    if evaluation.datasets:
        argv += ["--datasets", evaluation.datasets]
    for spec in evaluation.local_paths:
        argv += ["--local-path", spec]
    if evaluation.limit is not None:
        argv += ["--limit", str(evaluation.limit)]
    return argv


def report_command(names: Sequence[str], layout: Layout) -> list[str]:
    results = [str(layout.results(name)) for name in names]
    return [
        *EXGRPO,
        "report",
        *results,
        "--reference",
        "ablation",
        "--out",
        str(layout.report),
        "--plot",
        str(layout.chart),
    ]


def latest_checkpoint_command(name: str, layout: Layout) -> list[str]:
    return ["bash", str(recipes_dir() / "latest_hf.sh"), str(layout.checkpoints(name))]


def latest_checkpoint(name: str, layout: Layout) -> str:
    """The Hugging Face copy in the arm's last checkpoint (``latest_hf.sh``)."""
    result = subprocess.run(latest_checkpoint_command(name, layout), capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AblationError(f"arm {name}: {result.stderr.strip()}")
    return result.stdout.strip()


def shell_line(argv: Sequence[str], substitute: dict[str, str] | None = None) -> str:
    """``argv`` as one shell line; an argument found in ``substitute`` is written as the given shell
    text unquoted (e.g. a ``"$(…)"`` that finds a checkpoint only once training has run)."""
    substitute = substitute or {}
    return " ".join(substitute.get(arg, shlex.quote(arg)) for arg in argv)


def command_substitution(argv: Sequence[str]) -> str:
    return f'"$({shlex.join(argv)})"'


def final_answer_budget(student: str, overrides: Sequence[str]) -> int:
    """``exgrpo.final_max_tokens`` as the arms train with it (an override, else the student's, else the
    recipe's): eval gives every arm's answer the budget the final answer had in training."""
    for override in reversed(overrides):
        key, sep, value = override.partition("=")
        if sep and key.lstrip("+") == "exgrpo.final_max_tokens":
            try:
                return int(value)
            except ValueError as error:
                raise AblationError(f"override {override!r}: not a whole number") from error
    for name in (f"student/{student}.yaml", "exgrpo_common.yaml"):
        data = yaml.safe_load((recipes_dir() / name).read_text(encoding="utf-8")) or {}
        value = (data.get("exgrpo") or {}).get("final_max_tokens")
        if value is not None:
            return int(value)
    raise AblationError("exgrpo_common.yaml sets no exgrpo.final_max_tokens")
