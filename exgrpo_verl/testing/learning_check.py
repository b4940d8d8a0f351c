"""Does the training loop learn? ExGRPO and plain GRPO, each pushed both ways by a learnable reward.

    python -m exgrpo_verl.testing.learning_check --gsm8k path/to/gsm8k_test.jsonl [--steps 15]

A tiny random model (``save_tiny_model``) is trained on the CPU through the run scripts
(``STUDENT=cpu``, stock ``main_ppo``) with ``learning_reward``: the share of ASCII characters in the
final answer, once rewarded (+1) and once penalised (-1), for ExGRPO and for plain GRPO on the same
questions. Each run must move its score the rewarded way (mean of the last 3 steps against the first
3) by at least ``--min-move``; a loop with a sign error, a mask that misses the final answer, or a
reward that reaches the wrong turn fails one of the four. Dialogues must not be cut off: a truncated
final answer scores 0, which the -1 run would learn to seek instead of the reward. Exit status 0 when
every run passed. It takes about 4 minutes a run on 2 cores; not part of the test suite for that reason.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from exgrpo_verl.ablation.single_turn import write_single_turn_rows
from exgrpo_verl.paths import package_dir
from exgrpo_verl.testing import learning_reward
from exgrpo_verl.testing.tiny import save_tiny_model

WINDOW = 3
"""Steps averaged at each end of a run."""

RUN_SCRIPTS = {"exgrpo": "run_exgrpo_fsdp.sh", "grpo": "run_grpo_fsdp.sh"}


@dataclass(frozen=True)
class RunResult:
    arm: str
    sign: int
    scores: list[float]
    """The rewarded quantity (ASCII share of the final answers) per step: critic/score/mean · sign."""
    truncated: float
    """Largest share of dialogues cut off before their final answer in any step."""

    @property
    def move(self) -> float:
        """How far the run went the rewarded way: sign · (last steps − first steps)."""
        first, last = self.scores[:WINDOW], self.scores[-WINDOW:]
        return self.sign * (sum(last) / len(last) - sum(first) / len(first))

    def passed(self, min_move: float) -> bool:
        return len(self.scores) >= 2 * WINDOW and self.truncated == 0 and self.move >= min_move


def read_run(metrics_file: Path, arm: str, sign: int) -> RunResult:
    """A run's per-step scores from verl's file logger (one JSON line per step)."""
    scores, truncated = [], 0.0
    for line in metrics_file.read_text().splitlines():
        data = json.loads(line).get("data", {})
        if "critic/score/mean" not in data:
            continue
        scores.append(sign * float(data["critic/score/mean"]))
        truncated = max(truncated, float(data.get("exgrpo/truncated/fraction", 0.0)))
    return RunResult(arm, sign, scores, truncated)


def prepare(work: Path, gsm8k: Path, rows: int) -> tuple[Path, Path]:
    """The tiny model and the RL data (teacher-free EI rows, validation rows, single-turn rows)."""
    model = save_tiny_model(work / "tiny", "qwen2")
    data = work / "ei"
    # built every time (seconds): a folder left by an earlier call may hold other --gsm8k or --rows
    cli = [sys.executable, "-m", "exgrpo_verl"]
    source = ["--dataset", "gsm8k", "--split", "test", "--local-path", str(gsm8k)]
    subprocess.run([*cli, "ei-build", *source, "--limit", str(rows), "--out-dir", str(data)], check=True)
    subprocess.run([*cli, "ei-eval-set", *source, "--limit", "4", "--out", str(data / "val.parquet")], check=True)
    write_single_turn_rows(data / "rl_train.parquet", data / "grpo_train.parquet")
    return model, data


def train(work: Path, model: Path, data: Path, arm: str, sign: int, steps: int, lr: float) -> RunResult:
    name = f"{arm}_{'plus' if sign > 0 else 'minus'}"
    metrics = work / f"{name}.jsonl"
    metrics.unlink(missing_ok=True)
    env = {
        **os.environ,
        "STUDENT": "cpu",
        "PYTHON": sys.executable,  # this environment, activated or not
        "MODEL_PATH": str(model),
        "CKPT_DIR": str(work / name),
        "VERL_FILE_LOGGER_PATH": str(metrics),
        learning_reward.SIGN_VARIABLE: str(sign),
    }
    if arm == "grpo":
        env["TRAIN_FILES"], env["VAL_FILES"] = str(data / "grpo_train.parquet"), str(data / "val.parquet")
    else:
        env["DATA_DIR"] = str(data)
    overrides = [
        f"trainer.total_training_steps={steps}",
        "trainer.logger=[console,file]",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.resume_mode=disable",
        f"actor_rollout_ref.actor.optim.lr={lr}",
        "data.train_batch_size=4",
        # room for every probe turn and the final answer of the byte-level model: nothing is cut off
        "data.max_response_length=2048",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=4096",
        f"reward.custom_reward_function.path={learning_reward.__file__}",
    ]
    if arm == "exgrpo":
        overrides.append("exgrpo.aux_sft_coef=0")  # the policy gradient alone
    log = work / f"{name}.log"
    with log.open("w") as out:
        done = subprocess.run(
            ["bash", str(package_dir("recipes") / RUN_SCRIPTS[arm]), *overrides],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        raise SystemExit(f"{name}: training failed with exit status {done.returncode}; see {log}")
    return read_run(metrics, arm, sign)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k", type=Path, required=True, help="a GSM8K jsonl (question/answer rows)")
    parser.add_argument("--work-dir", type=Path, default=Path("learning_check"))
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--rows", type=int, default=64, help="GSM8K questions to train on")
    parser.add_argument("--lr", type=float, default=1e-2, help="a random tiny model needs a large step")
    parser.add_argument("--min-move", type=float, default=0.05, help="least change of the ASCII share")
    parser.add_argument("--arms", nargs="+", choices=sorted(RUN_SCRIPTS), default=sorted(RUN_SCRIPTS))
    args = parser.parse_args(argv)
    if args.steps < 2 * WINDOW:
        parser.error(f"--steps must be at least {2 * WINDOW}")
    if not args.gsm8k.is_file():
        parser.error(f"--gsm8k {args.gsm8k}: no such file")
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    model, data = prepare(work, args.gsm8k.resolve(), args.rows)
    results = [train(work, model, data, arm, sign, args.steps, args.lr) for arm in args.arms for sign in (1, -1)]
    print(f"{'run':<12} {'first':>6} {'last':>6} {'move':>7} {'cut':>5}  verdict")
    for result in results:
        first = sum(result.scores[:WINDOW]) / WINDOW
        last = sum(result.scores[-WINDOW:]) / WINDOW
        verdict = "learns" if result.passed(args.min_move) else "FAILS"
        label = f"{result.arm} {'+' if result.sign > 0 else '-'}1"
        print(f"{label:<12} {first:6.3f} {last:6.3f} {result.move:+7.3f} {result.truncated:5.2f}  {verdict}")
    return 0 if all(result.passed(args.min_move) for result in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
