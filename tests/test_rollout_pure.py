"""Scenario assignment, probe sampling, the r_dsu bonus, settings and metrics: pure functions."""

from __future__ import annotations

import math

import pytest

from exgrpo_verl.rollout.bonus import dsu_bonus
from exgrpo_verl.rollout.group_rewards import BONUS_KEY, FIRED_KEY, OUTCOME_KEY
from exgrpo_verl.rollout.metrics import rollout_metrics
from exgrpo_verl.rollout.scenarios import Scenario, full_count, plan_dialogue, scenario_for
from exgrpo_verl.rollout.settings import ExGRPOSettings

A, B = Scenario.FULL, Scenario.PARTIAL
PROBES = [{"rule": f"r{i}", "question": f"probe {i}?", "teacher_answer": None} for i in range(8)]
# Probes 1, 4 and 6 state or imply the answer.
FLAGGED = [{**p, "reveals_answer": i in (1, 4, 6)} for i, p in enumerate(PROBES)]


@pytest.mark.parametrize(
    ("n", "fraction", "expected"), [(8, 0.5, 4), (5, 0.5, 2), (6, 1 / 3, 2), (4, 0.0, 0), (4, 1.0, 4)]
)
def test_exact_share_of_full_dialogues(n, fraction, expected):
    assert full_count(n, fraction) == expected
    scenarios = [scenario_for(i, n, fraction) for i in range(n)]
    assert scenarios.count(A) == expected and scenarios.count(B) == n - expected


def test_session_outside_group_is_an_error():
    with pytest.raises(ValueError, match="outside its group"):
        scenario_for(4, 4, 0.5)


def test_probe_sampling_is_seeded_and_without_replacement():
    settings = ExGRPOSettings(num_probes=5, partial_probes=2)
    first = plan_dialogue(settings, PROBES, "q7", session_id=0, group_size=4)
    again = plan_dialogue(settings, PROBES, "q7", session_id=0, group_size=4)
    other = plan_dialogue(settings, PROBES, "q7", session_id=1, group_size=4)
    other_seed = plan_dialogue(ExGRPOSettings(seed=1), PROBES, "q7", session_id=0, group_size=4)
    assert first == again
    assert len(first.probes) == 5 and len({p["rule"] for p in first.probes}) == 5
    assert first.probes != other.probes or first.probes != other_seed.probes
    partial = plan_dialogue(settings, PROBES, "q7", session_id=3, group_size=4)
    assert partial.scenario is B and len(partial.probes) == 2


def test_partial_takes_the_first_k_prime_of_its_own_sample():
    settings = ExGRPOSettings(num_probes=5, partial_probes=2, full_fraction=0.0)
    plan = plan_dialogue(settings, PROBES, "q", session_id=0, group_size=2)
    as_full = plan_dialogue(ExGRPOSettings(num_probes=5, full_fraction=1.0), PROBES, "q", session_id=0, group_size=2)
    assert plan.probes == as_full.probes[:2]


def test_random_k_prime_stays_in_range():
    settings = ExGRPOSettings(num_probes=4, partial_probes_mode="random", full_fraction=0.0)
    sizes = {len(plan_dialogue(settings, PROBES, f"q{i}", 0, 1).probes) for i in range(200)}
    assert sizes == {0, 1, 2, 3}


def test_rows_with_few_or_no_probes():
    settings = ExGRPOSettings(num_probes=5, partial_probes=2)
    assert len(plan_dialogue(settings, PROBES[:3], "q", 0, 2).probes) == 3
    none = plan_dialogue(settings, [], "q", 0, 2)
    assert none.probes == () and none.available == 0


def test_exclude_never_samples_a_revealing_probe():
    settings = ExGRPOSettings(num_probes=5, partial_probes=2)
    assert settings.revealing_probes == "exclude"
    seen = set()
    for question in range(100):
        for session in range(4):
            plan = plan_dialogue(settings, FLAGGED, f"q{question}", session, 4)
            assert not any(p["reveals_answer"] for p in plan.probes)
            assert plan.available == 5 and plan.excluded == 3
            assert len(plan.probes) == (5 if plan.scenario is A else 2)
            seen |= {p["rule"] for p in plan.probes}
    assert seen == {"r0", "r2", "r3", "r5", "r7"}


def test_allow_samples_every_probe_as_the_paper_does():
    settings = ExGRPOSettings(num_probes=5, partial_probes=2, revealing_probes="allow")
    plans = [plan_dialogue(settings, FLAGGED, f"q{question}", 0, 4) for question in range(100)]
    assert all(plan.available == 8 and plan.excluded == 0 for plan in plans)
    assert sum(any(p["reveals_answer"] for p in plan.probes) for plan in plans) > 80
    # allow samples exactly as rows without flags are sampled
    unflagged = [plan_dialogue(settings, PROBES, f"q{question}", 0, 4) for question in range(100)]
    assert [[p["rule"] for p in plan.probes] for plan in plans] == [
        [p["rule"] for p in plan.probes] for plan in unflagged
    ]


