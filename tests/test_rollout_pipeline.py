"""One group end to end: agent loop → reward function → r_dsu → verl's GRPO advantage → verl's
PPO loss → backward and an optimizer step on a tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.utils.losses import ppo_loss

from exgrpo_verl.reward import compute_score
from exgrpo_verl.rollout.managers import apply_bonus_to_outputs
from exgrpo_verl.rollout.settings import ExGRPOSettings
from exgrpo_verl.testing import build_tiny_model, build_tokenizer
from exgrpo_verl.testing.actor import loss_batch, pad_rollouts, response_log_probs, sequence_log_probs
from exgrpo_verl.testing.servers import ScriptedServer
from tests.conftest import DEVICES
from tests.rollout_helpers import QUESTION, make_row, run_dialogues, trainer_config


def answers_right_after_probes(prompt: str) -> str:
    """A student that answers the question correctly only after at least two probe exchanges."""
    if QUESTION not in prompt:
        return "Let me think about that."
    return "\\boxed{5}" if prompt.count("Let me think about that.") >= 2 else "\\boxed{6}"


@pytest.mark.parametrize("device", DEVICES)
def test_group_to_optimizer_step(device):
    tokenizer = build_tokenizer("qwen2")
    row = make_row()
    outputs = run_dialogues(
        tokenizer, ScriptedServer(tokenizer, answers_right_after_probes), [(row, s) for s in range(4)]
    )

    # reward: verl merges the loop's extra fields into extra_info, the reward grades the final turn
    for output in outputs:
        solution = tokenizer.decode(output.response_ids, skip_special_tokens=True)
        extra_info = {**row["extra_info"], **output.extra_fields}
        output.reward_score = compute_score(
            row["data_source"], solution, row["reward_model"]["ground_truth"], extra_info
        )["score"]
    assert [o.reward_score for o in outputs] == [1.0, 1.0, 0.0, 0.0]  # A: 3 probes, B: 1 probe

    settings = ExGRPOSettings.from_trainer_config(trainer_config())
    apply_bonus_to_outputs(outputs, settings)  # P_full = 1 > ν·P_partial = 0: δ to the correct A's
    rewards = [o.reward_score for o in outputs]
    assert rewards == pytest.approx([1.2, 1.2, 0.0, 0.0])
    assert outputs[0].extra_fields["reward_extra_info"] == {
        "exgrpo_outcome": 1.0,
        "exgrpo_bonus": pytest.approx(0.2),
        "exgrpo_dsu_fired": True,
    }

    batch = pad_rollouts(
        [o.prompt_ids for o in outputs], [o.response_ids for o in outputs], [o.response_mask for o in outputs], 0
    )
    batch = {key: value.to(device) for key, value in batch.items()}
    last = batch["response_mask"].size(1) - 1 - torch.argmax(batch["attention_mask"].flip(1), dim=1)
    token_rewards = torch.zeros_like(batch["response_mask"], dtype=torch.float32)
    token_rewards[torch.arange(4), last] = torch.tensor(rewards, device=device)  # where verl puts the reward
    advantages, _ = compute_grpo_outcome_advantage(
        token_rewards, batch["response_mask"], index=np.array(["g"] * 4, dtype=object)
    )

    mean, std = 0.6, math.sqrt(4 * 0.6**2 / 3)  # unbiased std of [1.2, 1.2, 0, 0]
    expected = [(r - mean) / (std + 1e-6) for r in rewards]
    for row_index, value in enumerate(expected):
        masked = advantages[row_index][batch["response_mask"][row_index].bool()]
        assert torch.allclose(masked, torch.full_like(masked, value), atol=1e-5)
    assert advantages[batch["response_mask"] == 0].abs().sum() == 0

    model = build_tiny_model(tokenizer, "qwen2").to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        old = response_log_probs(sequence_log_probs(model, batch), batch)
    actor = omega_conf_to_dataclass(
        trainer_config(
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4", "actor_rollout_ref.actor.use_kl_loss=false"
        ).actor_rollout_ref.actor
    )
    data = loss_batch(batch, old_log_probs=old, advantages=advantages)
    loss, metrics = ppo_loss(actor, {"log_probs": sequence_log_probs(model, batch)}, data)
    before = [p.detach().clone() for p in model.parameters()]
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and "actor/pg_loss" in metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # on-policy first step: ratio 1, so the loss is -mean(advantage) over response tokens
    mask = batch["response_mask"].bool()
    assert loss.item() == pytest.approx(-(advantages[mask]).mean().item(), abs=1e-5)
