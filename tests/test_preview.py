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
    # the row's probe that states the answer is marked, and exclude (the default) never asks it
    assert out.count("6 probes, 1 flagged reveals answer (inverse); exgrpo.revealing_probes=exclude") == 2
    assert "inverse (reveals answer)" not in out and "[user, reveals answer]" not in out


def test_preview_marks_revealing_probes():
    from types import SimpleNamespace

    from exgrpo_verl.rollout.preview import _row_probes, _rules, _turns
    from exgrpo_verl.testing import build_tokenizer

    assert _rules(["cause", "inverse"], [False, True]) == "cause, inverse (reveals answer)"
    assert _rules([], []) == "none"
    row = make_row()
    del row["extra_info"]["probes"][0]["reveals_answer"]
    assert (
        _row_probes(row) == "6 probes, 1 flagged reveals answer (inverse), 1 without the flag (built before it existed)"
    )
    tokenizer = build_tokenizer("qwen2")
    ids = [tokenizer.encode(text, add_special_tokens=False) for text in ("p1", "a1", "p2", "a2", "q", "a3")]
    output = SimpleNamespace(
        prompt_ids=ids[0],
        response_ids=[t for part in ids[1:] for t in part],
        response_mask=[flag for part, flag in zip(ids[1:], (1, 0, 1, 0, 1), strict=True) for _ in part],
        extra_fields={"exgrpo_probe_reveals": [False, True]},
    )
    assert [role for role, _ in _turns(tokenizer, output)] == [
        "user",
        "student",
        "user, reveals answer",
        "student",
        "user",
        "student",
    ]


def test_preview_rejects_a_missing_model(tmp_path):
    data = tmp_path / "rl.parquet"
    pd.DataFrame([make_row()]).to_parquet(data)
    command = [sys.executable, "-m", "exgrpo_verl", "preview", "--data", str(data), "--model", str(tmp_path / "nope")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "not a local model directory" in result.stderr