def test_fewer_askable_probes_than_k_asks_what_is_left():
    settings = ExGRPOSettings(num_probes=5, partial_probes=2)
    only_two = [{**p, "reveals_answer": i >= 2} for i, p in enumerate(PROBES)]
    plan = plan_dialogue(settings, only_two, "q", 0, 2)
    assert {p["rule"] for p in plan.probes} == {"r0", "r1"} and plan.excluded == 6
    nothing = plan_dialogue(settings, [{**p, "reveals_answer": True} for p in PROBES], "q", 0, 2)
    assert nothing.probes == () and nothing.available == 0 and nothing.excluded == 8


# ---- Eq.5-6 on hand-computed groups -------------------------------------------------------


def test_bonus_fires_for_correct_full_dialogues():
    # P_full = 2/3, P_partial = 1/3 > ... fires; only correct Scenario-A trajectories get δ
    result = dsu_bonus([1, 1, 0, 1, 0, 0], [A, A, A, B, B, B], delta=0.2, nu=1.0)
    assert result.fired and result.p_full == pytest.approx(2 / 3) and result.p_partial == pytest.approx(1 / 3)
    assert result.bonuses == (0.2, 0.2, 0.0, 0.0, 0.0, 0.0)


def test_bonus_does_not_fire_when_full_is_not_better():
    result = dsu_bonus([1, 0, 1, 1], [A, A, B, B], delta=0.2, nu=1.0)
    assert not result.fired and result.bonuses == (0.0,) * 4


def test_bonus_needs_both_scenarios():
    assert not dsu_bonus([1, 1], [A, A], 0.2, 1.0).fired
    assert dsu_bonus([1, 1], [A, A], 0.2, 1.0).p_partial is None
    assert not dsu_bonus([1, 0], [B, B], 0.2, 1.0).fired


def test_nu_boundary_is_strict():
    # P_full = 0.5, P_partial = 0.25: fires for ν < 2, not at ν = 2
    outcomes, scenarios = [1, 0, 1, 0, 0, 0], [A, A, B, B, B, B]
    assert dsu_bonus(outcomes, scenarios, 0.2, nu=1.99).fired
    assert not dsu_bonus(outcomes, scenarios, 0.2, nu=2.0).fired


def test_all_zero_group_gets_nothing():
    result = dsu_bonus([0, 0, 0, 0], [A, A, B, B], 0.2, 1.0)
    assert not result.fired and result.p_full == 0.0 and result.bonuses == (0.0,) * 4


def test_all_partial_wrong_full_right_with_nu_zero():
    assert dsu_bonus([1, 0, 0, 0], [A, A, B, B], 0.5, 0.0).bonuses == (0.5, 0.0, 0.0, 0.0)


def test_trajectories_without_scenario_take_no_part():
    result = dsu_bonus([1, 1, 0], [A, None, B], 0.2, 1.0)
    assert result.fired and result.bonuses == (0.2, 0.0, 0.0)


def test_zero_delta_disables():
    assert not dsu_bonus([1, 0], [A, B], 0.0, 1.0).fired


# ---- settings ----------------------------------------------------------------------------


def test_settings_reject_unknown_keys_and_bad_values():
    assert ExGRPOSettings.from_block(None) == ExGRPOSettings()
    assert ExGRPOSettings.from_block({"num_probes": 3, "partial_probes": 1}).num_probes == 3
    with pytest.raises(ValueError, match="unknown key.*num_probe"):
        ExGRPOSettings.from_block({"num_probe": 3})
    with pytest.raises(ValueError, match="must be < exgrpo.num_probes"):
        ExGRPOSettings(num_probes=2, partial_probes=2)
    with pytest.raises(ValueError, match="full_fraction"):
        ExGRPOSettings(full_fraction=1.5)
    assert ExGRPOSettings.from_block({"revealing_probes": "allow"}).revealing_probes == "allow"
    with pytest.raises(ValueError, match="revealing_probes must be 'exclude' or 'allow'"):
        ExGRPOSettings(revealing_probes="skip")


# ---- metrics -----------------------------------------------------------------------------


