"""ExGRPO settings: the top-level ``exgrpo`` block of the verl config.

verl's typed config sections (``actor_rollout_ref.rollout`` …) reject unknown keys, so the
method's own keys live in one top-level block that every process sees (the agent loop, the
managers and the actor all receive the whole trainer config). A recipe declares the block with
its defaults; without one, the defaults below apply. Unknown keys are an error, so a typo in an
override cannot silently leave a default in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONFIG_KEY = "exgrpo"
REVEALING_PROBES_MODES = ("exclude", "allow")


@dataclass(frozen=True)
class ExGRPOSettings:
    """Every ExGRPO knob (design card §1.3); values marked "ours" in the card are our defaults."""

    num_probes: int = 5
    """k: probes per Scenario-A (full) dialogue, sampled without replacement from the row's list."""
    partial_probes: int = 2
    """k': probes in a Scenario-B (partial) dialogue (the first k' of that trajectory's sample)."""
    partial_probes_mode: str = "fixed"
    """"fixed" uses partial_probes; "random" draws k' uniformly from [0, k-1] per trajectory."""
    full_fraction: float = 0.5
    """Share of each uid group that runs Scenario A: exactly round(n * full_fraction) trajectories."""
    dsu_delta: float = 0.2
    """δ: the Dialogue Structure Utility bonus (Eq.5); 0 disables it."""
    dsu_nu: float = 1.0
    """ν: the bonus fires when P_full > ν · P_partial (Eq.5)."""
    partial_gradient: bool = True
    """Whether Scenario-B trajectories get policy gradient (their rewards always enter the group baseline)."""
    probe_max_tokens: int = 512
    """Token cap for each answer to a probe."""
    final_max_tokens: int = 1024
    """Token cap for the answer to the original question."""
    val_max_tokens: int | None = None
    """Token cap for a validation answer (single-turn, the question alone); None: ``final_max_tokens``,
    the budget the same answer has in training (ours)."""
    seed: int = 0
    """Seed for probe sampling (with the question and the trajectory's index in its group)."""
    revealing_probes: str = "exclude"
    """"exclude": never ask a probe flagged ``reveals_answer`` (it states or implies the gold answer, which
    would turn the final question into copying and let r_dsu reward that); "allow": ask every probe, as the
    paper does (ours)."""
    aux_sft_coef: float = 0.1
    """λ of the auxiliary teacher-forced NLL on teacher probe answers (Eq.8, ours: the paper trains
    with the term but gives no weight); 0 disables it. Above 0 it needs the v1 trainer in the
    ``exgrpo_sync`` mode, which installs the loss."""

    @property
    def validation_max_tokens(self) -> int:
        return self.val_max_tokens if self.val_max_tokens is not None else self.final_max_tokens

    def __post_init__(self) -> None:
        if self.num_probes < 0 or self.partial_probes < 0:
            raise ValueError("exgrpo.num_probes and exgrpo.partial_probes must be >= 0")
        if self.partial_probes_mode not in ("fixed", "random"):
            raise ValueError(
                f"exgrpo.partial_probes_mode must be 'fixed' or 'random', got {self.partial_probes_mode!r}"
            )
        if self.partial_probes_mode == "fixed" and self.num_probes and self.partial_probes >= self.num_probes:
            raise ValueError(
                f"exgrpo.partial_probes (k'={self.partial_probes}) must be < exgrpo.num_probes (k={self.num_probes})"
            )
        if not 0.0 <= self.full_fraction <= 1.0:
            raise ValueError(f"exgrpo.full_fraction must be in [0, 1], got {self.full_fraction}")
        if self.probe_max_tokens <= 0 or self.final_max_tokens <= 0:
            raise ValueError("exgrpo.probe_max_tokens and exgrpo.final_max_tokens must be positive")
        if self.val_max_tokens is not None and self.val_max_tokens <= 0:
            raise ValueError(f"exgrpo.val_max_tokens must be positive or null, got {self.val_max_tokens}")
        if self.revealing_probes not in REVEALING_PROBES_MODES:
            raise ValueError(f"exgrpo.revealing_probes must be 'exclude' or 'allow', got {self.revealing_probes!r}")
        if self.aux_sft_coef < 0:
            raise ValueError(f"exgrpo.aux_sft_coef must be >= 0, got {self.aux_sft_coef}")

    @classmethod
    def from_block(cls, block: Mapping[str, Any] | DictConfig | None) -> ExGRPOSettings:
        if block is None:
            return cls()
        values = OmegaConf.to_container(block, resolve=True) if isinstance(block, DictConfig) else dict(block)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown key(s) in the '{CONFIG_KEY}' config block: {unknown}; known: {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_trainer_config(cls, config: Any) -> ExGRPOSettings:
        """Read the ``exgrpo`` block of a whole verl trainer config (absent block: defaults)."""
        block = config.get(CONFIG_KEY) if hasattr(config, "get") else None
        return cls.from_block(block)
