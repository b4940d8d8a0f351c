"""Per-step ExGRPO metrics from the trajectories of a training batch (pure).

Each trajectory is described by a plain dict (its agent-loop extra fields, its reward extra info,
its uid and number of turns), so both trainer paths feed the same function.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from statistics import fmean
from typing import Any

from exgrpo_verl.rollout.agent_loop import (
    EXCLUDED_PROBES_FIELD,
    NO_PROBES_FIELD,
    PROBE_REVEALS_FIELD,
    PROBE_RULES_FIELD,
    SCENARIO_FIELD,
    TEACHER_TOKENS_FIELD,
    TRUNCATED_FIELD,
)
from exgrpo_verl.rollout.group_rewards import BONUS_KEY, FIRED_KEY, OUTCOME_KEY
from exgrpo_verl.rollout.scenarios import Scenario

PREFIX = "exgrpo/"


def _sequence(value: Any) -> list:
    """A per-trajectory list field, which may arrive as a list, a numpy array or None."""
    return [] if value is None else list(value)


def rollout_metrics(trajectories: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Metrics for one step. Each trajectory mapping holds ``uid``, ``num_turns`` and the fields the
    probe-dialogue loop and the bonus write; trajectories of other agent loops are ignored."""
    trajectories = list(trajectories)
    rows = [t for t in trajectories if t.get(SCENARIO_FIELD) is not None and t.get(OUTCOME_KEY) is not None]
    if not rows:
        return {}
    # L_SFT-aux trains only on teacher-forced rows: how many this step has (none when no asked probe
    # carries a teacher answer, e.g. teacher-free data without Socratic sub-questions, or lambda = 0)
    teacher_rows = sum(1 for t in trajectories if (t.get(TEACHER_TOKENS_FIELD) or 0) > 0)
    by_group: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_group[row.get("uid")].append(row)

    def outcome(row: Mapping[str, Any]) -> float:
        return float(row[OUTCOME_KEY])

    full = [outcome(r) for r in rows if r[SCENARIO_FIELD] == Scenario.FULL]
    partial = [outcome(r) for r in rows if r[SCENARIO_FIELD] == Scenario.PARTIAL]
    p_full, p_partial, fired = [], [], []
    for group in by_group.values():
        group_full = [outcome(r) for r in group if r[SCENARIO_FIELD] == Scenario.FULL]
        group_partial = [outcome(r) for r in group if r[SCENARIO_FIELD] == Scenario.PARTIAL]
        if group_full and group_partial:
            p_full.append(fmean(group_full))
            p_partial.append(fmean(group_partial))
            fired.append(float(bool(group[0].get(FIRED_KEY))))

    metrics: dict[str, float] = {
        "accuracy": fmean(outcome(r) for r in rows),
        "dsu_bonus/mean": fmean(float(r.get(BONUS_KEY) or 0.0) for r in rows),
        "turns/mean": fmean(float(r.get("num_turns") or 0) for r in rows),
        "truncated/count": float(sum(bool(r.get(TRUNCATED_FIELD)) for r in rows)),
        "truncated/fraction": fmean(float(bool(r.get(TRUNCATED_FIELD))) for r in rows),
        "no_probes/count": float(sum(bool(r.get(NO_PROBES_FIELD)) for r in rows)),
        "aux/teacher_rows": float(teacher_rows),
    }
    if full:
        metrics["accuracy/full"] = fmean(full)
    if partial:
        metrics["accuracy/partial"] = fmean(partial)
    if p_full:
        metrics["p_full"] = fmean(p_full)
        metrics["p_partial"] = fmean(p_partial)
        metrics["dsu_fire_rate"] = fmean(fired)
    # Of the probes asked this step, the share that states or implies the answer (0 with
    # exgrpo.revealing_probes=exclude); and how many a dialogue left out for that reason.
    reveals = [bool(flag) for row in rows for flag in _sequence(row.get(PROBE_REVEALS_FIELD))]
    metrics["probes/revealing_fraction"] = fmean(reveals) if reveals else 0.0
    metrics["probes/excluded/mean"] = fmean(float(row.get(EXCLUDED_PROBES_FIELD) or 0) for row in rows)
    by_rule: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for rule in row.get(PROBE_RULES_FIELD) or ():
            by_rule[str(rule)].append(outcome(row))
    for rule, values in sorted(by_rule.items()):
        metrics[f"accuracy_by_rule/{rule}"] = fmean(values)
    return {PREFIX + key: value for key, value in metrics.items()}
