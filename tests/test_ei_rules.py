"""The ten EI rules: template slots, applicability, determinism, and the teacher-authored form."""

from __future__ import annotations

import re

import pytest

from exgrpo_verl.datasets import Record
from exgrpo_verl.probes import messages, slots
from exgrpo_verl.probes.rules import RULE_NAMES, RULES, NotApplicable, check_rule_names, template_probes

GSM = Record(
    id="g1",
    data_source="gsm8k",
    question="Janet's ducks lay 16 eggs per day. She eats 3 and bakes with 4. She sells the rest for $2 each. "
    "How much does she make?",
    answer="18",
    split="test",
    rationale="Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day.",
    sub_questions=(
        ("How many eggs does Janet sell?", "Janet sells 16 - 3 - 4 = 9 duck eggs a day."),
        ("How much does she make?", "She makes 9 * 2 = $18 every day."),
    ),
)
CSQA = Record(
    id="c1",
    data_source="commonsense_qa",
    question="Where is milk kept cold?\n\nAnswer choices:\n(A) oven\n(B) fridge\n(C) desk",
    answer="B",
    split="validation",
    choices={"A": "oven", "B": "fridge", "C": "desk"},
)
YESNO = Record(id="s1", data_source="strategyqa", question="Can a cat fly unaided?", answer="no", split="train")
NLI = Record(
    id="n1",
    data_source="anli",
    question="Premise: A man sleeps.\nHypothesis: A man is awake.\n\nDoes the premise entail ...?",
    answer="contradiction",
    split="test",
)
DATE = Record(
    id="d1",
    data_source="date_understanding",
    question="Yesterday was April 30, 2021. What is the date today?\n\nAnswer choices:\n(A) 05/01/2021\n(B) 04/29/2021",
    answer="05/01/2021",
    split="test",
    choices={"A": "05/01/2021", "B": "04/29/2021"},
)


def _by_rule(record: Record) -> dict[str, list]:
    result = template_probes(record)
    grouped: dict[str, list] = {}
    for probe in result.probes:
        grouped.setdefault(probe["rule"], []).append(probe)
    return grouped


def test_there_are_ten_rules_with_both_forms():
    assert RULE_NAMES == (
        "counterfactual",
        "decomposition",
        "step_justification",
        "inverse",
        "principle",
        "assumption",
        "error_diagnosis",
        "generalization",
        "analogy",
        "cause",
    )
    for rule in RULES.values():
        assert rule.summary and len(rule.teacher_instruction) > 40


def test_gsm8k_gets_every_rule_and_probes_are_self_contained():
    grouped = _by_rule(GSM)
    assert set(grouped) == set(RULE_NAMES)
    for probes in grouped.values():
        for probe in probes:
            assert "Janet" in probe["question"]  # each probe restates the problem it is about


def test_counterfactual_changes_one_number():
    (probe,) = _by_rule(GSM)["counterfactual"]
    changed = re.search(r"in which (\S+) has been changed to (\S+):", probe["question"])
    old, new = changed.groups()
    assert old != new and old in GSM.question
    variant = probe["question"].split(":\n\n", 1)[1]
    assert variant.count(new) >= 1 and probe["teacher_answer"] is None


def test_socratic_sub_questions_become_decomposition_probes_with_gold():
    (probe,) = _by_rule(GSM)["decomposition"]  # the last sub-question restates Q and is left out
    assert probe["question"].endswith("Answer this part of the problem first: How many eggs does Janet sell?")
    assert probe["teacher_answer"] == "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n\n\\boxed{9}"


def test_step_justification_quotes_a_rationale_step_and_names_its_operation():
    (probe,) = _by_rule(GSM)["step_justification"]
    quoted = re.search(r'step:\n"(.*)"', probe["question"]).group(1)
    # not the final step "She makes 9 * 2 = $18": it holds the answer
    assert quoted == GSM.rationale.splitlines()[0]
    assert "Why is subtraction the right operation" in probe["question"]
    assert probe["reveals_answer"] is False


def test_inverse_hides_a_number_and_knows_it():
    (probe,) = _by_rule(GSM)["inverse"]
    hidden = re.fullmatch(r"\\boxed\{(\d+)\}", probe["teacher_answer"]).group(1)
    assert hidden in {"16", "3", "4", "2"}  # a given number the solution uses, occurring once
    assert "The answer to the problem is 18." in probe["question"]
    assert re.search(rf"(?<!\d){hidden}(?!\d)", probe["question"]) is None
    assert probe["reveals_answer"] is True  # it needs the answer, so the rollout does not ask it by default


def test_error_diagnosis_corrupts_a_checked_step_and_gives_the_correction():
    (probe,) = _by_rule(GSM)["error_diagnosis"]
    shown = re.search(r'step:\n"(.*)"', probe["question"]).group(1)
    assert shown not in GSM.rationale.splitlines()
    correct, wrong = re.search(r"= (\d+), not (\d+)", probe["teacher_answer"]).groups()
    assert correct != wrong and wrong in shown
    assert probe["teacher_answer"].endswith(f"\\boxed{{{correct}}}")
    # the corrupted step is not the final one: correcting it does not give the answer 18
    assert correct == "9" and "9 * 2" not in shown and not probe["reveals_answer"]


