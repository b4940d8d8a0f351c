"""The reward function loaded and called the way verl does it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
from verl.trainer.ppo.reward import get_custom_reward_fn

from exgrpo_verl.reward import CHOICES_KEY, FINAL_RESPONSE_KEY, compute_score


def _reward_config(path: str) -> OmegaConf:
    return OmegaConf.create(
        {"reward": {"custom_reward_function": {"path": path, "name": "compute_score", "reward_kwargs": {}}}}
    )


@pytest.fixture(params=["file", "pkg"])
def verl_loaded_reward(request, repo_root):
    path = str(repo_root / "reward_fns" / "exgrpo_reward.py") if request.param == "file" else None
    path = path or "pkg://exgrpo_verl.reward_fns.exgrpo_reward"
    fn = get_custom_reward_fn(_reward_config(path))
    assert fn is not None
    return fn


def test_loaded_by_verl_and_scores(verl_loaded_reward):
    result = verl_loaded_reward(data_source="gsm8k", solution_str="... #### 72", ground_truth="72", extra_info={})
    assert result == {"score": 1.0, "acc": True, "pred": "72"}


def test_reward_kwargs_reach_the_function(repo_root):
    config = _reward_config(str(repo_root / "reward_fns" / "exgrpo_reward.py"))
    config.reward.custom_reward_function.reward_kwargs = {"math_timeout_s": 2.0}
    fn = get_custom_reward_fn(config)
    assert fn(data_source="math", solution_str="\\boxed{\\frac{2}{4}}", ground_truth="\\frac12")["score"] == 1.0


def test_final_turn_only():
    """An answer planted in an earlier (probe) turn earns nothing; the final turn is graded."""
    dialogue = "probe answer: \\boxed{72}\nfinal: I am not sure."
    assert compute_score("gsm8k", dialogue, "72", {FINAL_RESPONSE_KEY: "I am not sure."})["score"] == 0.0
    assert compute_score("gsm8k", "x \\boxed{1}", "72", {FINAL_RESPONSE_KEY: "so \\boxed{72}"})["score"] == 1.0
    assert compute_score("gsm8k", "\\boxed{72}", "72", {FINAL_RESPONSE_KEY: ""})["score"] == 0.0
    assert compute_score("gsm8k", "\\boxed{72}", "72", {"num_turns": 2})["score"] == 1.0


def test_choices_come_from_extra_info():
    extra = {CHOICES_KEY: {"label": ["A", "B"], "text": ["ocean", "desert"]}}
    assert compute_score("openbookqa", "The answer is desert", "B", extra)["score"] == 1.0


def _batch(tokenizer, rows: list[dict]) -> DataProto:
    """A DataProto shaped like verl's agent-loop output (left-padded prompts, right-padded responses)."""
    prompt_len, response_len = 8, 48
    prompts, responses, masks = [], [], []
    for row in rows:
        p = tokenizer.encode("Q?", add_special_tokens=False)[:prompt_len]
        r = tokenizer.encode(row["response"], add_special_tokens=False)[:response_len]
        prompts.append([tokenizer.pad_token_id] * (prompt_len - len(p)) + p)
        responses.append(r + [tokenizer.pad_token_id] * (response_len - len(r)))
        masks.append([0] * (prompt_len - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (response_len - len(r)))
    batch = {
        "prompts": torch.tensor(prompts),
        "responses": torch.tensor(responses),
        "attention_mask": torch.tensor(masks),
    }
    non_tensor = {
        "data_source": np.array([row["data_source"] for row in rows], dtype=object),
        "reward_model": np.array([{"ground_truth": row["gold"]} for row in rows], dtype=object),
        "extra_info": np.array([dict(row.get("extra_info", {})) for row in rows], dtype=object),
        "tool_extra_fields": np.array([row.get("agent_fields", {}) for row in rows], dtype=object),
    }
    return DataProto.from_dict(tensors=batch, non_tensors=non_tensor)


def test_naive_reward_manager_scores_a_batch(qwen_tokenizer, repo_root):
    """verl's naive reward manager (the default) decodes responses and merges agent-loop extra
    fields into extra_info: the final-turn key must reach compute_score through that path."""
    config = _reward_config(str(repo_root / "reward_fns" / "exgrpo_reward.py"))
    fn = get_custom_reward_fn(config)
    manager_cls = get_reward_manager_cls("naive")
    rows = [
        {"data_source": "gsm8k", "gold": "72", "response": "so #### 72"},
        {"data_source": "gsm8k", "gold": "72", "response": "so #### 71"},
        {"data_source": "math", "gold": "\\frac{1}{2}", "response": "\\boxed{0.5}"},
        {"data_source": "commonsense_qa", "gold": "C", "response": "The answer is (C)."},
        {"data_source": "strategyqa", "gold": "no", "response": "\\boxed{No}"},
        # multi-turn: the planted \boxed{72} in the probe turn must not count
        {
            "data_source": "gsm8k",
            "gold": "72",
            "response": "user probe assistant \\boxed{72} user Q assistant I give up",
            "agent_fields": {FINAL_RESPONSE_KEY: "I give up"},
        },
        {
            "data_source": "gsm8k",
            "gold": "72",
            "response": "user probe assistant 3 user Q assistant \\boxed{72}",
            "agent_fields": {FINAL_RESPONSE_KEY: "\\boxed{72}"},
        },
    ]
    data = _batch(qwen_tokenizer, rows)

    async def score_all():
        manager = manager_cls(config=config, tokenizer=qwen_tokenizer, compute_score=fn)
        return await asyncio.gather(*(manager.run_single(data[i : i + 1]) for i in range(len(data))))

    results = asyncio.run(score_all())
    assert [r["reward_score"] for r in results] == [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    assert results[0]["reward_extra_info"] == {"score": 1.0, "acc": True, "pred": "72"}
    assert manager_cls.assemble_rm_scores(data, [r["reward_score"] for r in results]).sum().item() == 5.0
