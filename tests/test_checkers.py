"""One table per answer type: real-looking model outputs, expected verdicts, near misses."""

import threading

import pytest

from exgrpo_verl.answers import grade
from exgrpo_verl.answers.math_expr import math_equal
from exgrpo_verl.answers.numbers import is_plain_number, parse_number
from exgrpo_verl.data_sources import DATA_SOURCES, UnknownDataSourceError, get_data_source

NUMBER_CASES = [
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72", True),
    ("The answer is $18.", "18", True),
    ("So she makes \\boxed{18} dollars.", "18", True),
    ("\\boxed{18.0}", "18", True),
    ("\\boxed{18 dollars}", "18", True),
    ("The answer is 1,000.", "1000", True),
    ("\\boxed{\\$1,000}", "1,000", True),
    ("\\boxed{x = 5}", "5", True),
    ("\\boxed{-3}", "-3", True),
    ("\\boxed{\u22123}", "-3", True),
    ("\\boxed{\\frac{3}{4}}", "0.75", True),
    ("\\boxed{3/4}", "0.75", True),
    ("The answer is 0.5", ".5", True),
    ("\\boxed{18.5}", "18", False),
    ("\\boxed{180}", "18", False),
    ("\\boxed{1.000}", "1000", False),
    ("\\boxed{3}", "-3", False),
    ("48 + 24 = 72", "72", False),  # no final-answer marker
    ("The answer is seventy-two", "72", False),
    ("\\boxed{72} ... actually \\boxed{73}", "72", False),
    ("\\boxed{1e309}", "1", False),
    ("\\boxed{5/0}", "5", False),
    # one number, stated outright: no inequality, no second number, no dropped decimal point
    ("\\boxed{48 + 24 = 72}", "72", True),
    ("The answer is 72. I hope it is correct.", "72", True),
    ("\\boxed{x \\geq 72}", "72", False),
    ("\\boxed{x >= 72}", "72", False),
    ("\\boxed{x \\le 72}", "72", False),
    ("\\boxed{73 \\neq 72}", "72", False),
    ("\\boxed{73 != 72}", "72", False),
    ("\\boxed{72 or 73}", "72", False),
    ("\\boxed{72, 73}", "73", False),
    ("\\boxed{72} and \\boxed{73}", "72", False),
    ("\\boxed{5 hours and 30 minutes}", "5", False),
    ("\\boxed{2 \\times 10^3}", "2", False),
    ("The answer is .5", "5", False),
    ("The answer is .5", "0.5", True),
    ("\\boxed{1000001}", "1000000", False),
    ("\\boxed{1,000,000}", "1000000", True),
]


@pytest.mark.parametrize(("response", "gold", "correct"), NUMBER_CASES)
@pytest.mark.parametrize("source", ["gsm8k", "gsm8k_reversal", "openai/gsm8k"])
def test_numbers(source, response, gold, correct):
    assert grade(source, response, gold)[0] is correct


def test_number_parsing_helpers():
    assert parse_number("$1,234.50 per week") == 1234.5
    assert parse_number("no digits") is None
    assert parse_number("x = 5") == 5 and parse_number("x - y >= 5") is None and parse_number("5 or 6") is None
    assert is_plain_number("$18") and is_plain_number("-2.5") and not is_plain_number("18 dollars")
    assert is_plain_number(".5") and not is_plain_number("x >= 5")


MATH_CASES = [
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", True),
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", True),
    ("\\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}", True),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", True),
    ("\\boxed{(1,2)}", "(1, 2)", True),
    ("\\boxed{x^2+2x+1}", "(x+1)^2", True),
    ("\\boxed{90^\\circ}", "90", True),
    ("The answer is $\\pi$", "\\pi", True),
    ("\\boxed{\\frac{1}{3}}", "\\frac{1}{2}", False),
    ("\\boxed{2\\sqrt{3}}", "\\sqrt{8}", False),
    ("\\boxed{(2,1)}", "(1, 2)", False),
    ("\\boxed{x^2+1}", "(x+1)^2", False),
    ("no final answer", "3", False),
]


