"""The ``exgrpo_sync`` trainer mode: verl's v1 sync trainer that trains with L_SFT-aux.

verl's actor workers build their loss (``ppo_loss``) themselves; the one supported way to give
them another is the worker group's ``set_loss_fn``, which only the trainer holds. So this mode
registers a subclass of verl's sync trainer in verl's trainer registry (the plug-in imports this
module on ``import verl``, so ``trainer.v1.trainer_mode=exgrpo_sync`` resolves in stock
``main_ppo``) and, once the workers exist, installs :func:`exgrpo_actor_loss` with
λ = ``exgrpo.aux_sft_coef``. Everything else is verl's sync trainer: the mode name only selects
this class, and the trainer then runs as ``sync``.

Mini-batches are counted in optimiser updates, not rows. verl splits a step's rows into mini-batches
of ``ppo_mini_batch_size × rollout.n`` rows and pads the batch to a multiple of that with synthetic
rows. The teacher-forced rows of L_SFT-aux are extra rows (up to one per probe and dialogue), so under
verl's rule they would add optimiser updates to a step (a recipe's 2 updates per step could become 8,
the cpu student's 1 update could become 4) and up to a mini-batch of padding rows. This mode keeps the
recipe's number of updates per step (``train_batch_size / ppo_mini_batch_size``) and shares the rows,
teacher-forced ones included, evenly among them; without teacher-forced rows both rules give the same
mini-batches.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from functools import partial

from verl.trainer.distillation import is_distillation_enabled
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.config import omega_conf_to_dataclass

from exgrpo_verl.rollout.settings import ExGRPOSettings
from exgrpo_verl.training.aux_loss import exgrpo_actor_loss

TRAINER_MODE = "exgrpo_sync"


@register_trainer(TRAINER_MODE)
class ExGRPOTrainerSync(PPOTrainerSync):
    """verl's sync trainer with the ExGRPO actor loss (PPO + λ · L_SFT-aux)."""

    def _build_replay_buffer(self):
        # verl branches on the literal mode "sync" (replay buffer, refills, checkpoints); this mode
        # is that trainer, so it runs under that name and reads trainer.v1.sync.*.
        self.trainer_mode = "sync"
        self.parameter_sync_step = self.config.trainer.v1.get("sync", {}).get("parameter_sync_step", 1)
        return super()._build_replay_buffer()

    def on_init_end(self) -> None:
        settings = ExGRPOSettings.from_trainer_config(self.config)
        distillation = is_distillation_enabled(self.config.get("distillation"))
        if settings.aux_sft_coef > 0 and distillation:
            raise ValueError("exgrpo.aux_sft_coef > 0 cannot be combined with verl's distillation loss")
        if not distillation:
            # with λ = 0 the loss is verl's ppo_loss plus the rollout/training gap metric
            actor_config = omega_conf_to_dataclass(self.config.actor_rollout_ref.actor)
            self.actor_rollout_wg.set_loss_fn(
                partial(exgrpo_actor_loss, config=actor_config, aux_coef=settings.aux_sft_coef)
            )
        super().on_init_end()

    def _updates_per_step(self) -> int:
        """Optimiser updates a step makes by the recipe: its prompts over the mini-batch's prompts."""
        prompts = self.config.data.train_batch_size // self.parameter_sync_step
        return max(1, prompts // self.config.actor_rollout_ref.actor.ppo_mini_batch_size)

    def _counts_updates(self) -> bool:
        # a critic has its own mini-batches, and a critic warm-up step makes no actor update
        return not self.use_critic and self.config.trainer.critic_warmup <= self.global_steps

    def _get_required_batch_multiple(self, dp_size: int) -> int:
        if not self._counts_updates():
            return super()._get_required_batch_multiple(dp_size)
        return updates_batch_multiple(self._updates_per_step(), self.config.actor_rollout_ref.rollout.n, dp_size)

    def _update_actor(self, batch, metrics: dict):
        if not self._counts_updates():
            return super()._update_actor(batch, metrics)
        updates = self._updates_per_step()
        n = self.config.actor_rollout_ref.rollout.n
        with _ppo_mini_batch_size(self.config.actor_rollout_ref.actor, mini_batch_prompts(len(batch), updates, n)):
            batch = super()._update_actor(batch, metrics)
        metrics["exgrpo/update/mini_batches"] = updates
        metrics["exgrpo/update/rows_per_mini_batch"] = len(batch) // updates
        return batch


def updates_batch_multiple(updates: int, n: int, dp_size: int) -> int:
    """The row count a step's batch is padded to a multiple of, so that it splits into ``updates``
    equal mini-batches, each a whole number of groups' worth of rows (verl sizes a mini-batch as
    prompts × n) and divisible among the data-parallel ranks."""
    return updates * math.lcm(n, dp_size)


def mini_batch_prompts(rows: int, updates: int, n: int) -> int:
    """``ppo_mini_batch_size`` (in prompts, as verl reads it) that splits ``rows`` into ``updates``
    mini-batches."""
    if rows % (updates * n):
        raise ValueError(f"{rows} rows do not split into {updates} mini-batches of whole groups of {n}")
    return rows // (updates * n)


@contextlib.contextmanager
def _ppo_mini_batch_size(actor_config, prompts: int) -> Iterator[None]:
    """verl's ``_update_actor`` reads the mini-batch size from the config as it dispatches the update."""
    recipe = actor_config.ppo_mini_batch_size
    actor_config.ppo_mini_batch_size = prompts
    try:
        yield
    finally:
        actor_config.ppo_mini_batch_size = recipe
