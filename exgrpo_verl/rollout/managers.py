"""verl glue for ExGRPO groups: one manager class for both trainer paths.

``actor_rollout_ref.rollout.agent.agent_loop_manager_class=exgrpo_verl.rollout.ExGRPOAgentLoopManager``
names it; its ``create`` builds the variant for the trainer that is running:

* v1 trainer (``trainer.use_v1=True``, the default): verl's TransferQueue worker runs all n
  sessions of a uid in one coroutine and stores each trajectory as soon as it is scored. Our worker
  subclass holds a group's trajectories at a barrier after scoring, applies r_dsu once all n have
  arrived (a failed session arrives empty), then lets verl store them. The ``"finished"`` tag that
  makes a group sampleable is written only after that.
* legacy trainer (``trainer.use_v1=False``): the manager sees the whole repeated batch. It numbers
  each uid's rows (``session_id``, as v1 does) before generation and adds r_dsu to ``rm_scores``
  after; per-step metrics go out through the timing dict, the only channel verl reads from it.

Both need the reward while the rollout runs (rule-based reward, or a reward model on its own
resource pool); with a colocated reward model verl scores after sampling and no manager can add
the bonus, so that configuration is refused at start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import numpy as np
import ray
import torch
from verl import DataProto
from verl.experimental.agent_loop.agent_loop import AgentLoopManager, AgentLoopOutput
from verl.utils.ray_utils import auto_await

from exgrpo_verl.rollout.agent_loop import GROUP_SIZE_KEY, SCENARIO_FIELD, SESSION_KEY
from exgrpo_verl.rollout.bonus import GroupBonus
from exgrpo_verl.rollout.group_rewards import BONUS_INFO_KEYS, batch_bonus, bonus_info, group_bonus
from exgrpo_verl.rollout.metrics import rollout_metrics
from exgrpo_verl.rollout.settings import ExGRPOSettings

logger = logging.getLogger(__name__)

REWARD_INFO = "reward_extra_info"


def _require_streaming_reward(settings: ExGRPOSettings, reward_loop_worker_handles: Any) -> None:
    if settings.dsu_delta and reward_loop_worker_handles is None:
        raise ValueError(
            "ExGRPO's r_dsu bonus needs rewards computed during rollout: use a rule-based reward "
            "(reward.reward_model.enable=False) or give the reward model its own resource pool "
            "(reward.reward_model.enable_resource_pool=True); or set exgrpo.dsu_delta=0"
        )


def _require_aux_trainer(settings: ExGRPOSettings, config: Any) -> None:
    """L_SFT-aux rides on extra rows and a loss only the exgrpo_sync trainer installs."""
    if settings.aux_sft_coef <= 0:
        return
    from exgrpo_verl.training.trainer import TRAINER_MODE

    if not config.trainer.get("use_v1", True) or config.trainer.v1.get("trainer_mode") != TRAINER_MODE:
        raise ValueError(
            f"exgrpo.aux_sft_coef={settings.aux_sft_coef} needs the v1 trainer in its ExGRPO mode: set "
            f"trainer.use_v1=true trainer.v1.trainer_mode={TRAINER_MODE} (or exgrpo.aux_sft_coef=0)"
        )


def apply_bonus_to_outputs(outputs: list[AgentLoopOutput], settings: ExGRPOSettings) -> GroupBonus:
    """Add r_dsu to the scored final outputs of one group, in place (v1 path); returns the group's result."""
    outcomes = [float(o.reward_score or 0.0) for o in outputs]
    result = group_bonus(outcomes, [o.extra_fields.get(SCENARIO_FIELD) for o in outputs], settings)
    for output, outcome, bonus in zip(outputs, outcomes, result.bonuses, strict=True):
        output.reward_score = outcome + bonus
        output.extra_fields.setdefault(REWARD_INFO, {}).update(bonus_info(outcome, bonus, result.fired))
    return result


def validation_sampling_params(sampling_params: dict, settings: ExGRPOSettings) -> dict:
    """Validation asks the question alone (single-turn); its answer gets ``exgrpo.val_max_tokens``, by
    default the budget of the final answer in training (``exgrpo.final_max_tokens``), not the whole
    dialogue's ``data.max_response_length``: the same question with the same budget, and a validation
    that does not wait for answers that never stop. A ``max_tokens`` already set wins."""
    if sampling_params.get("max_tokens") is not None:
        return sampling_params
    return {**sampling_params, "max_tokens": settings.validation_max_tokens}


class _GroupBarrier:
    """Collects a uid group's scored final outputs; the last arrival applies the bonus."""

    def __init__(self, size: int, settings: ExGRPOSettings) -> None:
        self.size = size
        self.settings = settings
        self.arrived: dict[int, AgentLoopOutput | None] = {}
        self.released = asyncio.Event()

    def arrive(self, session_id: int, output: AgentLoopOutput | None) -> None:
        if session_id in self.arrived:
            return
        self.arrived[session_id] = output
        if len(self.arrived) >= self.size:
            scored = [o for o in self.arrived.values() if o is not None]
            if scored:
                apply_bonus_to_outputs(scored, self.settings)
            self.released.set()


def _tq_worker_base() -> type:
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopWorkerTQ

    return AgentLoopWorkerTQ.__ray_actor_class__  # the plain class; Ray actor classes cannot be subclassed


