"""MATH grading: the forms that must be accepted, their near misses (false accepts are reward hacks),
and the cases mapped from math-verify's own test suite."""

from __future__ import annotations

import pytest

from exgrpo_verl.answers import grade
from exgrpo_verl.answers.math_expr import math_equal
from tests.math_verify_cases import MATH_VERIFY_CASES

# (gold, response, correct). Each accepted form sits next to the near misses that must not pass.
RELATION_CASES = [
    # planes and lines: the whole equation, never its right-hand side alone
    ("2x - y + 3z + 8 = 0", "\\boxed{2x - y + 3z + 8 = 0}", True),
    ("2x - y + 3z + 8 = 0", "\\boxed{-4x + 2y - 6z - 16 = 0}", True),  # times -2
    ("2x - y + 3z + 8 = 0", "\\boxed{x + y + z - 1 = 0}", False),
    ("2x - y + 3z + 8 = 0", "\\boxed{2x - y + 3z - 8 = 0}", False),
    ("2x - y + 3z + 8 = 0", "\\boxed{0}", False),
    ("x + y = 10", "\\boxed{x + y = 10}", True),
    ("x + y = 10", "\\boxed{x - y = 10}", False),
    ("x + y = 10", "\\boxed{10}", False),
    ("a + 3z = 0", "\\boxed{0}", False),
    ("y = 2x + 3", "\\boxed{2x - y + 3 = 0}", True),
    ("y = 2x + 3", "\\boxed{y = 2x - 3}", False),
    ("y = 2x + 3", "\\boxed{3}", False),
    ("\\frac{x^2}{4} + \\frac{y^2}{3} = 1", "\\boxed{\\frac{x^2}{16} + \\frac{y^2}{12} = \\frac14}", True),
    ("x^2/4 + y^2/3 = 1", "\\boxed{x^2/16 + y^2/12 = 1/4}", True),
    ("x^2/4 + y^2/3 = 1", "\\boxed{x^2/16 + y^2/12 = 1}", False),
    ("x^2/4 + y^2/3 = 1", "\\boxed{x^2/4 + y^2/3 = 2}", False),
    # inequalities: direction, strictness, and a positive factor
    ("x \\le 1", "\\boxed{x \\leq 1}", True),
    ("x \\le 1", "\\boxed{-x \\ge -1}", True),
    ("x \\le 1", "\\boxed{1 \\geq x}", True),
    ("x \\le 1", "\\boxed{2x \\le 2}", True),
    ("x \\le 1", "\\boxed{x \\ge 1}", False),
    ("x \\le 1", "\\boxed{x < 1}", False),
    ("x \\le 1", "\\boxed{-x \\le -1}", False),
    ("x \\le 1", "\\boxed{-2x \\le 2}", False),
    ("x \\le 1", "\\boxed{1}", False),
    ("x > 5", "\\boxed{5 < x}", True),
    ("x > 5", "\\boxed{x \\geq 5}", False),
    ("x \\neq 3", "\\boxed{x \\ne 3}", True),
    ("x \\neq 3", "\\boxed{x = 3}", False),
    ("x \\neq 3", "\\boxed{3}", False),
    ("3 \\le x < 7", "\\boxed{[3, 7)}", True),
    ("3 \\le x < 7", "\\boxed{[3, 7]}", False),
    # a number meets an equation only as the value of a named quantity
    ("5", "\\boxed{x = 5}", True),
    ("5", "\\boxed{x = 2 + 3 = 5}", True),
    ("5", "\\boxed{x - 3 = 5}", False),
    ("5", "\\boxed{2x = 5}", False),
    ("5", "\\boxed{x = 6}", False),
    ("k = 1", "\\boxed{1}", True),
    ("k = 1", "\\boxed{2}", False),
    ("(p, q) = (3, 2)", "\\boxed{(3, 2)}", True),
    ("(p, q) = (3, 2)", "\\boxed{(2, 3)}", False),
    # lists of equations, in any order
    ("a_3 = 2, a_{37} = 19", "\\boxed{a_{37} = 19, \\quad a_3 = 2}", True),
    ("a_3 = 2, a_{37} = 19", "\\boxed{a_3 = 19, a_{37} = 2}", False),
    ("a_3 = 2, a_{37} = 19", "\\boxed{a_3 = 2}", False),
    ("x = 1, y = 2", "\\boxed{y = 2, x = 1}", True),
    ("x = 1, y = 2", "\\boxed{x = 1, y = 3}", False),
    ("x = 1, y = 2", "\\boxed{x + y = 3, y = 2}", False),
]

