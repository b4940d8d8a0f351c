"""Which trajectories of a group are Scenario A, and which probes each dialogue asks (pure).

Assignment is a function of a trajectory's index in its uid group (verl's ``session_id``), so it
is fixed before generation, balanced (exactly round(n * full_fraction) Scenario-A trajectories per
group) and reproducible. Probe sampling is seeded by (seed, question, session), so reruns ask the
same probes. With ``exgrpo.revealing_probes=exclude`` (the default) the probes flagged
``reveals_answer`` are set aside before sampling.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from exgrpo_verl.rollout.settings import ExGRPOSettings
from exgrpo_verl.schema import Probe


class Scenario(str, Enum):
    FULL = "full"  # Scenario A: k probes, then the question
    PARTIAL = "partial"  # Scenario B: the first k' probes, then the question


def full_count(group_size: int, full_fraction: float) -> int:
    """How many trajectories of a group of ``group_size`` run Scenario A (round half to even, as Python)."""
    return min(group_size, max(0, round(group_size * full_fraction)))


def scenario_for(session_id: int, group_size: int, full_fraction: float) -> Scenario:
    """Sessions 0 .. full_count-1 run Scenario A; the rest run Scenario B."""
    if not 0 <= session_id < group_size:
        raise ValueError(f"session_id {session_id} is outside its group of {group_size}")
    return Scenario.FULL if session_id < full_count(group_size, full_fraction) else Scenario.PARTIAL


def _rng(seed: int, question_key: str, session_id: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x1f{question_key}\x1f{session_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class DialoguePlan:
    scenario: Scenario
    probes: tuple[Probe, ...]
    """The probes this dialogue asks, in order, before the original question."""
    available: int
    """How many probes the dialogue could ask (a row with fewer than k asks what it has)."""
    excluded: int = 0
    """How many of the row's probes were set aside because they reveal the answer."""


def askable_probes(settings: ExGRPOSettings, probes: Sequence[Probe]) -> list[Probe]:
    """The probes a dialogue may ask: all of them with ``allow``; with ``exclude`` those not flagged
    ``reveals_answer`` (a probe without the flag counts as not revealing; the agent loop refuses rows
    written before the flag existed)."""
    if settings.revealing_probes == "allow":
        return list(probes)
    return [probe for probe in probes if not probe.get("reveals_answer")]


def plan_dialogue(
    settings: ExGRPOSettings,
    probes: Sequence[Probe],
    question_key: str,
    session_id: int,
    group_size: int,
) -> DialoguePlan:
    """Sample k askable probes without replacement; Scenario B keeps the first k' of them."""
    scenario = scenario_for(session_id, group_size, settings.full_fraction)
    excluded = len(probes)
    probes = askable_probes(settings, probes)
    excluded -= len(probes)
    rng = _rng(settings.seed, question_key, session_id)
    k = min(settings.num_probes, len(probes))
    chosen = [probes[i] for i in rng.sample(range(len(probes)), k)]
    if scenario is Scenario.PARTIAL:
        if settings.partial_probes_mode == "random":
            k_partial = rng.randint(0, max(0, settings.num_probes - 1))
        else:
            k_partial = settings.partial_probes
        chosen = chosen[:k_partial]
    return DialoguePlan(scenario, tuple(chosen), len(probes), excluded)
