"""Per-step ExGRPO metrics on verl's v1 trainer, through its custom-sampler hook.

The v1 trainer reads no metrics from the rollout side; the one dict a plug-in can add to is the
sampler's (``replay_buffer.sample`` returns ``(batch, metrics)`` and the trainer logs those
metrics each step). ``trainer.v1.sampler.custom_sampler`` names :func:`exgrpo_replay_buffer`, which
builds verl's own replay buffer for the trainer mode (sync or async) with one addition: after
sampling a training batch it reads the batch's extra fields from the TransferQueue and adds the
``exgrpo/*`` metrics.

verl hands a custom sampler no DAPO settings (``algorithm.filter_groups``), so group filtering
is off with it.
"""

from __future__ import annotations

from typing import Any

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from exgrpo_verl.rollout.metrics import rollout_metrics


def trajectories_from_tq(keys: list[str], tags: list[dict], partition_id: str) -> list[dict[str, Any]]:
    """The sampled trajectories as the dicts :func:`rollout_metrics` reads (padding rows skipped)."""
    import transfer_queue as tq

    real = [key for key, tag in zip(keys, tags, strict=False) if not (tag or {}).get("is_padding", False)]
    if not real:
        return []
    data = tq.kv_batch_get(keys=real, partition_id=partition_id, select_fields=["extra_fields", "num_turns"])
    trajectories = []
    for key, fields, turns in zip(real, list(data["extra_fields"]), list(data["num_turns"]), strict=True):
        fields = dict(getattr(fields, "data", fields) or {})
        turns = getattr(turns, "data", turns)
        reward_info = fields.pop("reward_extra_info", None) or {}
        uid = key.rsplit("_", 2)[0]  # keys are {uid}_{session_id}_{index}
        trajectories.append({**fields, **reward_info, "uid": uid, "num_turns": int(turns)})
    return trajectories


class _ExGRPOMetrics:
    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> tuple[Any, dict]:
        batch, metrics = super().sample(global_steps, partition_id, batch_size)  # type: ignore[misc]
        if partition_id == "train" and batch.keys:
            metrics.update(rollout_metrics(trajectories_from_tq(list(batch.keys), list(batch.tags), partition_id)))
        return batch, metrics


class ExGRPOReplayBuffer(_ExGRPOMetrics, ReplayBuffer):
    """verl's sync replay buffer plus ExGRPO metrics."""


class ExGRPOReplayBufferAsync(_ExGRPOMetrics, ReplayBufferAsync):
    """verl's async replay buffer plus ExGRPO metrics."""


def exgrpo_replay_buffer(trainer_mode: str, **kwargs: Any) -> ReplayBuffer:
    """The custom-sampler entry point: verl's buffer class for ``trainer_mode``, with ExGRPO metrics."""
    cls = ExGRPOReplayBuffer if trainer_mode == "sync" else ExGRPOReplayBufferAsync
    return cls(trainer_mode=trainer_mode, **kwargs)
