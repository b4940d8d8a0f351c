"""Apply r_dsu to one uid group's scored trajectories and record what happened (pure glue).

Both trainer paths call this once per group, after every trajectory of the group has its outcome
reward and before verl reads the rewards. The bonus is added to the reward that verl places on
the last response token; three keys join each trajectory's reward extra info so metrics and
rollout dumps can show the pre-bonus outcome, the bonus and whether the group fired.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from exgrpo_verl.rollout.bonus import GroupBonus, dsu_bonus
from exgrpo_verl.rollout.settings import ExGRPOSettings

OUTCOME_KEY = "exgrpo_outcome"
BONUS_KEY = "exgrpo_bonus"
FIRED_KEY = "exgrpo_dsu_fired"
BONUS_INFO_KEYS = (OUTCOME_KEY, BONUS_KEY, FIRED_KEY)


def group_bonus(outcomes: Sequence[float], scenarios: Sequence[str | None], settings: ExGRPOSettings) -> GroupBonus:
    return dsu_bonus([float(o) for o in outcomes], list(scenarios), settings.dsu_delta, settings.dsu_nu)


def bonus_info(outcome: float, bonus: float, fired: bool) -> dict[str, float | bool]:
    """The reward-extra-info entries recorded for one trajectory."""
    return {OUTCOME_KEY: float(outcome), BONUS_KEY: float(bonus), FIRED_KEY: bool(fired)}


def batch_bonus(
    outcomes: Sequence[float], scenarios: Sequence[str | None], uids: Sequence[Any], settings: ExGRPOSettings
) -> tuple[list[float], list[bool]]:
    """r_dsu and the group's fired flag for every row of a batch whose groups are given by ``uids``."""
    rows_by_uid: dict[Any, list[int]] = defaultdict(list)
    for row, uid in enumerate(uids):
        rows_by_uid[uid].append(row)
    bonuses, fired = [0.0] * len(outcomes), [False] * len(outcomes)
    for rows in rows_by_uid.values():
        result = group_bonus([outcomes[r] for r in rows], [scenarios[r] for r in rows], settings)
        for row, value in zip(rows, result.bonuses, strict=True):
            bonuses[row], fired[row] = value, result.fired
    return bonuses, fired
