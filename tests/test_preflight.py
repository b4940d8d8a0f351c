"""The run scripts' preflight: training data smaller than one batch stops with one line, before verl."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exgrpo_verl.preflight import HydraCommand, parse_command, preflight
from tests.test_recipes import RECIPES, printed_command, run_script


def rows_file(path: Path, count: int) -> Path:
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    pq.write_table(pa.table({"messages": [messages] * count}), path)
    return path


def rl_command(tmp_path: Path, *overrides: str, rows: int = 5) -> list[str]:
    train = rows_file(tmp_path / "rl_train.parquet", rows)
    val = rows_file(tmp_path / "val.parquet", 2)
    return printed_command(
        "run_exgrpo_fsdp.sh", *overrides, cwd=tmp_path, STUDENT="cpu", TRAIN_FILES=train, VAL_FILES=val, MODEL_PATH="m"
    )


def test_the_command_is_read_after_any_launcher():
    recipes = str(RECIPES)
    argv = ["env", "VERL_PLATFORM=cpu", sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node=1", "-m", "verl.trainer.sft_trainer", "--config-path", recipes,
            "--config-name=sft_warmup", "sft_student=cpu", "data.train_batch_size=3"]  # fmt: skip
    overrides = ["sft_student=cpu", "data.train_batch_size=3"]
    assert parse_command(argv) == HydraCommand("SFT data", recipes, "sft_warmup", overrides)
    assert parse_command(["python", "-m", "verl.trainer.main_ppo", "-cp", recipes, "-cn", "x"]).what == "RL data"
    assert parse_command(["python", "-m", "exgrpo_verl", "eval"]) is None
    assert parse_command(["python", "-m", "verl.trainer.main_ppo", "a=1"]) is None  # no recipe folder named


def test_a_three_row_sft_file_stops_the_script_with_one_line(tmp_path):
    sft = rows_file(tmp_path / "sft_train.parquet", 3)
    result = run_script("run_sft_warmup.sh", cwd=tmp_path, STUDENT="cpu", SFT_FILES=sft, DRY_RUN="0")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert str(sft) in result.stderr and "3 rows" in result.stderr and "data.train_batch_size=4" in result.stderr
    assert "ZeroDivisionError" not in result.stderr


def test_enough_rows_or_a_smaller_batch_lets_the_script_launch(tmp_path):
    sft = rows_file(tmp_path / "sft_train.parquet", 3)
    launched = run_script(
        "run_sft_warmup.sh", "data.train_batch_size=3", cwd=tmp_path, STUDENT="cpu", SFT_FILES=sft, DRY_RUN="0",
        TORCHRUN="echo launched:",
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    assert launched.stdout.startswith("launched:") and "-m verl.trainer.sft_trainer" in launched.stdout
    assert launched.stderr == ""


def test_rl_rows_are_checked_against_the_composed_batch_size(tmp_path):
    assert preflight(rl_command(tmp_path, rows=5)) is None  # the cpu student's batch is 2
    with pytest.raises(ValueError, match=r"RL data .*rl_train\.parquet has 5 rows, .*data\.train_batch_size=8\)"):
        preflight(rl_command(tmp_path, "data.train_batch_size=8", rows=5))
    capped = r"5 rows, 1 after data\.train_max_samples=1, .*pass data\.train_batch_size=1$"
    with pytest.raises(ValueError, match=capped):
        preflight(rl_command(tmp_path, "data.train_max_samples=1", rows=5))


def test_every_file_of_a_list_is_counted(tmp_path):
    first, second = rows_file(tmp_path / "a.parquet", 2), rows_file(tmp_path / "b.parquet", 1)
    command = printed_command("run_sft_warmup.sh", cwd=tmp_path, STUDENT="cpu", SFT_FILES=f"{first},{second}")
    with pytest.raises(ValueError, match=r"\(.*a\.parquet: 2 rows, .*b\.parquet: 1 row\) has 3 rows in all"):
        preflight(command)
    third = rows_file(tmp_path / "c.parquet", 1)
    command = printed_command("run_sft_warmup.sh", cwd=tmp_path, STUDENT="cpu", SFT_FILES=f"{first},{second},{third}")
    assert preflight(command) is None


def test_a_damaged_file_is_named(tmp_path):
    (tmp_path / "sft_train.parquet").write_text("not parquet")
    result = run_script("run_sft_warmup.sh", cwd=tmp_path, STUDENT="cpu", DATA_DIR=tmp_path, DRY_RUN="0")
    assert result.returncode == 2
    assert f"{tmp_path / 'sft_train.parquet'}: not a readable parquet file" in result.stderr


def test_what_it_cannot_check_is_left_to_verl(tmp_path):
    command = rl_command(tmp_path)
    assert "could not compose" in preflight([*command, "no_such_group=x"])
    remote_files = "data.train_files=hdfs://data/rl.parquet"
    remote = [remote_files if arg.startswith("data.train_files=") else arg for arg in command]
    assert preflight([*remote, "data.train_batch_size=1000"]) is None  # row count unknown: not refused
    cli = subprocess.run(
        [sys.executable, "-m", "exgrpo_verl", "preflight", "--", *command, "no_such_group=x"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 0 and cli.stderr.startswith("exgrpo preflight: not checked: could not compose")