class ExGRPOAgentLoopWorkerTQ(_tq_worker_base()):  # type: ignore[misc]
    """verl's TransferQueue agent-loop worker with a per-group barrier for r_dsu."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exgrpo_settings = ExGRPOSettings.from_trainer_config(self.config)
        self._groups: dict[str, _GroupBarrier] = {}

    async def _run_prompt(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool = False) -> None:
        rollout = self.config.actor_rollout_ref.rollout
        size = int(prompt.get("__rollout_n__", rollout.val_kwargs.n if trajectory["validate"] else rollout.n))
        prompt[GROUP_SIZE_KEY] = size
        uid = prompt["uid"]
        if trajectory["validate"]:
            sampling_params = validation_sampling_params(sampling_params, self.exgrpo_settings)
        else:
            self._groups[uid] = _GroupBarrier(size, self.exgrpo_settings)
        try:
            await super()._run_prompt(prompt, sampling_params, trajectory, trace)
        finally:
            self._groups.pop(uid, None)

    async def _run_agent_loop(self, sampling_params: dict, trajectory: dict, **kwargs: Any) -> Any:
        try:
            return await super()._run_agent_loop(sampling_params, trajectory, **kwargs)
        except BaseException:
            group = self._groups.get(kwargs.get("uid"))
            if group is not None:
                group.arrive(int(kwargs[SESSION_KEY]), None)  # release the siblings of a failed session
            raise

    async def _agent_loop_postprocess(self, output: Any, validate: bool, **kwargs: Any) -> Any:
        group = None if validate else self._groups.get(kwargs["uid"])
        outputs = output if isinstance(output, list) else [output]
        if group is not None and outputs:
            await self._compute_score(outputs, kwargs=kwargs)  # verl's postprocess then skips scoring
            group.arrive(int(kwargs[SESSION_KEY]), outputs[-1])
            await group.released.wait()
        return await super()._agent_loop_postprocess(output, validate, **kwargs)


def _tq_manager_base() -> type:
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ

    return AgentLoopManagerTQ


class ExGRPOAgentLoopManagerTQ(_tq_manager_base()):  # type: ignore[misc]
    """v1 manager: verl's TransferQueue manager with ExGRPO workers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = ExGRPOSettings.from_trainer_config(self.config)
        _require_streaming_reward(settings, self.reward_loop_worker_handles)
        _require_aux_trainer(settings, self.config)
        self.agent_loop_workers_class = ray.remote(ExGRPOAgentLoopWorkerTQ)


def number_sessions(uids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's index within its uid group, and its group's size (legacy path)."""
    sizes: dict[Any, int] = defaultdict(int)
    sessions = np.empty(len(uids), dtype=np.int64)
    for row, uid in enumerate(uids):
        sessions[row] = sizes[uid]
        sizes[uid] += 1
    return sessions, np.array([sizes[uid] for uid in uids], dtype=np.int64)


class ExGRPOAgentLoopManagerLegacy(AgentLoopManager):
    """Legacy-trainer manager: numbers sessions before generation, adds r_dsu to rm_scores after."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exgrpo_settings = ExGRPOSettings.from_trainer_config(self.config)
        _require_streaming_reward(self.exgrpo_settings, self.reward_loop_worker_handles)
        _require_aux_trainer(self.exgrpo_settings, self.config)

    @auto_await
    async def generate_sequences(self, prompts: DataProto) -> DataProto:
        validate = bool(prompts.meta_info.get("validate", False))
        uids = prompts.non_tensor_batch.get("uid")
        if uids is None:
            uids = np.arange(len(prompts)).astype(str)
        sessions, sizes = number_sessions(uids)
        prompts.non_tensor_batch[SESSION_KEY] = sessions
        prompts.non_tensor_batch[GROUP_SIZE_KEY] = sizes
        output = await super().generate_sequences(prompts)
        if not validate and "rm_scores" in output.batch.keys():
            trajectories = self._apply_bonus(output, uids)
            output.meta_info.setdefault("timing", {}).update(rollout_metrics(trajectories))
        return output

    def _apply_bonus(self, output: DataProto, uids: np.ndarray) -> list[dict[str, Any]]:
        scores = output.batch["rm_scores"]
        prompt_length = output.batch["prompts"].size(1)
        last = output.batch["attention_mask"][:, prompt_length:].sum(dim=1) - 1
        outcomes = scores.sum(dim=1).tolist()
        scenarios = output.non_tensor_batch.get(SCENARIO_FIELD, np.full(len(output), None, dtype=object))
        bonuses, fired = batch_bonus(outcomes, list(scenarios), list(uids), self.exgrpo_settings)
        scores[torch.arange(len(output)), last] += torch.tensor(bonuses, dtype=scores.dtype)
        infos = [bonus_info(o, b, f) for o, b, f in zip(outcomes, bonuses, fired, strict=True)]
        for key in BONUS_INFO_KEYS:
            output.non_tensor_batch[key] = np.array([info[key] for info in infos], dtype=object)
        extra_keys = output.meta_info.setdefault("reward_extra_keys", [])
        extra_keys.extend(key for key in BONUS_INFO_KEYS if key not in extra_keys)
        num_turns = output.non_tensor_batch.get("__num_turns__", np.zeros(len(output)))
        return [
            {
                **{
                    key: output.non_tensor_batch[key][row]
                    for key in output.non_tensor_batch
                    if key.startswith("exgrpo_")
                },
                "uid": uids[row],
                "num_turns": int(num_turns[row]),
            }
            for row in range(len(output))
        ]


class ExGRPOAgentLoopManager:
    """The class recipes name: ``create`` returns the v1 or legacy manager, by ``trainer.use_v1``."""

    @classmethod
    def create(cls, config: Any, **kwargs: Any) -> Any:
        use_v1 = bool(config.trainer.get("use_v1", True))
        impl = ExGRPOAgentLoopManagerTQ if use_v1 else ExGRPOAgentLoopManagerLegacy
        return impl.create(config=config, **kwargs)
