"""Cost of an ExGRPO training step outside generation and the actor update, against plain GRPO.

Both runs are stock ``python -m verl.trainer.main_ppo`` on the CPU (the ``exgrpo_cpu`` recipe: hf
rollout, CPU platform) with the same tiny model and the same GSM8K questions:

- anchor: verl's plain GRPO, its single-turn agent loop and agent-loop manager, verl's sync trainer;
- ExGRPO: probe dialogues (k = 3), the plug-in's manager (scenarios, r_dsu), the L_SFT-aux rows and
  loss (``exgrpo_sync``), the metrics sampler.

verl's ``timing_s/*`` are printed for both. "Outside" is the step's wall time minus the model's own
generate time (the hf server's ``stats_file``) minus ``timing_s/update_actor``: agent loop, reward,
bonus, aux rows, log-prob and reference passes, weight sync. The figure compared is outside-seconds
per token of the batch (``perf/total_num_tokens``); the goal is ExGRPO <= 1.2x the anchor. Step 1 is
a warm-up and left out.

    python benchmarks/bench_step.py [--steps 4] [--gsm8k path/to/train.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exgrpo_verl.testing import save_tiny_model  # noqa: E402
from tests.ei_fixtures import gsm8k_word_problems, write_jsonl  # noqa: E402

SHARED_GSM8K = REPO.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def build_data(work: Path, gsm8k: Path) -> tuple[Path, Path, Path]:
    """rl_train.parquet (probe rows), a single-turn copy of the same questions, and a val file."""
    subprocess.run(
        [sys.executable, "-m", "exgrpo_verl", "ei-build", "--dataset", "gsm8k", "--local-path", str(gsm8k),
         "--limit", "16", "--out-dir", str(work / "ei")],
        check=True, capture_output=True,
    )  # fmt: skip
    probe_rows = work / "ei" / "rl_train.parquet"
    frame = pd.read_parquet(probe_rows)
    frame["agent_name"] = "single_turn_agent"  # the same question, asked alone
    single_turn = work / "ei" / "single_turn.parquet"
    frame.to_parquet(single_turn)
    return probe_rows, single_turn, single_turn


def run(name: str, work: Path, model: Path, train: Path, val: Path, steps: int, extra: list[str]) -> dict:
    metrics_file, stats_file = work / f"{name}.jsonl", work / f"{name}_generate.jsonl"
    command = [
        sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(REPO / "recipes"),
        "--config-name", "exgrpo_cpu", f"actor_rollout_ref.model.path={model}", f"data.train_files={train}",
        f"data.val_files={val}", f"trainer.total_training_steps={steps}", "trainer.val_before_train=false",
        "trainer.test_freq=-1", "trainer.save_freq=-1", "trainer.logger=[console,file]",
        f"trainer.default_local_dir={work / name}",
        f"actor_rollout_ref.rollout.engine_kwargs.hf.stats_file={stats_file}",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "VERL_PLATFORM": "cpu", "VERL_FILE_LOGGER_PATH": str(metrics_file)}
    with (work / f"{name}.log").open("w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    by_step: dict[int, dict] = {}
    for line in metrics_file.read_text().splitlines():
        record = json.loads(line)
        by_step.setdefault(record["step"], {}).update(record["data"])
    calls = [json.loads(line) for line in stats_file.read_text().splitlines()]
    return {"steps": by_step, "generate_calls": calls}


def summarise(result: dict, first_step: int) -> dict[str, float]:
    steps = {s: m for s, m in result["steps"].items() if s >= first_step}
    # the server reports the policy version it generated with: step s samples with version s - 1
    versions = {s - 1 for s in steps}
    generate_s = sum(c["seconds"] for c in result["generate_calls"] if c["global_steps"] in versions)
    total = {key: sum(m.get(key, 0.0) for m in steps.values()) for key in ("timing_s/step", "timing_s/update_actor")}
    tokens = sum(m["perf/total_num_tokens"] for m in steps.values())
    outside = total["timing_s/step"] - total["timing_s/update_actor"] - generate_s
    timings = sorted({k for m in steps.values() for k in m if k.startswith("timing_s/")})
    return {
        "tokens/step": tokens / len(steps),
        "model generate s/step": generate_s / len(steps),
        **{k: sum(m.get(k, 0.0) for m in steps.values()) / len(steps) for k in timings},
        "outside s/step": outside / len(steps),
        "outside ms/token": 1000 * outside / tokens,
    }


GRPO_ANCHOR = [
    # verl's own single-turn GRPO: no plug-in manager, trainer mode, sampler or aux loss
    "actor_rollout_ref.rollout.agent.agent_loop_manager_class=null",
    "trainer.v1.trainer_mode=sync",
    "trainer.v1.sampler.custom_sampler.path=null",
    "trainer.v1.sampler.custom_sampler.name=null",
    "exgrpo.aux_sft_coef=0",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="training steps per run (step 1 is not counted)")
    parser.add_argument("--gsm8k", type=Path, default=SHARED_GSM8K if SHARED_GSM8K.is_file() else None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, metrics)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_step_"))
    gsm8k = args.gsm8k or write_jsonl(work / "gsm8k.jsonl", gsm8k_word_problems(64)[0])
    model = save_tiny_model(work / "tiny", "qwen2")
    probe_rows, single_turn, val = build_data(work, gsm8k)
    results = {
        "grpo (anchor)": summarise(run("grpo", work, model, single_turn, val, args.steps, GRPO_ANCHOR), 2),
        "exgrpo": summarise(run("exgrpo", work, model, probe_rows, val, args.steps, []), 2),
    }
    keys = list(dict.fromkeys(k for r in results.values() for k in r))
    print(f"{'per step, steps 2..' + str(args.steps):<34}" + "".join(f"{name:>16}" for name in results))
    for key in keys:
        print(f"{key:<34}" + "".join(f"{r.get(key, 0.0):>16.4f}" for r in results.values()))
    ratio = results["exgrpo"]["outside ms/token"] / results["grpo (anchor)"]["outside ms/token"]
    print(f"\nExGRPO / GRPO, time outside generation and the actor update per token: {ratio:.2f}x (goal <= 1.2x)")
    if args.keep:
        print(f"work folder: {work}")


if __name__ == "__main__":
    main()
