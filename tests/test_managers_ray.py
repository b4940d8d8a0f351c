"""The ExGRPO manager glue through verl's own managers and workers (Ray on the CPU), on both
trainer paths: r_dsu lands in the rewards verl trains on, and the metrics reach verl's channels."""

from __future__ import annotations

import time

import numpy as np
import pytest
import ray
import torch

from exgrpo_verl.rollout.managers import ExGRPOAgentLoopManager, number_sessions
from exgrpo_verl.testing import save_tiny_model
from exgrpo_verl.testing.servers import AnswerAfterProbes, ScriptedServer
from exgrpo_verl.testing.verl_config import compose_trainer_config
from tests.rollout_helpers import QUESTION, make_row

N = 4
PROMPTS = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    model_dir = save_tiny_model(tmp_path_factory.mktemp("tiny"), "qwen2")
    ray.init(num_cpus=16, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield str(model_dir)
    ray.shutdown()


def _config(model_dir: str, use_v1: bool):
    return compose_trainer_config(
        [
            f"actor_rollout_ref.model.path={model_dir}",
            f"actor_rollout_ref.rollout.n={N}",
            "actor_rollout_ref.rollout.name=vllm",
            "actor_rollout_ref.rollout.prompt_length=256",
            "actor_rollout_ref.rollout.response_length=1024",
            "actor_rollout_ref.rollout.agent.num_workers=1",
            "+actor_rollout_ref.rollout.agent.agent_loop_manager_class=exgrpo_verl.rollout.ExGRPOAgentLoopManager",
            "reward.custom_reward_function.path=pkg://exgrpo_verl.reward_fns.exgrpo_reward",
            "reward.custom_reward_function.name=compute_score",
            "reward.num_workers=1",
            f"trainer.use_v1={use_v1}",
            "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
            "+exgrpo.num_probes=3",
            "+exgrpo.partial_probes=1",
            "+exgrpo.probe_max_tokens=32",
            "+exgrpo.final_max_tokens=32",
            "+exgrpo.aux_sft_coef=0.0",
        ]
    )


def _server(model_dir: str) -> ScriptedServer:
    # Right after >= 2 probe answers: Scenario A (3 probes) right, Scenario B (1 probe) wrong.
    return ScriptedServer(model_dir, AnswerAfterProbes(QUESTION, "\\boxed{5}", "\\boxed{6}"))


def _rows():
    rows = [make_row(index=i) for i in range(PROMPTS)]
    return {
        "raw_prompt": np.array([r["prompt"] for r in rows] + [None], dtype=object)[:-1],
        "data_source": np.array([r["data_source"] for r in rows], dtype=object),
        "reward_model": np.array([r["reward_model"] for r in rows], dtype=object),
        "extra_info": np.array([r["extra_info"] for r in rows], dtype=object),
        "agent_name": np.array([r["agent_name"] for r in rows], dtype=object),
        "index": np.arange(PROMPTS),
        "uid": np.array([f"uid{i}" for i in range(PROMPTS)], dtype=object),
    }


def _reward_handles(config):
    from verl.experimental.reward_loop import RewardLoopManager

    return RewardLoopManager(config).reward_loop_worker_handles


def test_number_sessions():
    sessions, sizes = number_sessions(np.array(["a", "a", "b", "a", "b"], dtype=object))
    assert sessions.tolist() == [0, 1, 0, 2, 1] and sizes.tolist() == [3, 3, 2, 3, 2]


def test_legacy_trainer_path(cluster):
    from verl import DataProto

    config = _config(cluster, use_v1=False)
    manager = ExGRPOAgentLoopManager.create(
        config=config,
        llm_client=_server(cluster),
        teacher_client=None,
        reward_loop_worker_handles=_reward_handles(config),
    )
    prompts = DataProto.from_dict(non_tensors=_rows(), meta_info={"global_steps": 1})
    prompts = prompts.repeat(N, interleave=True)  # what RayPPOTrainer does
    output = manager.generate_sequences(prompts)

    rewards = output.batch["rm_scores"].sum(dim=1).tolist()
    assert rewards == pytest.approx([1.2, 1.2, 0.0, 0.0] * PROMPTS)
    assert output.non_tensor_batch["exgrpo_scenario"].tolist() == ["full", "full", "partial", "partial"] * PROMPTS
    assert output.non_tensor_batch["exgrpo_bonus"].tolist() == pytest.approx([0.2, 0.2, 0, 0] * PROMPTS)
    assert "exgrpo_bonus" in output.meta_info["reward_extra_keys"]
    timing = output.meta_info["timing"]
    assert timing["exgrpo/p_full"] == 1.0 and timing["exgrpo/p_partial"] == 0.0
    assert timing["exgrpo/dsu_fire_rate"] == 1.0
    # the bonus sits on the last response token, where verl put the outcome reward
    last = output.batch["attention_mask"][:, output.batch["prompts"].size(1) :].sum(dim=1) - 1
    assert torch.equal(
        output.batch["rm_scores"].nonzero()[:, 1], last[: len(last)][output.batch["rm_scores"].sum(1) > 0]
    )

    # validation batches get no bonus (they are padded with duplicate uids)
    val = DataProto.from_dict(non_tensors=_rows(), meta_info={"global_steps": 1, "validate": True}).repeat(N, True)
    assert manager.generate_sequences(val).batch["rm_scores"].sum(dim=1).tolist() == [1.0, 1.0, 0.0, 0.0] * PROMPTS


def test_v1_trainer_path(cluster):
    import transfer_queue as tq
    from verl.utils import tensordict_utils as tu

    from exgrpo_verl.rollout.v1_metrics import exgrpo_replay_buffer

    config = _config(cluster, use_v1=True)
    tq.init(config.transfer_queue)
    try:
        manager = ExGRPOAgentLoopManager.create(
            config=config,
            llm_client=_server(cluster),
            teacher_client=None,
            reward_loop_worker_handles=_reward_handles(config),
        )
        batch = tu.get_tensordict(_rows())
        tu.assign_non_tensor_data(batch, "global_steps", 1)
        # what the v1 trainer does before dispatch: register the prompts, then generate
        tq.kv_batch_put(
            keys=list(batch["uid"]),
            partition_id="train",
            tags=[{"is_prompt": True, "status": "pending", "global_steps": 1}] * PROMPTS,
        )
        manager.generate_sequences(batch)

        sampler = exgrpo_replay_buffer(
            trainer_mode="sync",
            trainer_config=config.trainer.v1.get("sync", {}),
            max_off_policy_threshold=None,
            max_off_policy_strategy="drop",
            sampler_kwargs={},
            poll_interval=0.2,
        )
        start = time.monotonic()
        sampled, metrics = sampler.sample(global_steps=1, partition_id="train", batch_size=PROMPTS)
        assert time.monotonic() - start < 300
        assert len(sampled.keys) == N * PROMPTS

        data = tq.kv_batch_get(keys=sampled.keys, partition_id="train", select_fields=["rm_scores", "extra_fields"])
        rewards = {key: float(t.sum()) for key, t in zip(sampled.keys, list(data["rm_scores"]), strict=True)}
        fields = {key: getattr(f, "data", f) for key, f in zip(sampled.keys, list(data["extra_fields"]), strict=True)}
        for key, reward in rewards.items():
            scenario = fields[key]["exgrpo_scenario"]
            assert reward == pytest.approx(1.2 if scenario == "full" else 0.0), key
            assert fields[key]["reward_extra_info"]["exgrpo_dsu_fired"] is True
        assert metrics["exgrpo/p_full"] == 1.0 and metrics["exgrpo/p_partial"] == 0.0
        assert metrics["exgrpo/dsu_fire_rate"] == 1.0
        assert metrics["exgrpo/dsu_bonus/mean"] == pytest.approx(0.1)
    finally:
        tq.close()
