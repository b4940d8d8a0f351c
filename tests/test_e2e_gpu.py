"""The ExGRPO smoke run on one CUDA GPU without vLLM: stock main_ppo with the GPU recipe
(exgrpo_fsdp, the smoke student) and ``rollout.name=hf`` (run by scripts/gpu_checks.sh on a lent
GPU; skipped without CUDA)."""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch

from exgrpo_verl.testing import save_tiny_model
from tests.conftest import REPO_ROOT
from tests.ei_fixtures import GSM8K_MAIN, write_jsonl
from tests.test_e2e_cpu import metrics_by_step, run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_exgrpo_smoke_on_one_gpu_with_the_hf_rollout(tmp_path):
    gsm8k = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_MAIN * 4)
    model = save_tiny_model(tmp_path / "tiny", "qwen2")
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(tmp_path / "metrics.jsonl")}
    py = [sys.executable, "-m", "exgrpo_verl"]
    run([*py, "ei-build", "--dataset", "gsm8k", "--local-path", str(gsm8k), "--out-dir", "ei"], tmp_path / "ei.log",
        env, tmp_path)  # fmt: skip
    run([*py, "ei-eval-set", "--dataset", "gsm8k", "--local-path", str(gsm8k), "--limit", "2", "--out",
         "ei/val.parquet"], tmp_path / "val.log", env, tmp_path)  # fmt: skip
    run(
        [
            sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(REPO_ROOT / "recipes"),
            "--config-name", "exgrpo_fsdp", "student=smoke", f"actor_rollout_ref.model.path={model}",
            f"data.train_files={tmp_path / 'ei/rl_train.parquet'}", f"data.val_files={tmp_path / 'ei/val.parquet'}",
            "actor_rollout_ref.rollout.name=hf", "actor_rollout_ref.rollout.calculate_log_probs=true",
            # float32 on both sides, so the log-prob agreement below is a test of the weight sync
            "actor_rollout_ref.rollout.dtype=float32",
            "+actor_rollout_ref.actor.fsdp_config.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}",
            # no flash-attention needed
            "++actor_rollout_ref.model.override_config.attn_implementation=sdpa",
            "actor_rollout_ref.model.use_remove_padding=false",
            "trainer.total_training_steps=2", "trainer.save_freq=-1", "trainer.test_freq=-1",
            "trainer.logger=[console,file]", f"trainer.default_local_dir={tmp_path / 'ckpt'}",
            "data.max_response_length=1024", "exgrpo.probe_max_tokens=64", "exgrpo.final_max_tokens=128",
        ],
        tmp_path / "rl.log", env, tmp_path, timeout=900,
    )  # fmt: skip
    steps = metrics_by_step(tmp_path / "metrics.jsonl")
    assert any(key.startswith("val-core/gsm8k/") for key in steps[0])
    for step in (1, 2):
        metrics = steps[step]
        assert "exgrpo/p_full" in metrics and "exgrpo/dsu_fire_rate" in metrics
        assert math.isfinite(metrics["actor/grad_norm"]) and metrics["actor/grad_norm"] > 0
        assert metrics["actor/exgrpo/aux_nll_per_token"] > 0
        assert metrics["training/rollout_probs_diff_mean"] < 1e-2