NUMBER_AND_TEXT_CASES = [
    # a leading decimal point
    ("0.5", "\\boxed{.5}", True),
    ("\\frac{1}{2}", "\\boxed{.5}", True),
    ("\\frac{1}{2}", "The answer is .5", True),
    ("5", "\\boxed{.5}", False),
    ("5", "The answer is .5", False),
    ("-0.5", "\\boxed{-.5}", True),
    ("0.5", "\\boxed{-.5}", False),
    # big integers compare exactly
    ("12000023", "\\boxed{12,000,023}", True),
    ("12000023", "\\boxed{12000024}", False),
    ("1000000", "\\boxed{1000001}", False),
    # \text{}, \mbox{}, \mathrm{} the same way on both sides
    ("20\\text{ cm}^2", "\\boxed{20\\text{ cm}^2}", True),
    ("20\\text{ cm}^2", "\\boxed{20 \\mbox{ cm}^2}", True),
    ("20\\text{ cm}^2", "\\boxed{20}", True),
    ("20\\text{ cm}^2", "\\boxed{21\\text{ cm}^2}", False),
    ("20\\text{ cm}^2", "\\boxed{2}", False),
    ("15\\mbox{ cm}^2", "\\boxed{15\\mbox{ cm}^2}", True),
    ("15\\mbox{ cm}^2", "\\boxed{15\\text{ cm}^2}", True),
    ("15\\mbox{ cm}^2", "\\boxed{16\\mbox{ cm}^2}", False),
    ("1 - \\frac{1}{\\mathrm{e}}", "\\boxed{1 - \\frac{1}{\\mathrm{e}}}", True),
    ("1 - \\frac{1}{\\mathrm{e}}", "\\boxed{1 - \\frac{1}{e}}", True),
    ("1 - \\frac{1}{\\mathrm{e}}", "\\boxed{1 + \\frac{1}{\\mathrm{e}}}", False),
    ("1 - \\frac{1}{\\mathrm{e}}", "\\boxed{1 - \\frac{1}{\\mathrm{e}^2}}", False),
    ("\\text{Evelyn}", "\\boxed{\\text{Evelyn}}", True),
    ("\\text{Evelyn}", "\\boxed{\\text{Carla}}", False),
    ("\\text{(C)}", "\\boxed{\\text{(C)}}", True),
    ("\\text{(C)}", "\\boxed{\\text{(D)}}", False),
    # the final-answer line ends with the answer
    ("12000023", "Final Answer: The final answer is 12,000,023. I hope it is correct.", True),
    ("12000023", "Final Answer: The final answer is 12,000,024. I hope it is correct.", False),
    ("28\\%", "Final Answer: The final answer is $28 \\%$. I hope it is correct.", True),
    ("\\frac{3}{4}", "Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", True),
    ("(-6, 10)", "Final Answer: The final answer is \\((-6, 10)\\). I hope it is correct.", True),
    ("(-6, 10)", "Final Answer: The final answer is \\((-6, 10]\\). I hope it is correct.", False),
]

