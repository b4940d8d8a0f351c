"""Compose verl's own trainer config in-process (what ``main_ppo`` would see), for tests and previews."""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig


def compose_trainer_config(overrides: Sequence[str] = (), config_name: str = "ppo_trainer") -> DictConfig:
    """verl's ``ppo_trainer`` (or another of its configs) with hydra ``overrides`` applied."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))
