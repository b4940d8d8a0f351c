"""``python -m exgrpo_verl ablation``: the paper's ablation (Table 3) against plain GRPO, in one command.

Each training arm is a stock ``main_ppo`` run (the command its run script prints), then ``eval`` on
its last checkpoint; ``report`` puts every arm beside the paper's rows. Resumable: an arm whose
training finished (``OUT/<arm>/train.done.json``) is not trained again, and an evaluation whose
command is unchanged is not run again; an interrupted training resumes from its last checkpoint
(verl's ``resume_mode=auto``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from exgrpo_verl.ablation import curves
from exgrpo_verl.ablation.arms import ARMS, AblationError, Arm, select_arms
from exgrpo_verl.ablation.commands import (
    Evaluation,
    Layout,
    Training,
    command_substitution,
    eval_command,
    final_answer_budget,
    latest_checkpoint,
    latest_checkpoint_command,
    recipes_dir,
    report_command,
    shell_line,
    training_command,
)
from exgrpo_verl.ablation.single_turn import write_single_turn_rows

LOG_TAIL_LINES = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The paper's ablation (Table 3) against verl's plain GRPO: trains each arm with stock main_ppo, "
        "evaluates its last checkpoint, writes OUT/report.md and OUT/report.png. Resumable."
    )
    parser.epilog = "arms:\n" + "\n".join(f"  {arm.name:<14} {arm.meaning}" for arm in ARMS)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--sft-model", required=True, help="start model of every arm: the SFT checkpoint or any HF model"
    )
    parser.add_argument("--data-dir", required=True, help="EI folder holding rl_train.parquet and val.parquet")
    parser.add_argument("--out-dir", required=True, help="checkpoints, logs, eval results and the report go here")
    parser.add_argument("--student", default="qwen2_5_7b_instruct", help="recipe sizes (recipes/student/NAME.yaml)")
    parser.add_argument("--base-model", help="the model before SFT, for arm exgrpo_no_sft (added to the default arms)")
    parser.add_argument("--arms", help="comma-separated subset (default: sft,grpo,exgrpo_plain,exgrpo_aux,exgrpo)")
    parser.add_argument("--steps", type=int, help="training steps per arm (default: the recipe's epochs)")

    evaluation = parser.add_argument_group("evaluation (python -m exgrpo_verl eval)")
    evaluation.add_argument("--eval-datasets", help="eval --datasets (default: all twelve)")
    evaluation.add_argument(
        "--eval-local-path", action="append", default=[], metavar="NAME=PATH", help="eval --local-path"
    )
    evaluation.add_argument("--eval-limit", type=int, help="eval --limit: first N questions of each dataset")
    evaluation.add_argument(
        "--eval-max-tokens", type=int, help="answer length limit (default: the final-answer budget of training)"
    )
    evaluation.add_argument(
        "--eval-backend", choices=["auto", "hf", "vllm"], help="default: hf with --student cpu, else auto"
    )

    parser.add_argument("--dry-run", action="store_true", help="print every command instead of running it")
    parser.add_argument(
        "overrides", nargs="*", metavar="-- OVERRIDE", help="hydra overrides for every training arm, after --"
    )


@dataclass(frozen=True)
class ArmPlan:
    arm: Arm
    # the main_ppo command, or None for an arm that only evaluates its start model
    train: list[str] | None
    # the model the arm trains from, or evaluates when it does not train
    model: str


@dataclass(frozen=True)
class Plan:
    arms: list[ArmPlan]
    layout: Layout
    evaluation: Evaluation


def run(args: argparse.Namespace) -> int:
    try:
        plan = build_plan(args)
        if args.dry_run:
            print_plan(plan)
            return 0
        return execute(plan)
    except AblationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def build_plan(args: argparse.Namespace) -> Plan:
    arms = select_arms(args.arms, args.base_model)
    if not (recipes_dir() / "student" / f"{args.student}.yaml").is_file():
        known = sorted(p.stem for p in (recipes_dir() / "student").glob("*.yaml"))
        raise AblationError(f"--student {args.student}: no such student; known: {', '.join(known)}")
    for flag in ("steps", "eval_limit", "eval_max_tokens"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise AblationError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    data_dir = Path(args.data_dir).resolve()
    train_files, val_files = data_dir / "rl_train.parquet", data_dir / "val.parquet"
    for path, made_by in ((train_files, "ei-build"), (val_files, "ei-eval-set")):
        if not path.is_file():
            raise AblationError(
                f"--data-dir {args.data_dir}: no {path.name} (written by python -m exgrpo_verl {made_by})"
            )
    for spec in args.eval_local_path:
        if "=" not in spec:
            raise AblationError(f"--eval-local-path takes NAME=PATH, got {spec!r}")

    layout = Layout(Path(args.out_dir).resolve())
    overrides = tuple(args.overrides)
    training = Training(args.student, train_files, val_files, args.steps, overrides)
    evaluation = Evaluation(
        datasets=args.eval_datasets,
        local_paths=tuple(_absolute_local_path(spec) for spec in args.eval_local_path),
        limit=args.eval_limit,
        max_tokens=args.eval_max_tokens or final_answer_budget(args.student, overrides),
        backend=args.eval_backend or ("hf" if args.student == "cpu" else "auto"),
    )
    if any(arm.single_turn for arm in arms):
        write_single_turn_rows(train_files, layout.single_turn_rows)
    plans = []
    for arm in arms:
        model = _model(args.base_model if arm.from_base else args.sft_model)
        train = training_command(arm, model, training, layout) if arm.script else None
        plans.append(ArmPlan(arm, train, model))
    return Plan(plans, layout, evaluation)


def print_plan(plan: Plan) -> None:
    layout = plan.layout
    print(f"# ablation: arms {', '.join(p.arm.name for p in plan.arms)}; output in {layout.out}")
    for arm_plan in plan.arms:
        name = arm_plan.arm.name
        print(f"\n# {name}: {arm_plan.arm.meaning}")
        if arm_plan.train is None:
            print(shell_line(eval_command(arm_plan.model, name, plan.evaluation, layout)))
            continue
        if arm_plan.arm.single_turn:
            print(f"# (trains on {layout.single_turn_rows}: the questions of rl_train.parquet as single-turn rows)")
        metrics = curves.next_metrics_file(layout.metrics(name))
        logger = f"mkdir -p {shell_line([str(metrics.parent)])} && VERL_FILE_LOGGER_PATH={shell_line([str(metrics)])}"
        print(f"{logger} {shell_line(arm_plan.train)}")
        placeholder = f"<last checkpoint of {name}>"
        checkpoint = command_substitution(latest_checkpoint_command(name, layout))
        print(shell_line(eval_command(placeholder, name, plan.evaluation, layout), {placeholder: checkpoint}))
    print()
    print(shell_line(report_command([p.arm.name for p in plan.arms], layout)))


def execute(plan: Plan) -> int:
    layout, total = plan.layout, len(plan.arms)
    print(f"ablation: {total} arm(s) ({', '.join(p.arm.name for p in plan.arms)}), output in {layout.out}", flush=True)
    for index, arm_plan in enumerate(plan.arms, 1):
        finished = run_arm(arm_plan, plan, f"[{index}/{total}] {arm_plan.arm.name}")
        if arm_plan.train is not None:
            write_curves(plan)
        if not finished:
            print("stopped; rerun the same command to resume", file=sys.stderr)
            return 1
    from exgrpo_verl.__main__ import main as exgrpo_main

    argv = report_command([p.arm.name for p in plan.arms], layout)
    if exgrpo_main(argv[3:]) != 0:
        return 1
    image = write_curves(plan)
    section = curves.markdown_section(trained_curves(plan), image.name if image else None)
    report = layout.report.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + section
    layout.report.write_text(report, encoding="utf-8")
    print("\n" + report.split("\n## Correct / answers")[0].strip())
    print(f"curves: {layout.curves_csv}" + (f", {image}" if image else ""))
    return 0


def trained_curves(plan: Plan) -> dict[str, curves.Curves]:
    names = [p.arm.name for p in plan.arms if p.train is not None]
    return curves.arm_curves(names, plan.layout.metrics)


def write_curves(plan: Plan) -> Path | None:
    """curves.csv and curves.png from every training arm's logged steps so far; the image, if drawn."""
    _, image = curves.write_all(trained_curves(plan), plan.layout.curves_csv, plan.layout.curves_png)
    return image


