"""The Dialogue Structure Utility bonus, Eq.5-6 of the design card (pure).

Within one group (all rollouts of a question): P_full and P_partial are the mean R_outcome of its
Scenario-A and Scenario-B trajectories. If the group has both and P_full > ν·P_partial, every
correct Scenario-A trajectory gets +δ; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exgrpo_verl.rollout.scenarios import Scenario


@dataclass(frozen=True)
class GroupBonus:
    bonuses: tuple[float, ...]
    """r_dsu per trajectory, in input order (0 or δ)."""
    p_full: float | None
    p_partial: float | None
    fired: bool


def dsu_bonus(
    outcomes: Sequence[float], scenarios: Sequence[Scenario | str | None], delta: float, nu: float
) -> GroupBonus:
    """r_dsu for each trajectory of one group.

    ``outcomes`` are R_outcome ∈ {0, 1} (a trajectory counts as correct when its outcome is >= 1);
    a scenario of None (not a probe dialogue, or a failed session) takes no part.
    """
    if len(outcomes) != len(scenarios):
        raise ValueError(f"{len(outcomes)} outcomes but {len(scenarios)} scenarios")
    full = [o for o, s in zip(outcomes, scenarios, strict=True) if s == Scenario.FULL]
    partial = [o for o, s in zip(outcomes, scenarios, strict=True) if s == Scenario.PARTIAL]
    p_full = sum(full) / len(full) if full else None
    p_partial = sum(partial) / len(partial) if partial else None
    fired = delta != 0 and p_full is not None and p_partial is not None and p_full > nu * p_partial
    bonuses = tuple(
        delta if fired and s == Scenario.FULL and o >= 1.0 else 0.0 for o, s in zip(outcomes, scenarios, strict=True)
    )
    return GroupBonus(bonuses, p_full, p_partial, fired)