def test_principle_names_the_operations_and_cause_keeps_the_answer_hidden():
    grouped = _by_rule(GSM)
    assert "uses subtraction and multiplication" in grouped["principle"][0]["question"]
    cause = grouped["cause"][0]
    assert "decides its answer" in cause["question"] and "18" not in cause["question"]
    assert cause["reveals_answer"] is False


@pytest.mark.parametrize(
    ("record", "missing"),
    [
        (CSQA, {"decomposition", "step_justification", "inverse", "generalization"}),
        (YESNO, {"decomposition", "step_justification", "inverse", "generalization"}),
        (NLI, {"decomposition", "step_justification", "inverse", "generalization"}),
        (DATE, {"decomposition", "step_justification", "inverse", "generalization"}),
    ],
)
def test_rules_that_do_not_apply_say_why(record, missing):
    result = template_probes(record)
    assert set(result.not_applicable) == missing
    assert all(reason for reason in result.not_applicable.values())
    assert {p["rule"] for p in result.probes} == set(RULE_NAMES) - missing


def test_choice_and_label_templates_use_the_options():
    choice = _by_rule(CSQA)
    # a distractor is removed or diagnosed, and both rules name the same one
    removed = re.search(r"option \((A|C)\) (oven|desk) were removed", choice["counterfactual"][0]["question"])
    chosen = re.search(r"A student chose \((A|C)\) (oven|desk)\.", choice["error_diagnosis"][0]["question"])
    assert removed and chosen and removed.group(1) == chosen.group(1)
    assert "fridge" not in choice["cause"][0]["question"].split("(C) desk", 1)[1]
    assert not any(p["reveals_answer"] for probes in choice.values() for p in probes)
    # yes/no: naming the wrong answer would give the right one away, so neither is named
    yes_no = _by_rule(YESNO)["error_diagnosis"][0]
    assert "the wrong answer" in yes_no["question"] and not re.search(r"\b(yes|no)\b", yes_no["question"])
    nli = _by_rule(NLI)
    target = re.search(r"relation becomes (entailment|neutral)\.", nli["counterfactual"][0]["question"]).group(1)
    assert f"labelled this pair as {target}." in nli["error_diagnosis"][0]["question"]


def test_a_question_without_numbers_or_rationale():
    bare = Record(id="b", data_source="gsm8k", question="How many legs does a spider have?", answer="8", split="t")
    result = template_probes(bare)
    assert result.not_applicable["counterfactual"] == "no number in the question to change"
    assert "step_justification" in result.not_applicable and "error_diagnosis" in result.not_applicable
    assert "inverse" in result.not_applicable and "decomposition" in result.not_applicable


def test_templates_are_deterministic_and_depend_on_the_record():
    assert template_probes(GSM).probes == template_probes(GSM).probes
    other = Record(**{**GSM.__dict__, "id": "another-id"})
    assert [p["rule"] for p in template_probes(other).probes] == [p["rule"] for p in template_probes(GSM).probes]


def test_rule_selection():
    assert check_rule_names(["cause", "inverse"]) == ("inverse", "cause")
    with pytest.raises(ValueError, match="unknown EI rule"):
        check_rule_names(["inverted"])
    only = template_probes(GSM, rules=("cause",))
    assert [p["rule"] for p in only.probes] == ["cause"] and not only.not_applicable


def test_checked_equations_only():
    assert [(e.expression, e.rhs) for e in slots.equations("80 GB / 2 GB/minute = 40 minutes")] == [("80 / 2", "40")]
    assert slots.equations("so 3 * 4 = 13 here") == []  # a step that does not add up is not an equation
    assert slots.equations("$x^2 + 1 = 5$") == []


def test_teacher_authored_form():
    request = messages.authoring_messages("inverse", GSM, GSM.rationale)
    assert len(request) == 1 and request[0]["role"] == "user"
    content = request[0]["content"]
    assert RULES["inverse"].teacher_instruction in content and GSM.question in content and "18" in content
    assert messages.NOT_APPLICABLE in content
    assert messages.parse_authored_probe("  Probe: Why subtract here?  ") == "Why subtract here?"
    assert messages.parse_authored_probe('"Why subtract?"') == "Why subtract?"
    assert messages.parse_authored_probe("NOT_APPLICABLE") is None
    assert messages.parse_authored_probe("not applicable.") is None
    assert messages.parse_authored_probe("   ") is None
    assert messages.parse_authored_probe("x" * 5000) is None


def test_not_applicable_is_a_value_not_junk():
    outcome = RULES["inverse"].template(CSQA, None)
    assert isinstance(outcome, NotApplicable) and "numeric" in outcome.reason
