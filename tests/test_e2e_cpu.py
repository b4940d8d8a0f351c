"""The README's walkthrough, end to end, on the CPU with stock verl entry points:

EI data from GSM8K rows -> SFT warm-up (``run_sft_warmup.sh``: torchrun -m verl.trainer.sft_trainer)
-> ExGRPO (``run_exgrpo_fsdp.sh``: python -m verl.trainer.main_ppo, exgrpo recipe, hf rollout, CPU
platform) from the SFT checkpoint -> a rerun that resumes -> ``python -m exgrpo_verl eval`` on the
exported checkpoint. Metrics come from verl's own file logger.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from exgrpo_verl.testing import save_tiny_model
from tests.conftest import REPO_ROOT, SHARED_DATA, shared_data_present
from tests.ei_fixtures import gsm8k_word_problems, write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.reads_shared_data]

RECIPES = REPO_ROOT / "recipes"
SCENARIO_REWARD = REPO_ROOT / "tests" / "scenario_reward.py"
QUESTIONS = 12  # GSM8K questions the walkthrough builds from: SFT and RL rows for more than one batch


def run(command: list[str], log: Path, env: dict[str, str], cwd: Path, timeout: int = 600) -> str:
    with log.open("w") as out:
        result = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    text = log.read_text(errors="replace")
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command[:4])} … exited {result.returncode}; last lines of {log}:\n{text[-6000:]}")
    return text


def metrics_by_step(path: Path) -> dict[int, dict[str, float]]:
    """verl's file logger: one JSON object per logged step."""
    steps: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        steps.setdefault(int(record["step"]), {}).update(record["data"])
    return steps


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    assert tensors, f"no weights in {folder}"
    return tensors


def differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    assert a.keys() == b.keys()
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    """Runs every stage once; the tests below read what each left behind."""
    work = tmp_path_factory.mktemp("walkthrough")
    # GSM8K with its Socratic sub-questions: decomposition probes carry gold answers, which the
    # teacher-free build turns into teacher answers for L_SFT-aux
    if shared_data_present():
        test, socratic = SHARED_DATA / "gsm8k/test.jsonl", SHARED_DATA / "gsm8k/test_socratic.jsonl"
    else:  # the project's own GSM8K-format rows: as many questions as the build below takes
        main, socratic_rows = gsm8k_word_problems(QUESTIONS)
        test = write_jsonl(work / "gsm8k.jsonl", main)
        socratic = write_jsonl(work / "gsm8k_socratic.jsonl", socratic_rows)
    model = save_tiny_model(work / "tiny", "qwen2")
    env = {**os.environ, "STUDENT": "cpu", "DATA_DIR": str(work / "ei"), "PYTHON": sys.executable}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    py = [sys.executable, "-m", "exgrpo_verl"]
    logs = work / "logs"
    logs.mkdir()

    # 1. EI data (teacher-free) and the single-turn validation set
    run(
        [
            *py,
            "ei-build",
            "--dataset",
            "gsm8k",
            "--split",
            "test",
            "--local-path",
            str(test),
            "--local-path",
            str(socratic),
            "--limit",
            str(QUESTIONS),
            "--out-dir",
            "ei",
        ],  # fmt: skip
        logs / "ei.log",
        env,
        work,
    )
    run(
        [
            *py,
            "ei-eval-set",
            "--dataset",
            "gsm8k",
            "--local-path",
            str(test),
            "--limit",
            "3",
            "--out",
            "ei/val.parquet",
        ],
        logs / "val.log",
        env,
        work,
    )

    # 2. SFT warm-up: 2 steps from the tiny model
    sft_env = {**env, "MODEL_PATH": str(model), "CKPT_DIR": str(work / "sft")}
    run(["bash", str(RECIPES / "run_sft_warmup.sh"), "trainer.total_training_steps=2"], logs / "sft.log", sft_env, work)

    # 3. ExGRPO from the SFT checkpoint: validation first, 3 steps, a checkpoint at step 3
    rl_env = {
        **env,
        "SFT_DIR": str(work / "sft"),
        "CKPT_DIR": str(work / "rl"),
        "VERL_FILE_LOGGER_PATH": str(work / "rl_first.jsonl"),
    }
    common = ["trainer.logger=[console,file]", "trainer.save_freq=3", "trainer.test_freq=3"]
    run(
        ["bash", str(RECIPES / "run_exgrpo_fsdp.sh"), "trainer.total_training_steps=3", *common],
        logs / "rl_first.log",
        rl_env,
        work,
    )

    # 4. the same command asked for one more step resumes from the step-3 checkpoint
    rl_env["VERL_FILE_LOGGER_PATH"] = str(work / "rl_resumed.jsonl")
    resumed_log = run(
        [
            "bash",
            str(RECIPES / "run_exgrpo_fsdp.sh"),
            "trainer.total_training_steps=4",
            *common,
            "trainer.val_before_train=false",
        ],
        logs / "rl_resumed.log",
        rl_env,
        work,
    )

    # 5. a Scenario-A-wins reward and lambda = 0: the bonus in the trained rewards, no aux term
    bonus_env = {
        **env,
        "SFT_DIR": str(work / "sft"),
        "CKPT_DIR": str(work / "rl_bonus"),
        "VERL_FILE_LOGGER_PATH": str(work / "rl_bonus.jsonl"),
    }
    run(
        [
            "bash",
            str(RECIPES / "run_exgrpo_fsdp.sh"),
            "trainer.total_training_steps=1",
            "trainer.logger=[console,file]",
            "trainer.val_before_train=false",
            "trainer.test_freq=-1",
            "trainer.save_freq=-1",
            "exgrpo.aux_sft_coef=0",
            f"reward.custom_reward_function.path={SCENARIO_REWARD}",
        ],
        logs / "rl_bonus.log",
        bonus_env,
        work,
    )

    # 6. eval on the latest ExGRPO checkpoint's Hugging Face copy
    latest = subprocess.run(
        ["bash", str(RECIPES / "latest_hf.sh"), str(work / "rl")], capture_output=True, text=True, check=True
    ).stdout.strip()
    run(
        [
            *py,
            "eval",
            "--model",
            latest,
            "--backend",
            "hf",
            "--datasets",
            "gsm8k",
            "--local-path",
            f"gsm8k={test}",
            "--limit",
            "2",
            "--max-tokens",
            "16",
            "--out",
            "results.json",
            "--no-progress",
        ],
        logs / "eval.log",
        env,
        work,
    )
    return {
        "work": work,
        "model": model,
        "first": metrics_by_step(work / "rl_first.jsonl"),
        "resumed": metrics_by_step(work / "rl_resumed.jsonl"),
        "resumed_log": resumed_log,
        "bonus": metrics_by_step(work / "rl_bonus.jsonl"),
        "latest": Path(latest),
    }


