"""reveals_answer: template probes and teacher-written probes that state or imply the gold answer."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exgrpo_verl.datasets import LoadResult
from exgrpo_verl.probes import messages
from exgrpo_verl.probes.pipeline import BuildConfig, build
from exgrpo_verl.probes.reveals import mentions_answer, reveals_answer
from exgrpo_verl.probes.rules import RULES, flagged, template_probes
from exgrpo_verl.probes.teacher import EndpointConfig
from exgrpo_verl.schema import build_rl_row, parse_probes
from exgrpo_verl.testing.openai_stub import StubServer
from tests import reveals_fixtures as fx

# Rules whose template probe states or implies the answer for each fixture (the rest must not).
FLAGGED_TEMPLATES = {
    "gsm8k": {"inverse"},  # the other rules quote or corrupt the first step, not the final one
    "gsm8k_reversal": {"inverse"},
    "math": set(),
    "tabmwp": {"inverse", "error_diagnosis"},  # its only worked step is the final "12 - 7 = 5"
    "commonsense_qa": set(),
    "arc_challenge": set(),
    "openbookqa": set(),
    "date_understanding": set(),
    "strategyqa": set(),
    "boolq": set(),
    "anli": {"step_justification"},  # an NLI explanation is the reason for the label itself
    "esnli": {"step_justification"},
}


@pytest.mark.parametrize("dataset", list(fx.BY_DATASET))
def test_template_probes_are_flagged_exactly_when_they_give_the_answer_away(dataset):
    record = fx.BY_DATASET[dataset]
    probes = template_probes(record).probes
    assert len(probes) >= 5
    assert {p["rule"] for p in probes if p["reveals_answer"]} == FLAGGED_TEMPLATES[dataset]
    assert all(isinstance(p["reveals_answer"], bool) for p in probes)


def test_a_one_step_solution_cannot_be_quoted_or_corrupted_without_the_answer():
    probes = {p["rule"]: p for p in template_probes(fx.GSM8K_ONE_STEP).probes}
    assert {rule for rule, p in probes.items() if p["reveals_answer"]} == {
        "inverse",
        "step_justification",
        "error_diagnosis",
    }
    assert "40 / 8 = 6" in probes["error_diagnosis"]["question"]  # correcting it gives 5, the answer


def test_two_options_are_never_narrowed_to_one():
    probes = template_probes(fx.TABMWP_CHOICE).probes
    assert not any(p["reveals_answer"] for p in probes)
    asked = [p["question"].split("(B) surplus", 1)[1] for p in probes if "(B) surplus" in p["question"]]
    assert asked and not any("surplus" in tail or "shortage" in tail or "(A)" in tail for tail in asked)


def test_a_table_step_that_finds_the_answers_row_holds_the_answer():
    record = fx._choice(
        "t3",
        "tabmwp",
        "Team | Members\nbaseball team | 38\nfootball team | 37\nchess club | 12\n\nWhich team has the most members?",
        {"A": "football team", "B": "baseball team", "C": "chess club"},
        "baseball team",
        rationale="Find the greatest number in the table. The greatest number is 38.\n"
        "Now find the corresponding team. Baseball team corresponds to 38.",
    )
    assert mentions_answer("The greatest number is 38.", record)
    assert not mentions_answer("Find the greatest number in the table.", record)
    step = next(p for p in template_probes(record).probes if p["rule"] == "step_justification")
    assert step["reveals_answer"]


# Hand-written probes per dataset: (text, reveals the answer?). Each leaking one states or implies
# the gold answer in a way the checker of its type accepts; the clean ones do not.
CASES = {
    "gsm8k": [
        ("Janet's ducks lay 16 eggs per day. The answer is 18. What did she sell?", True),
        ("Explain why she makes $18.00.", True),
        ("Why does the solution end with 9 * 2?", True),  # the final step, result left out
        ("What is the answer to the problem? \\boxed{18}", True),
        ("How many eggs does Janet sell each day?", False),
        ("If she sold the eggs for $3 each instead, how much would she make?", False),
        (fx.GSM8K.question + "\n\nWhy subtract 3 and 4 from 16?", False),
    ],
    "gsm8k_reversal": [
        ("Suppose the ducks lay 16 eggs. Check that she makes $18.", True),
        ("How many eggs does she sell for $18 at $2 each?", False),
    ],
    "math": [
        ("Given that the sum is $\\dfrac{3}{4}$, explain each step.", True),
        ("The final answer is 0.75. Why?", True),  # math-verify: 0.75 = 3/4
        ("Why is $\\frac{3}{4}$ the correct answer?", True),
        ("Why rewrite $\\frac{1}{2}$ as $\\frac{2}{4}$?", False),
        ("What is $\\frac{1}{3}+\\frac{1}{6}$?", False),
    ],
    "tabmwp": [
        ("Ava read 12 books and Leo 7, a difference of 5. Why subtract?", True),
        ("Why is 12 - 7 the computation to do?", True),
        ("Which column of the table holds the numbers to compare?", False),
    ],
    "commonsense_qa": [
        ("Why is the fridge the place where milk stays cold?", True),
        ("Explain why option B is correct.", True),
        ("Why are both (A) oven and (C) desk wrong?", True),  # rules out every other option
        ("A student chose (A) oven. What is wrong with picking it?", False),  # one of two others
        ("Where else might food be kept cold?", False),
        (fx.COMMONSENSE_QA.question + "\n\nWhat do the options have in common?", False),
    ],
    "arc_challenge": [
        ("The answer is (3). Why is it a gas?", True),
        ("Why is oxygen a gas at room temperature?", True),
        ("Why is (1) iron not a gas?", False),
    ],
    "openbookqa": [
        ("Why is the sun a star?", True),
        ("Why is the answer not a planet, a moon or a comet?", True),  # rules out every other option
        ("What is the difference between a planet and a moon?", False),  # two of three others: still open
        ("What is a comet made of?", False),
    ],
    "date_understanding": [
        ("If today is May 1, 2021, what was yesterday?", True),  # the gold date, written out
        ("Explain why (A) is the right answer.", True),
        ("Why is 04/29/2021 wrong?", False),
        ("What date is one day after April 30 in any year?", False),
    ],
    "strategyqa": [
        ('A student answered "yes". What mistake did they make?', True),  # denies the only other answer
        ("Explain why the answer is no.", True),
        ("Is it true that the answer is \\boxed{No}?", True),
        ("Could an animal with no wings fly? Answer yes or no.", False),
        ("What would a cat need in order to fly?", False),
    ],
    "boolq": [
        ("Explain why the answer is yes.", True),
        ('A student said "no". Where did they go wrong?', True),
        ("Why does air scatter blue light more than red light?", False),
    ],
    "anli": [
        ("Explain why the premise contradicts the hypothesis.", True),
        ("Why is the pair neither entailment nor neutral?", True),  # rules out both other labels
        ("A student labelled this pair as neutral. What is wrong with that judgement?", False),
        ("Can a sleeping man be awake at the same time?", False),
    ],
    "esnli": [
        ("Why does the premise entail the hypothesis?", True),
        ("The label is entailment. Explain it.", True),
        ("Rewrite the hypothesis so that the relation becomes contradiction.", False),
        ("Is snow found outside?", False),
    ],
}


@pytest.mark.parametrize(
    ("dataset", "text", "expected"),
    [(dataset, text, expected) for dataset, cases in CASES.items() for text, expected in cases],
)
def test_written_probes_are_checked_against_the_gold_answer(dataset, text, expected):
    assert reveals_answer(text, fx.BY_DATASET[dataset]) is expected


def test_every_dataset_has_leaking_and_clean_cases():
    assert set(CASES) == set(fx.BY_DATASET)
    assert all({expected for _, expected in cases} == {True, False} for cases in CASES.values())


def test_restating_the_question_reveals_nothing():
    for record in fx.BY_DATASET.values():
        assert not reveals_answer(record.question, record)
        assert not reveals_answer(f"Question:\n{record.question}\n\nWhat makes this hard?", record)


def test_a_changed_question_keeps_the_mentions_it_already_had():
    # The gold 16 is not in the reversal question; 18 is, so a variant repeating 18 says nothing new.
    variant = fx.GSM8K_REVERSAL.question.replace("eats 3", "eats 5")
    assert not reveals_answer(f"Consider this variant:\n\n{variant}\n\nSolve it.", fx.GSM8K_REVERSAL)
    assert reveals_answer(f"Consider this variant:\n\n{variant}\n\nThe original answer was 16.", fx.GSM8K_REVERSAL)


def test_mentions_answer_is_what_templates_avoid_quoting():
    assert mentions_answer("She makes 9 * 2 = $18 every day.", fx.GSM8K)
    assert mentions_answer("She makes 9 * 2 every day.", fx.GSM8K)
    assert not mentions_answer("Janet sells 16 - 3 - 4 = 9 duck eggs a day.", fx.GSM8K)
    assert mentions_answer("(C) will", fx.COMMONSENSE_QA) is False
    assert mentions_answer("Oxygen is a gas.", fx.ARC)


def test_a_distractor_whose_text_holds_the_answer_is_never_named():
    record = fx._choice(
        "dup", "commonsense_qa", "Where is milk kept?", {"A": "fridge", "B": "fridge door", "C": "oven"}, "A"
    )
    for _ in range(3):
        probes = {p["rule"]: p for p in template_probes(record).probes}
        assert "(B)" not in probes["counterfactual"]["question"].split("(C) oven", 1)[1]
        assert "(C) oven" in probes["error_diagnosis"]["question"].split("(C) oven", 1)[1]
        assert not any(p["reveals_answer"] for p in probes.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=400))
def test_any_text_is_checked_without_crashing(text):
    for dataset in ("gsm8k", "commonsense_qa", "date_understanding", "strategyqa", "esnli", "tabmwp"):
        assert isinstance(reveals_answer(text, fx.BY_DATASET[dataset]), bool)


def test_huge_and_odd_probes():
    for record in fx.BY_DATASET.values():
        for text in ("", "\\boxed{", "answer is " * 2000, "é" * 10000 + " 18", "(((((" * 500):
            assert isinstance(reveals_answer(text, record), bool)


def test_rows_carry_the_flag_and_written_rows_are_checked():
    probes = [
        {"rule": "cause", "question": "Why is the answer 18?", "teacher_answer": None},
        {"rule": "analogy", "question": "Give a similar problem.", "teacher_answer": None},
        {"rule": "inverse", "question": "Why?", "teacher_answer": None, "reveals_answer": True},
    ]
    row = build_rl_row(fx.GSM8K, 0, probes)
    assert [p["reveals_answer"] for p in row["extra_info"]["probes"]] == [True, False, True]
    assert [p["reveals_answer"] for p in parse_probes(row["extra_info"], 0)] == [True, False, True]
    old = {"probes": [{"rule": "cause", "question": "Why?", "teacher_answer": None}]}
    assert parse_probes(old, 3)[0]["reveals_answer"] is None  # a row written before the flag


def test_flagged_keeps_what_the_rule_knows():
    assert flagged({"rule": "inverse", "question": "Find x.", "teacher_answer": None}, fx.GSM8K)["reveals_answer"]
    assert not flagged({"rule": "cause", "question": "Why?", "teacher_answer": None}, fx.GSM8K)["reveals_answer"]
    assert RULES["inverse"].needs_answer and not any(r.needs_answer for n, r in RULES.items() if n != "inverse")


# --- teacher-written probes through the pipeline ----------------------------------------------

TEACHER_RECORDS = [fx.GSM8K, fx.COMMONSENSE_QA, fx.STRATEGYQA, fx.ESNLI, fx.DATE, fx.MATH]
# What the stub teacher writes per record: cause leaks the answer, analogy does not, inverse is
# written without the answer but is flagged because the rule needs it.
LEAKING = {
    "g1": "Janet makes $18 a day. Which facts decide that?",
    "c1": "Milk is kept in the fridge. Why there?",
    "s1": 'Someone answered "yes" to whether a cat can fly unaided. What did they get wrong?',
    "e1": "Explain why the premise entails the hypothesis.",
    "d1": "If today is 05/01/2021, what facts in the question show it?",
    "m1": "Show that the sum equals $\\tfrac{3}{4}$.",
}


def _record_of(content: str):
    return next(record for record in TEACHER_RECORDS if record.question in content)


def teacher_script(body: dict) -> str:
    content = body["messages"][0]["content"]
    if "You write explanatory probes" in content:
        record = _record_of(content)
        rule = content.split("Kind of probe: ", 1)[1].split(" ", 1)[0]
        if rule == "cause":
            return LEAKING[record.id]
        if rule == "analogy":
            return f"Probe: Give another question answered like the one about {record.id}, and answer it."
        return "Working backwards, which given fact could you recover?"
    return "Because. \\boxed{1}"


def test_teacher_written_probes_are_checked_with_the_answer_checkers(tmp_path):
    out = tmp_path / "teacher"
    endpoint = {"concurrency": 4, "timeout_s": 10.0, "backoff_initial_s": 0.01, "backoff_max_s": 0.02}
    with StubServer(teacher_script) as stub:
        config = BuildConfig(
            dataset="gsm8k",
            out_dir=out,
            rules=("inverse", "analogy", "cause"),
            teacher=EndpointConfig(stub.base_url, "teacher", **endpoint),
            probe_source="teacher",
            consistency_filter=False,
            teacher_rationale=False,
            progress=False,
        )
        result = build(config, LoadResult(records=list(TEACHER_RECORDS), rows_read=len(TEACHER_RECORDS)))
        prompts = [body["messages"][0]["content"] for body in stub.bodies.values()]
    assert result.failed_requests == 0
    rl = pd.read_parquet(out / "rl_train.parquet")
    for index, info in enumerate(rl["extra_info"]):
        flags = {p["rule"]: p["reveals_answer"] for p in parse_probes(info, index)}
        assert flags == {"cause": True, "analogy": False, "inverse": True}, info["id"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rules"]["cause"]["kept_revealing"] == len(TEACHER_RECORDS)
    assert stats["rules"]["analogy"]["kept_revealing"] == 0
    assert stats["askable_probes_per_kept_question"] == 1.0
    assert stats["kept_questions_with_revealing_probes"] == len(TEACHER_RECORDS)
    # the SFT data keeps every answered probe, flagged or not
    sft = pd.read_parquet(out / "sft_train.parquet")
    assert sorted(sft[sft["kind"] == "probe"]["rule"]) == sorted(["analogy", "cause", "inverse"] * len(TEACHER_RECORDS))
    log = [json.loads(line) for line in (out / "probes.jsonl").read_text().splitlines()]
    assert {(row["rule"], row["reveals_answer"]) for row in log} == {
        ("cause", True),
        ("analogy", False),
        ("inverse", True),
    }
    # the authoring prompt tells the teacher to keep the answer hidden, except for inverse
    authoring = [p for p in prompts if "You write explanatory probes" in p]
    assert len(authoring) == 3 * len(TEACHER_RECORDS)
    assert all(
        (messages.ANSWER_NEEDED in p) == ("Kind of probe: inverse" in p)
        and (messages.KEEP_ANSWER_HIDDEN in p) != ("Kind of probe: inverse" in p)
        for p in authoring
    )