@pytest.mark.parametrize(("response", "gold", "correct"), MATH_CASES)
def test_math(response, gold, correct):
    assert grade("math", response, gold)[0] is correct


def test_math_works_off_the_main_thread():
    """verl grades on executor threads, where math-verify's signal timeout cannot run."""
    results = {}

    def work():
        results["eq"] = math_equal("2\\sqrt{2}", "\\sqrt{8}", timeout_s=30)
        results["ne"] = math_equal("2\\sqrt{3}", "\\sqrt{8}", timeout_s=30)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(120)
    assert results == {"eq": True, "ne": False}


CSQA_CHOICES = {"label": ["A", "B", "C", "D", "E"], "text": ["bank", "library", "river", "hot dog", "dog"]}
CHOICE_CASES = [
    ("\\boxed{B}", "B", None, True),
    ("The answer is (B).", "B", None, True),
    ("The answer is B) library", "B", None, True),
    ("\\boxed{B. library}", "B", None, True),
    ("\\boxed{Option B}", "B", None, True),
    ("Option B", "B", None, False),  # no final-answer marker
    ("\\boxed{b}", "B", None, True),
    ("\\boxed{library}", "B", CSQA_CHOICES, True),
    ("The answer is the library.", "B", CSQA_CHOICES, True),
    ("\\boxed{hot dog}", "D", CSQA_CHOICES, True),
    ("\\boxed{dog}", "E", CSQA_CHOICES, True),
    ("\\boxed{C}", "B", None, False),
    ("\\boxed{F}", "F", CSQA_CHOICES, False),  # not an option
    ("\\boxed{library}", "B", None, False),  # option text without options to match it against
    ("\\boxed{bank or library}", "B", CSQA_CHOICES, False),  # ambiguous
    ("The answer is a library", "A", CSQA_CHOICES, False),  # "a" is an article, not option A
    ("\\boxed{3}", "3", {"label": ["1", "2", "3", "4"], "text": ["w", "x", "y", "z"]}, True),
    ("\\boxed{(3)}", "3", None, True),
    ("\\boxed{2}", "3", None, False),
    # a second option named is no answer
    ("\\boxed{A or B}", "A", None, False),
    ("\\boxed{A, B}", "B", None, False),
    ("The answer is (B) and (C).", "B", None, False),
    ("\\boxed{A} and \\boxed{B}", "B", None, False),
    ("\\boxed{B or D}", "B", CSQA_CHOICES, False),
    ("\\boxed{B. A dog}", "B", {"label": ["A", "B"], "text": ["A cat", "A dog"]}, True),
]


@pytest.mark.parametrize(("response", "gold", "choices", "correct"), CHOICE_CASES)
@pytest.mark.parametrize("source", ["commonsense_qa", "arc_challenge", "openbookqa"])
def test_choices(source, response, gold, choices, correct):
    assert grade(source, response, gold, choices)[0] is correct


def test_choice_gold_given_as_option_text():
    assert grade("commonsense_qa", "\\boxed{B}", "library", CSQA_CHOICES)[0]


YES_NO_CASES = [
    ("\\boxed{Yes}", "yes", True),
    ("\\boxed{yes}", True, True),
    ("The answer is no.", False, True),
    ("\\boxed{True}", "Yes", True),
    ("\\boxed{false}", "No", True),
    ("The answer is: Yes, because plants need light.", "yes", True),
    ("\\boxed{The claim is true}", "yes", True),
    ("\\boxed{No}", "yes", False),
    ("\\boxed{not true}", "yes", False),
    ("\\boxed{yesterday}", "yes", False),
    ("\\boxed{maybe}", "no", False),
    ("\\boxed{yes or no}", "yes", False),
    ("\\boxed{Yes/No}", "yes", False),
    ("\\boxed{no, yes}", "no", False),
    ("\\boxed{Yes} and \\boxed{No}", "no", False),
    ("The answer is yes. No doubt about it.", "yes", True),
]