def test_sft_checkpoint_is_where_exgrpo_starts(walkthrough):
    work = walkthrough["work"]
    assert (work / "sft/latest_checkpointed_iteration.txt").read_text().strip() == "2"
    sft = weights(work / "sft/global_step_2/huggingface")
    assert differ(sft, weights(walkthrough["model"]))  # SFT trained


def test_exgrpo_logs_the_method_and_trains(walkthrough):
    first = walkthrough["first"]
    assert sorted(first) == [0, 1, 2, 3]  # step 0: validation before training
    assert any(key.startswith("val-core/gsm8k/") for key in first[0])
    for step in (1, 2, 3):
        metrics = first[step]
        for key in ("exgrpo/p_full", "exgrpo/p_partial", "exgrpo/dsu_fire_rate", "exgrpo/truncated/fraction"):
            assert key in metrics, f"step {step}: {key} missing"
        assert math.isfinite(metrics["actor/grad_norm"]) and metrics["actor/grad_norm"] > 0
        # lambda = 0.1 in the recipe: the aux term is trained on every step that has teacher rows
        if metrics["exgrpo/aux/teacher_rows"] > 0:
            assert 0 < metrics["actor/exgrpo/aux_nll_per_token"] < math.inf
        else:
            assert "actor/exgrpo/aux_nll_per_token" not in metrics
        # the hf rollout samples from the policy the trainer scores (weights synced every step); the cpu
        # student takes the rollout's log-probs as the old ones, and the update's forward measures the gap
        assert "timing_s/old_log_prob" not in metrics or metrics["timing_s/old_log_prob"] < 1.0
        assert 0 <= metrics["actor/exgrpo/rollout_probs_diff_mean"] < 1e-2
        # one optimiser update a step, as the cpu student's recipe says (2 prompts, mini-batch of 2): the
        # teacher-forced rows join the dialogues' mini-batch instead of making verl split off another
        # one (its rule: mini-batches of ppo_mini_batch_size x n = 8 rows, padding to a multiple of 8)
        rows = 2 * 4 + metrics["exgrpo/aux/teacher_rows"]
        assert metrics["exgrpo/update/mini_batches"] == 1
        assert metrics["actor/exgrpo/mini_batch_rows"] == metrics["exgrpo/update/rows_per_mini_batch"]
        assert rows <= metrics["actor/exgrpo/mini_batch_rows"] < rows + 4
    assert any(key.startswith("val-core/gsm8k/") for key in first[3])  # test_freq=3
    assert sum(first[step]["exgrpo/aux/teacher_rows"] for step in (1, 2, 3)) > 0


def test_rerun_resumes_from_the_checkpoint(walkthrough):
    work, resumed = walkthrough["work"], walkthrough["resumed"]
    assert sorted(resumed) == [4]  # continues the step count, nothing repeated
    assert "global_step_3" in walkthrough["resumed_log"]
    step3 = weights(work / "rl/global_step_3/actor/huggingface")
    step4 = weights(work / "rl/global_step_4/actor/huggingface")
    assert differ(step3, step4)
    assert differ(weights(work / "sft/global_step_2/huggingface"), step3)
    assert walkthrough["latest"] == work / "rl/global_step_4/actor/huggingface"


def test_scenario_a_win_earns_the_bonus_verl_trains_on(walkthrough):
    metrics = walkthrough["bonus"][1]
    assert metrics["exgrpo/p_full"] == 1.0 and metrics["exgrpo/p_partial"] == 0.0
    assert metrics["exgrpo/dsu_fire_rate"] == 1.0
    # outcome 1 + delta 0.2 on full dialogues, 0 on partial ones: what GRPO normalises
    assert metrics["critic/score/max"] == pytest.approx(1.2) and metrics["critic/score/min"] == 0.0
    assert metrics["critic/advantages/max"] > 0 > metrics["critic/advantages/min"]
    # lambda = 0: no teacher rows, no aux term
    assert metrics["exgrpo/aux/teacher_rows"] == 0 and "actor/exgrpo/aux_nll_per_token" not in metrics


def test_exported_checkpoint_loads_and_evaluates(walkthrough):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    latest = walkthrough["latest"]
    AutoModelForCausalLM.from_pretrained(latest)
    AutoTokenizer.from_pretrained(latest)
    results = json.loads((walkthrough["work"] / "results.json").read_text())
    assert "gsm8k" in json.dumps(results)