def _traj(uid, scenario, outcome, bonus=0.0, fired=False, rules=(), turns=3, truncated=False, no_probes=False):
    return {
        "uid": uid,
        "num_turns": turns,
        "exgrpo_scenario": scenario.value,
        "exgrpo_probe_rules": list(rules),
        "exgrpo_probe_reveals": [rule == "inverse" for rule in rules],
        "exgrpo_excluded_probes": 2 if scenario is A else 0,
        "exgrpo_truncated": truncated,
        "exgrpo_no_probes": no_probes,
        OUTCOME_KEY: outcome,
        BONUS_KEY: bonus,
        FIRED_KEY: fired,
    }


def test_metrics_by_hand():
    batch = [
        _traj("g1", A, 1, 0.2, True, ["cause", "inverse"], turns=6),
        _traj("g1", A, 0, 0.0, True, ["cause"], turns=6),
        _traj("g1", B, 0, 0.0, True, [], turns=2, no_probes=False),
        _traj("g1", B, 0, 0.0, True, ["inverse"], turns=4, truncated=True),
        _traj("g2", A, 1, 0.0, False, ["cause"], turns=6),
        _traj("g2", B, 1, 0.0, False, [], turns=2, no_probes=True),
        {"uid": "other", "num_turns": 2},  # a trajectory of another agent loop is ignored
        {"uid": "g1", "exgrpo_teacher_tokens": 12},  # two teacher-forced rows (L_SFT-aux)
        {"uid": "g2", "exgrpo_teacher_tokens": 3},
    ]
    m = rollout_metrics(batch)
    assert m["exgrpo/aux/teacher_rows"] == 2
    assert m["exgrpo/p_full"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["exgrpo/p_partial"] == pytest.approx((0.0 + 1.0) / 2)
    assert m["exgrpo/dsu_fire_rate"] == pytest.approx(0.5)
    assert m["exgrpo/dsu_bonus/mean"] == pytest.approx(0.2 / 6)
    assert m["exgrpo/accuracy/full"] == pytest.approx(2 / 3)
    assert m["exgrpo/accuracy/partial"] == pytest.approx(1 / 3)
    assert m["exgrpo/turns/mean"] == pytest.approx(26 / 6)
    assert m["exgrpo/truncated/count"] == 1 and m["exgrpo/no_probes/count"] == 1
    assert m["exgrpo/accuracy_by_rule/cause"] == pytest.approx(2 / 3)
    assert m["exgrpo/accuracy_by_rule/inverse"] == pytest.approx(0.5)
    assert m["exgrpo/probes/revealing_fraction"] == pytest.approx(2 / 5)  # inverse, 2 of the 5 probes asked
    assert m["exgrpo/probes/excluded/mean"] == pytest.approx(2 * 3 / 6)
    assert all(math.isfinite(v) for v in m.values())
    assert rollout_metrics([{"uid": "x"}]) == {}


def test_group_barrier_releases_when_a_session_fails():
    """A failed session still arrives (empty), so its siblings are not held forever."""
    import asyncio

    from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics, AgentLoopOutput

    from exgrpo_verl.rollout.managers import _GroupBarrier

    def output(scenario: str, score: float) -> AgentLoopOutput:
        out = AgentLoopOutput(
            prompt_ids=[1], response_ids=[2], response_mask=[1], metrics=AgentLoopMetrics(), reward_score=score
        )
        out.extra_fields = {"exgrpo_scenario": scenario, "reward_extra_info": {"score": score}}
        return out

    async def main():
        barrier = _GroupBarrier(3, ExGRPOSettings())
        full, partial = output("full", 1.0), output("partial", 0.0)
        barrier.arrive(0, full)
        barrier.arrive(0, full)  # arriving twice counts once
        assert not barrier.released.is_set()
        barrier.arrive(1, partial)
        barrier.arrive(2, None)  # the failed one
        await asyncio.wait_for(barrier.released.wait(), 1)
        return full, partial

    full, partial = asyncio.run(main())
    assert full.reward_score == pytest.approx(1.2) and partial.reward_score == 0.0
    assert full.extra_fields["reward_extra_info"]["exgrpo_bonus"] == pytest.approx(0.2)


def test_validation_answers_get_the_final_answer_budget():
    from exgrpo_verl.rollout.managers import validation_sampling_params

    params = {"temperature": 0, "top_p": 1.0, "logprobs": False}
    assert validation_sampling_params(params, ExGRPOSettings(final_max_tokens=96))["max_tokens"] == 96
    assert (
        validation_sampling_params(params, ExGRPOSettings(final_max_tokens=96, val_max_tokens=300))["max_tokens"] == 300
    )
    assert "max_tokens" not in params  # the worker's dict is not changed
    assert validation_sampling_params({**params, "max_tokens": 7}, ExGRPOSettings())["max_tokens"] == 7
    with pytest.raises(ValueError, match="exgrpo.val_max_tokens must be positive or null"):
        ExGRPOSettings(val_max_tokens=0)
