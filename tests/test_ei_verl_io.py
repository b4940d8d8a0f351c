"""The stage-1 parquet files load through verl's own dataset classes (tokenizers built locally)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from exgrpo_verl.__main__ import main as exgrpo_main
from exgrpo_verl.datasets import LoadResult, load_records
from exgrpo_verl.probes.pipeline import BuildConfig, build
from exgrpo_verl.probes.teacher import EndpointConfig
from exgrpo_verl.prompts import question_messages
from exgrpo_verl.schema import PROBE_AGENT_NAME, SINGLE_TURN_AGENT_NAME, parse_probes
from exgrpo_verl.testing import build_tokenizer
from exgrpo_verl.testing.openai_stub import StubServer
from tests.ei_fixtures import dataset_files


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("verl_io")
    files = dataset_files(root / "data")
    paths: dict[str, Path] = {}
    # Teacher-free GSM8K (RL rows with template probes, SFT from the dataset rationale).
    assert (
        exgrpo_main(
            [
                "ei-build",
                "--dataset=gsm8k",
                *[f"--local-path={p}" for p in files["gsm8k"][0]],
                f"--out-dir={root / 'tf'}",
            ]
            + ["--no-progress"]
        )
        == 0
    )
    paths["tf_rl"], paths["tf_sft"] = root / "tf/rl_train.parquet", root / "tf/sft_train.parquet"
    # A teacher build over multiple-choice questions, in both SFT layouts.
    records = load_records("arc_challenge", "train", local_paths=files["arc_challenge"][0]).records
    with StubServer(lambda body: "The reason is plain. \\boxed{B}") as stub:
        for layout in ("per_probe", "dialogue"):
            config = BuildConfig(
                dataset="arc_challenge",
                out_dir=root / layout,
                teacher=EndpointConfig(stub.base_url, "teacher", concurrency=4),
                probe_source="template",
                consistency_filter=False,
                sft_layout=layout,
                progress=False,
            )
            build(config, LoadResult(records=list(records)))
    paths["teacher_rl"] = root / "per_probe/rl_train.parquet"
    paths["per_probe_sft"] = root / "per_probe/sft_train.parquet"
    paths["dialogue_sft"] = root / "dialogue/sft_train.parquet"
    # Single-turn eval rows.
    assert (
        exgrpo_main(
            [
                "ei-eval-set",
                "--dataset=math",
                f"--local-path={files['math'][0][0]}",
                f"--out={root / 'math_test.parquet'}",
            ]
        )
        == 0
    )
    paths["eval"] = root / "math_test.parquet"
    return paths


def _rl_dataset(path: Path, tmp_path: Path, style: str):
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "max_prompt_length": 2048,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": 1,
            "truncation": "error",
            "cache_dir": str(tmp_path / "verl_cache"),
        }
    )
    return RLHFDataset(data_files=str(path), tokenizer=build_tokenizer(style), config=config)


@pytest.mark.parametrize("which", ["tf_rl", "teacher_rl"])
def test_rl_parquet_loads_in_rlhf_dataset(outputs, tmp_path, which):
    dataset = _rl_dataset(outputs[which], tmp_path, "qwen2")
    assert len(dataset) > 0  # nothing was dropped as too long or unreadable
    for i in range(len(dataset)):
        item = dataset[i]
        assert item["agent_name"] == PROBE_AGENT_NAME
        assert item["raw_prompt"][-1]["role"] == "user" and "\\boxed{}" in item["raw_prompt"][-1]["content"]
        probes = parse_probes(item["extra_info"], i)
        assert probes and all(p["question"] for p in probes)
        assert item["index"] == item["extra_info"]["index"]
        assert item["reward_model"]["ground_truth"]
    first = dataset[0]
    if which == "teacher_rl":
        assert all(
            p["teacher_answer"] == "The reason is plain. \\boxed{B}" for p in parse_probes(first["extra_info"], 0)
        )
        assert first["extra_info"]["choices"]["label"] == ["A", "B", "C", "D"]


def test_eval_parquet_is_single_turn(outputs, tmp_path):
    dataset = _rl_dataset(outputs["eval"], tmp_path, "llama3")
    assert len(dataset) == 2
    item = dataset[0]
    assert item["agent_name"] == SINGLE_TURN_AGENT_NAME and "probes" not in item["extra_info"]
    assert item["raw_prompt"] == question_messages("What is $1+1$?", "math")
    assert item["reward_model"]["ground_truth"] == "2"


@pytest.mark.parametrize("which", ["tf_sft", "per_probe_sft", "dialogue_sft"])
@pytest.mark.parametrize("style", ["qwen2", "gemma"])  # Gemma's template rejects a system turn
def test_sft_parquet_loads_in_multiturn_sft_dataset(outputs, which, style):
    import pandas as pd
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    tokenizer = build_tokenizer(style)
    config = OmegaConf.create(
        {"messages_key": "messages", "pad_mode": "no_padding", "max_length": 8192, "truncation": "error"}
        | {"enable_thinking_default": None}
    )
    dataset = MultiTurnSFTDataset(parquet_files=str(outputs[which]), tokenizer=tokenizer, config=config)
    frame = pd.read_parquet(outputs[which])
    assert len(dataset) == len(frame) > 0
    for i in range(len(dataset)):
        item = dataset[i]
        trained = tokenizer.decode(item["input_ids"][item["loss_mask"].bool()].tolist())
        assistant = [turn["content"] for turn in frame["messages"][i] if turn["role"] == "assistant"]
        assert assistant and all(content.strip() in trained for content in assistant)
        user = [turn["content"] for turn in frame["messages"][i] if turn["role"] == "user"]
        assert not any(content in trained for content in user)  # only assistant turns are trained
