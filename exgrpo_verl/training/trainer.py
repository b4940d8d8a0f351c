"""The ``exgrpo_sync`` trainer mode: verl's v1 sync trainer that trains with L_SFT-aux.

verl's actor workers build their loss (``ppo_loss``) themselves; the one supported way to give
them another is the worker group's ``set_loss_fn``, which only the trainer holds. So this mode
registers a subclass of verl's sync trainer in verl's trainer registry (the plug-in imports this
module on ``import verl``, so ``trainer.v1.trainer_mode=exgrpo_sync`` resolves in stock
``main_ppo``) and, once the workers exist, installs :func:`exgrpo_actor_loss` with
λ = ``exgrpo.aux_sft_coef``. Everything else is verl's sync trainer: the mode name only selects
this class, and the trainer then runs as ``sync``.
"""

from __future__ import annotations

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