@pytest.mark.parametrize(("response", "gold", "correct"), YES_NO_CASES)
@pytest.mark.parametrize("source", ["strategyqa", "boolq"])
def test_yes_no(source, response, gold, correct):
    assert grade(source, response, gold)[0] is correct


NLI_CASES = [
    ("\\boxed{entailment}", "entailment", True),
    ("\\boxed{Contradiction}", "contradiction", True),
    ("The answer is neutral.", "neutral", True),
    ("\\boxed{The premise entails the hypothesis}", "entailment", True),
    ("\\boxed{contradiction}", 2, True),
    ("\\boxed{entailment}", 0, True),
    ("\\boxed{neutral}", "1", True),
    ("\\boxed{neutral}", "entailment", False),
    ("\\boxed{entailment or contradiction}", "entailment", False),
    ("\\boxed{entailment} and \\boxed{neutral}", "neutral", False),
    ("\\boxed{unknown}", "neutral", False),
]


@pytest.mark.parametrize(("response", "gold", "correct"), NLI_CASES)
@pytest.mark.parametrize("source", ["anli", "esnli"])
def test_nli(source, response, gold, correct):
    assert grade(source, response, gold)[0] is correct


DATE_OPTIONS = {"A": "05/01/2021", "B": "04/30/2021", "C": "05/02/2021"}
DATE_CASES = [
    ("\\boxed{05/01/2021}", "05/01/2021", None, True),
    ("\\boxed{5/1/2021}", "05/01/2021", None, True),
    ("The answer is 2021-05-01.", "05/01/2021", None, True),
    ("\\boxed{(A)}", "05/01/2021", DATE_OPTIONS, True),
    ("\\boxed{A}", "A", DATE_OPTIONS, True),
    ("\\boxed{05/02/2021}", "05/01/2021", None, False),
    ("\\boxed{01/05/2021}", "05/01/2021", None, False),
    ("\\boxed{B}", "05/01/2021", DATE_OPTIONS, False),
    ("\\boxed{13/01/2021}", "05/01/2021", None, False),
    ("\\boxed{05/01/2021 or 05/02/2021}", "05/01/2021", None, False),
    ("\\boxed{05/01/2021 (2021-05-01)}", "05/01/2021", None, True),
]


@pytest.mark.parametrize(("response", "gold", "choices", "correct"), DATE_CASES)
def test_dates(response, gold, choices, correct):
    assert grade("date_understanding", response, gold, choices)[0] is correct


TABMWP_CASES = [
    ("\\boxed{14}", "14", None, True),
    ("\\boxed{$2.50}", "$2.50", None, True),
    ("\\boxed{5/8}", "5/8", None, True),
    ("The answer is increasing.", "increasing", None, True),
    ("\\boxed{Yes}", "yes", None, True),
    ("\\boxed{B}", "decreasing", ["increasing", "decreasing"], True),
    ("\\boxed{15}", "14", None, False),
    ("\\boxed{increasing}", "decreasing", None, False),
    ("\\boxed{14 or 15}", "14", None, False),
]


@pytest.mark.parametrize(("response", "gold", "choices", "correct"), TABMWP_CASES)
def test_tabmwp(response, gold, choices, correct):
    assert grade("tabmwp", response, gold, choices)[0] is correct


def test_several_acceptable_golds():
    assert grade("gsm8k", "\\boxed{7}", ["6", "7"])[0]
    assert not grade("gsm8k", "\\boxed{8}", ("6", "7"))[0]


def test_every_data_source_has_a_checker_and_aliases_resolve():
    assert len(DATA_SOURCES) == 12
    assert sum(s.held_in for s in DATA_SOURCES) == 8
    assert get_data_source("HuggingFaceH4/MATH-500").name == "math"
    assert get_data_source("Tau/CommonSense-QA").name == "commonsense_qa"
    for source in DATA_SOURCES:
        assert grade(source.name, "nothing", "1") == (False, "")


def test_unknown_data_source_names_supported_ones():
    with pytest.raises(UnknownDataSourceError, match="'squad'.*gsm8k.*boolq"):
        grade("squad", "\\boxed{1}", "1")
