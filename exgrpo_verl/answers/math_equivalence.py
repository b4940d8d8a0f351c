"""Whether two MATH answers are the same mathematical object: math-verify's parser and comparison,
with equations and inequalities compared as relations.

Runs only inside the helper processes (see :mod:`exgrpo_verl.answers.math_worker`): SymPy can take
unbounded time, and the helper's deadline is the only safe way to stop it.

math-verify compares most objects well (numbers, expressions, sets, intervals, matrices), but it
turns a relation into a number in two ways that accept wrong answers: an equation predicted for a
number gold becomes its right-hand side whatever its left side ("x - 3 = 5" for 5), and a gold
equation whose left side is made of symbols only ("x + y = 10") accepts its right-hand side alone.
Here a relation meets a number only as an assignment to a *name* ("x = 5", "f(2) = 5",
"|AB| = 5", "(p, q) = (3, 2)"); two relations are equivalent when they are the same relation up
to a constant factor (positive for inequalities, negative with the direction flipped), or, for
equations, when math-verify finds the same solutions; chains ("x = 5 + 5 + 1 = 11") read as their
first left side and last right side, as math-verify reads them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from latex2sympy2_extended.logic import And
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
from math_verify.grader import sympy_compare_relational, sympy_expr_eq
from sympy import Abs, Basic, Eq, Expr, MatrixBase, Mul, Ne, Pow, Set, Symbol, Tuple, simplify
from sympy import FiniteSet as SympyFiniteSet
from sympy.core.function import AppliedUndef
from sympy.core.relational import GreaterThan, LessThan, Relational, StrictGreaterThan, StrictLessThan

logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # its parse failures are wrong answers here

FLOAT_ROUNDING = 6
NUMERIC_PRECISION = 15
_EXTRACTION = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
_FLIPPED = {
    LessThan: GreaterThan,
    GreaterThan: LessThan,
    StrictLessThan: StrictGreaterThan,
    StrictGreaterThan: StrictLessThan,
}
# A single upright letter (\mathrm{e}, \text{i}): math-verify's parser stops at it inside a
# fraction, so it becomes the plain letter, the same way on both sides.
_UPRIGHT_LETTER = re.compile(r"\\(?:mathrm|text|textrm|mbox|textnormal|operatorname)\s*\{\s*([A-Za-z])\s*\}")


def parse_answer(text: str) -> Basic | MatrixBase | None:
    """The answer as a SymPy object, or None when math-verify cannot read it as mathematics.

    math-verify also returns the extracted text when its parser fails; that text can be a cut-off
    prefix ("1 - \\frac{1}{" for "1 - \\frac{1}{\\mathrm{e}}"), so it is never compared here.
    """
    text = _UPRIGHT_LETTER.sub(r"\1", text)
    for item in parse(f"\\boxed{{{text}}}", _EXTRACTION, parsing_timeout=None):
        if isinstance(item, (Basic, MatrixBase)):
            return item
    return None


def _is_name(expr: Basic) -> bool:
    """A named quantity: x, a_{37}, f(2), AB (read as A*B), A:B, |AB|, or a tuple of names."""
    if isinstance(expr, (Symbol, AppliedUndef)):
        return True
    if isinstance(expr, Abs):
        return _is_name(expr.args[0])
    if isinstance(expr, Pow):
        return expr.args[1] == -1 and _is_name(expr.args[0])
    if isinstance(expr, (Mul, Tuple)):
        return len(expr.args) > 0 and all(_is_name(arg) for arg in expr.args)
    return False


def _equations(expr: Basic) -> list[Relational] | None:
    """The equations of a chain (``And`` of ``Eq`` in written order) or of a single ``Eq``."""
    if isinstance(expr, Eq):
        return [expr]
    if isinstance(expr, And) and expr._unsorted_args and all(isinstance(a, Eq) for a in expr._unsorted_args):
        return list(expr._unsorted_args)
    return None


def _assigned_value(expr: Basic) -> Basic | None:
    """The value of an assignment to a name ("x = 5", "x = 2 + 3 = 5"), or None."""
    chain = _equations(expr)
    if chain is None or not _is_name(chain[0].lhs):
        return None
    return chain[-1].rhs


def _as_relation(expr: Basic) -> Basic:
    """A chain "x = 2 + 3 = 5" as the single equation "x = 5"; anything else unchanged."""
    chain = _equations(expr)
    if chain is not None and len(chain) > 1 and _is_name(chain[0].lhs):
        return Eq(chain[0].lhs, chain[-1].rhs, evaluate=False)
    return expr


def is_relation(expr: Basic) -> bool:
    if isinstance(expr, Relational):
        return True
    return (
        isinstance(expr, And)
        and bool(expr._unsorted_args)
        and all(isinstance(arg, Relational) for arg in expr._unsorted_args)
    )


def _constant_ratio(gold: Expr, pred: Expr) -> Expr | None:
    """gold / pred when it is a finite non-zero constant, else None."""
    if gold == 0 or pred == 0:
        return None
    ratio = simplify(gold / pred)
    if ratio.free_symbols or not ratio.is_number or ratio.is_zero or ratio.is_finite is False:
        return None
    return ratio


def _same_relation(gold: Relational, pred: Relational) -> bool:
    """Same relation up to a constant factor (sign-aware for inequalities)."""
    sides = (gold.lhs, gold.rhs, pred.lhs, pred.rhs)
    if not all(isinstance(side, Expr) for side in sides):  # "(p, q) = (3, 2)": tuples, sets, matrices
        return type(gold) is type(pred) and same_answer(gold.lhs, pred.lhs) and same_answer(gold.rhs, pred.rhs)
    gold_diff, pred_diff = gold.lhs - gold.rhs, pred.lhs - pred.rhs
    if isinstance(gold, Eq) and isinstance(pred, Eq):
        if _constant_ratio(gold_diff, pred_diff) is not None:
            return True
        # Equations with different shapes but the same solutions ("y = 2x + 1" vs "2x - y + 1 = 0"
        # is covered above; this is for forms a factor cannot bridge): math-verify solves both.
        return bool(sympy_compare_relational(gold, pred, FLOAT_ROUNDING, NUMERIC_PRECISION))
    if isinstance(gold, Ne) and isinstance(pred, Ne):
        return _constant_ratio(gold_diff, pred_diff) is not None
    if type(gold) is type(pred):
        ratio = _constant_ratio(gold_diff, pred_diff)
        return ratio is not None and bool(ratio.is_positive)
    if _FLIPPED.get(type(gold)) is type(pred):
        ratio = _constant_ratio(gold_diff, pred_diff)
        return ratio is not None and bool(ratio.is_negative)
    return False


def _has_equation(expr: Basic) -> bool:
    return isinstance(expr, Eq) or (isinstance(expr, And) and any(_has_equation(a) for a in expr.args))


def _relation_against_set(relation: Basic, value: Basic | None, other: Set, relation_is_gold: bool) -> bool:
    """A relation against a set: an assignment "x = [-2, 7]" by its value; inequalities by the set
    they describe ("-2 <= x <= 7" is [-2, 7]); an equation is never read as a set of numbers."""
    if value is not None:
        return same_answer(value, other) if relation_is_gold else same_answer(other, value)
    if _has_equation(relation):
        return False
    gold, pred = (relation, other) if relation_is_gold else (other, relation)
    return bool(sympy_expr_eq(gold, pred, FLOAT_ROUNDING, NUMERIC_PRECISION, allow_set_relation_comp=True))


def _relations_equal(gold: Basic, pred: Basic) -> bool:
    """At least one side is a relation (or a chain of them)."""
    gold_value, pred_value = _assigned_value(gold), _assigned_value(pred)
    if not is_relation(pred):
        if isinstance(pred, Set):
            return _relation_against_set(gold, gold_value, pred, relation_is_gold=True)
        return gold_value is not None and same_answer(gold_value, pred)
    if not is_relation(gold):
        if isinstance(gold, Set):
            return _relation_against_set(pred, pred_value, gold, relation_is_gold=False)
        return pred_value is not None and same_answer(gold, pred_value)
    if isinstance(gold_value, Set) and not isinstance(pred_value, Set):  # "x = [-2, 7]" vs "-2 <= x <= 7"
        return _relation_against_set(pred, pred_value, gold_value, relation_is_gold=False)
    if isinstance(pred_value, Set) and not isinstance(gold_value, Set):
        return _relation_against_set(gold, gold_value, pred_value, relation_is_gold=True)
    gold, pred = _as_relation(gold), _as_relation(pred)
    if isinstance(gold, Relational) and isinstance(pred, Relational):
        return _same_relation(gold, pred)
    if isinstance(gold, And) and isinstance(pred, And):
        gold_parts, pred_parts = gold._unsorted_args, pred._unsorted_args
        return len(gold_parts) == len(pred_parts) and all(
            _relations_equal(g, p) for g, p in zip(gold_parts, pred_parts, strict=True)
        )
    return False


def _has_relation(expr: Basic) -> bool:
    return is_relation(expr) or (
        isinstance(expr, (SympyFiniteSet, Tuple)) and any(_has_relation(arg) for arg in expr.args)
    )


def _elements(expr: Basic) -> Sequence[Basic]:
    if isinstance(expr, SympyFiniteSet):
        return list(getattr(expr, "_unsorted_args", expr.args))
    if isinstance(expr, Tuple):
        return list(expr.args)
    return [expr]


def _collections_equal(gold: Basic, pred: Basic) -> bool:
    """Lists that hold relations ("a_3 = 2, a_{37} = 19"): element by element, in any order for
    two unordered lists, so the relation rules apply to every element."""
    gold_items, pred_items = _elements(gold), _elements(pred)
    if len(gold_items) != len(pred_items):
        return False
    if isinstance(gold, Tuple) and isinstance(pred, Tuple):
        return all(same_answer(g, p) for g, p in zip(gold_items, pred_items, strict=True))
    return _match_all(gold_items, pred_items)


def _match_all(gold_items: Sequence[Basic], pred_items: Sequence[Basic]) -> bool:
    """A one-to-one pairing of equal items exists (backtracking; lists are short)."""
    if not gold_items:
        return True
    first, rest = gold_items[0], gold_items[1:]
    for i, candidate in enumerate(pred_items):
        if same_answer(first, candidate) and _match_all(rest, [*pred_items[:i], *pred_items[i + 1 :]]):
            return True
    return False


def same_answer(gold: Basic | MatrixBase, pred: Basic | MatrixBase) -> bool:
    """Whether two parsed answers are equal (see the module docstring for relations)."""
    if is_relation(gold) or is_relation(pred):
        return _relations_equal(gold, pred)
    if _has_relation(gold) or _has_relation(pred):
        return _collections_equal(gold, pred)
    return bool(sympy_expr_eq(gold, pred, FLOAT_ROUNDING, NUMERIC_PRECISION, allow_set_relation_comp=True))


def equivalent(pred: str, gold: str) -> bool:
    """Whether the prediction's LaTeX is the same answer as the gold's (no time limit: the caller's)."""
    gold_parsed = parse_answer(gold)
    if gold_parsed is None:
        return False
    pred_parsed = parse_answer(pred)
    return pred_parsed is not None and same_answer(gold_parsed, pred_parsed)