def run_arm(arm_plan: ArmPlan, plan: Plan, prefix: str) -> bool:
    """Train (unless done) and evaluate (unless done) one arm, with a line as it starts and ends."""
    name, layout = arm_plan.arm.name, plan.layout
    trained = arm_plan.train is None or layout.train_marker(name).is_file()
    model = arm_plan.model if arm_plan.train is None else (latest_checkpoint(name, layout) if trained else None)
    evaluate = eval_command(model, name, plan.evaluation, layout) if model else None
    if trained and evaluate and _finished(layout.eval_marker(name), evaluate, layout.results(name)):
        print(f"{prefix}: finished before, skipped{_changed_note(arm_plan, layout)}{_scores(layout, name)}", flush=True)
        return True

    started = time.monotonic()
    doing = "evaluate" if trained else "train, then evaluate"
    log = layout.eval_log(name) if trained else layout.train_log(name)
    print(f"{prefix}: start ({doing}; log {log}){_changed_note(arm_plan, layout)}", flush=True)
    timings = []
    if not trained:
        metrics = curves.next_metrics_file(layout.metrics(name))
        metrics.parent.mkdir(parents=True, exist_ok=True)
        seconds = _run_logged(arm_plan.train, layout.train_log(name), {"VERL_FILE_LOGGER_PATH": str(metrics)})
        if seconds is None:
            _report_failure(prefix, "training", layout.train_log(name), started)
            return False
        model = latest_checkpoint(name, layout)
        _write_marker(layout.train_marker(name), arm_plan.train, seconds, checkpoint=model)
        timings.append(f"train {_duration(seconds)}")
        evaluate = eval_command(model, name, plan.evaluation, layout)
    assert evaluate is not None
    seconds = _run_logged(evaluate, layout.eval_log(name))
    if seconds is None:
        _report_failure(prefix, "evaluation", layout.eval_log(name), started)
        return False
    _write_marker(layout.eval_marker(name), evaluate, seconds)
    timings.append(f"eval {_duration(seconds)}")
    took = _duration(time.monotonic() - started)
    print(f"{prefix}: done in {took} ({', '.join(timings)}){_scores(layout, name)}", flush=True)
    return True