# What MATH grading accepted before (from a guarded script) and must keep accepting from any caller.
KEPT_CASES = [
    ("\\sqrt{2}", "\\boxed{\\sqrt 2}", True),
    ("\\sqrt{2}", "\\boxed{\\sqrt 3}", False),
    ("\\frac{1}{2}", "\\boxed{\\frac12}", True),
    ("\\frac{1}{2}", "\\boxed{\\frac13}", False),
    ("\\frac{1}{2}", "\\boxed{0.5}", True),
    ("\\frac{1}{2}", "\\boxed{0.6}", False),
    ("\\frac{1}{2}", "\\boxed{\\dfrac{2}{4}}", True),
    ("(x+1)^2", "\\boxed{x^2+2x+1}", True),
    ("(x+1)^2", "\\boxed{x^2+1}", False),
    ("\\sqrt{8}", "\\boxed{2\\sqrt{2}}", True),
    ("\\sqrt{8}", "\\boxed{2\\sqrt{3}}", False),
    ("(-\\infty, 3]", "\\boxed{(-\\infty,3]}", True),
    ("(-\\infty, 3]", "\\boxed{(-\\infty,3)}", False),
    ("[2, 5)", "\\boxed{[2,5)}", True),
    ("[2, 5)", "\\boxed{(2,5)}", False),
    ("(1, 2)", "\\boxed{(1,2)}", True),
    ("(1, 2)", "\\boxed{(2,1)}", False),
    ("90", "\\boxed{90^\\circ}", True),
    ("90^\\circ", "\\boxed{90}", True),
    ("90^\\circ", "\\boxed{45^\\circ}", False),
    ("\\pi", "The answer is $\\pi$", True),
    ("\\frac{14}{3}", "so $f(-2)+f(-1)+f(0)=2+\\frac{5}{3}+1=\\boxed{\\frac{14}{3}}$", True),
    # several boxes that list one answer; a correction leaves only the last box
    ("1, -2", "the solutions are \\[ \\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}. \\]", True),
    ("1, -2", "the solutions are \\boxed{-2} and \\boxed{2}", False),
    ("2", "\\boxed{1} and \\boxed{2}", False),
    ("2", "\\boxed{1} no, wait: \\boxed{2}", True),
    ("1, 2", "\\boxed{1} no, wait: \\boxed{2}", False),
    ("2", "\\boxed{1 \\text{ or } 2}", False),
    ("2", "\\boxed{\\pm 2}", False),
]

TABLE = RELATION_CASES + NUMBER_AND_TEXT_CASES + KEPT_CASES


@pytest.mark.parametrize(("gold", "response", "correct"), TABLE)
def test_math_table(gold, response, correct):
    assert grade("math", response, gold, timeout_s=30)[0] is correct


def _expected(label: bool, ours: bool | None) -> bool:
    return label if ours is None else ours


@pytest.mark.parametrize(
    ("gold", "response", "expected"),
    [
        pytest.param(gold, response, _expected(label, ours), id=case)
        for case, gold, response, label, ours, _ in MATH_VERIFY_CASES
    ],
)
def test_math_verify_suite(gold, response, expected):
    """math-verify's own cases; where our verdict differs on purpose the table says why."""
    assert grade("math", response, gold, timeout_s=30)[0] is expected


def test_math_verify_table_differs_only_where_it_says_why():
    differing = [(case, why) for case, _, _, label, ours, why in MATH_VERIFY_CASES if ours is not None]
    assert all(why for _, why in differing)
    assert all(ours != label for *_, label, ours, _ in MATH_VERIFY_CASES if ours is not None)
    # false accepts are never a deliberate difference: we only ever reject more than math-verify,
    # except for one relation-versus-interval case and one string-escape artefact in its suite
    accepted_more = [case for case, _, _, label, ours, _ in MATH_VERIFY_CASES if ours is True and label is False]
    assert len(accepted_more) == 2
    assert len(differing) / len(MATH_VERIFY_CASES) < 0.1


def test_math_equal_is_symmetric_in_form_not_in_roles():
    """The gold decides what kind of answer is wanted: a number gold accepts "x = 5", but an
    equation gold is not satisfied by its right-hand side."""
    assert math_equal("x = 5", "5", timeout_s=30)
    assert not math_equal("5", "x + y = 5", timeout_s=30)
