"""`python -m exgrpo_verl preview` on a tiny local model, in a subprocess."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

from exgrpo_verl.testing import save_tiny_model
from tests.rollout_helpers import make_row


def test_preview_prints_dialogues_rewards_and_advantages(tmp_path):
    data = tmp_path / "rl.parquet"
    pd.DataFrame([make_row(index=i) for i in range(2)]).to_parquet(data)
    model = save_tiny_model(tmp_path / "tiny", "gemma")
    command = [
        sys.executable, "-m", "exgrpo_verl", "preview", "--data", str(data), "--model", str(model),
        "-n", "4", "--rows", "2", "--response-length", "512",
        "--override", "++exgrpo.num_probes=2", "--override", "++exgrpo.partial_probes=1",
        "--override", "++exgrpo.probe_max_tokens=6", "--override", "++exgrpo.final_max_tokens=6",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.count("=== Question") == 2
    assert out.count("--- Trajectory") == 8
    assert out.count("Scenario full") == 4 and out.count("Scenario partial") == 4
    for section in (
        "[user]",
        "[student]",
        "Final answer:",
        "R_outcome:",
        "r_dsu:",
        "GRPO advantage:",
        "P_full",
        "P_partial",
    ):
        assert section in out
    assert "How many apples does he have?" in out


def test_preview_rejects_a_missing_model(tmp_path):
    data = tmp_path / "rl.parquet"
    pd.DataFrame([make_row()]).to_parquet(data)
    command = [sys.executable, "-m", "exgrpo_verl", "preview", "--data", str(data), "--model", str(tmp_path / "nope")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "not a local model directory" in result.stderr