def _run_logged(argv: list[str], log: Path, env: dict[str, str] | None = None) -> float | None:
    """Run with stdout and stderr into ``log`` (``env``: added variables); the seconds it took, or None
    when it failed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        out.write(f"$ {shell_line(argv)}\n")
        out.flush()
        environment = {**os.environ, **env} if env else None
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment)
    return time.monotonic() - started if result.returncode == 0 else None


def _report_failure(prefix: str, what: str, log: Path, started: float) -> None:
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
    took = _duration(time.monotonic() - started)
    print(f"{prefix}: {what} failed after {took}; last lines of {log}:", file=sys.stderr)
    print("\n".join(f"  {line}" for line in tail), file=sys.stderr)


def _finished(marker: Path, argv: list[str], results: Path) -> bool:
    return results.is_file() and _marker_command(marker) == argv


def _changed_note(arm_plan: ArmPlan, layout: Layout) -> str:
    """Training is never redone behind the user's back: say so when its command changed since."""
    recorded = _marker_command(layout.train_marker(arm_plan.arm.name)) if arm_plan.train else None
    if recorded is None or recorded == arm_plan.train:
        return ""
    return f" (trained before with another command, kept; delete {layout.arm(arm_plan.arm.name)} to train it again)"


def _marker_command(marker: Path) -> list[str] | None:
    try:
        return json.loads(marker.read_text(encoding="utf-8"))["command"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_marker(marker: Path, argv: list[str], seconds: float, **extra: Any) -> None:
    record = {"command": argv, "seconds": round(seconds, 1), **extra}
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    marker.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _scores(layout: Layout, name: str) -> str:
    try:
        results = json.loads(layout.results(name).read_text(encoding="utf-8"))
        averages = results["averages"]
    except (OSError, ValueError, KeyError):
        return ""
    parts = [
        f"{group.replace('_', '-')} {average['accuracy']:.2f}%{'' if average['complete'] else '*'}"
        for group, average in averages.items()
        if average.get("accuracy") is not None
    ]
    return f"; {', '.join(parts)}" if parts else ""


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _model(spec: str) -> str:
    """A local folder as an absolute path (the commands may run elsewhere); a hub name as given."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def _absolute_local_path(spec: str) -> str:
    name, _, path = spec.partition("=")
    return f"{name}={_model(path)}"
