"""Slots the template rules fill from (Q, A, rationale): numbers, solution steps, equations.

Every choice a template makes (which number, which step) is a pure function of the record id
and the rule name, so a rebuild writes byte-identical probes.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass

from exgrpo_verl.data_sources import AnswerType
from exgrpo_verl.datasets.record import Record

# A number written in digits, not part of a word, a time (3:30), a fraction (1/2) or a decimal.
_NUMBER = re.compile(r"(?<![\w.,:/])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w:/]|[.,]\d)")
_AMOUNT = r"\$?(?:\d[\d,]*(?:\.\d+)?|\.\d+)%?"
# A unit after an amount: "20 sheep", "2 GB/minute", "$20/hour" (never the multiplication sign x).
_UNIT = r"(?:\s?/(?!\d)[A-Za-z]+|\s(?!x\b)[A-Za-z]+(?:/[A-Za-z]+)?)"
_OPERAND = rf"\(*{_AMOUNT}\)*{_UNIT}?"
_EQUATION = re.compile(
    rf"(?P<lhs>{_OPERAND}(?:\s*[-+*/×÷x]\s*{_OPERAND})+)\s*=\s*\$?(?P<rhs>-?(?:\d[\d,]*(?:\.\d+)?|\.\d+))(?![\d.]\d)"
)
_EXPRESSION = re.compile(rf"{_OPERAND}(?:\s*[-+*/×÷x]\s*{_OPERAND})+")
_UNIT_AFTER_AMOUNT = re.compile(rf"(?<=[\d%)]){_UNIT}")
_TIMES_X = re.compile(r"(?<=[\d%)\s])x(?=[\s($\d])")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_OPERATIONS = {"+": "addition", "-": "subtraction", "*": "multiplication", "/": "division"}
MAX_STEP_CHARS = 600


@dataclass(frozen=True)
class NumberSlot:
    token: str
    value: float
    start: int
    end: int


@dataclass(frozen=True)
class Equation:
    """A worked arithmetic step "lhs = rhs" whose left side really evaluates to its right side."""

    lhs: str
    rhs: str
    rhs_start: int
    rhs_end: int
    expression: str
    """The left side as plain arithmetic (units, currency and separators removed)."""

    @property
    def operations(self) -> list[str]:
        """Names of the operations on the left-hand side, in order of first use."""
        names: list[str] = []
        for symbol in re.findall(r"(?<=[\d)\s])\s*([-+*/])\s*(?=[(\d])", self.expression):
            name = _OPERATIONS[symbol]
            if name not in names:
                names.append(name)
        return names


def stable_index(key: str, count: int) -> int:
    """A deterministic pick in range(count) from ``key`` (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def numbers(text: str) -> list[NumberSlot]:
    slots = []
    for match in _NUMBER.finditer(text):
        token = match.group(0)
        slots.append(NumberSlot(token, float(token.replace(",", "")), match.start(), match.end()))
    return slots


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def perturbed(value: float) -> float:
    """A different, plausible value: the leading place value added (16 -> 26, 2 -> 3, 0.5 -> 1.5)."""
    if value.is_integer() and value >= 10:
        return value + 10 ** (len(str(int(value))) - 1)
    return value + 1


def steps(rationale: str | None) -> list[str]:
    """The solution's steps: its lines, or its sentences when it is one paragraph. Figures
    (asymptote code) and overlong lines are not steps."""
    if not rationale:
        return []
    lines = [line.strip() for line in rationale.splitlines() if line.strip()]
    if len(lines) == 1:
        lines = [part.strip() for part in _SENTENCE_END.split(lines[0]) if part.strip()]
    return [line for line in lines if "[asy]" not in line and len(line) <= MAX_STEP_CHARS and len(line.split()) >= 3]


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    raise ValueError("not plain arithmetic")


_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def plain_arithmetic(lhs: str) -> str:
    """A solution's left-hand side as plain arithmetic: "$20/hour * 35 hours/week" -> "20 * 35"."""
    text = _TIMES_X.sub("*", lhs.replace("×", "*").replace("÷", "/"))
    text = _UNIT_AFTER_AMOUNT.sub("", text).replace("$", "")
    return re.sub(r"(?<=\d),(?=\d{3})", "", text)


def arithmetic_value(expression: str) -> float | None:
    """The value of plain arithmetic ("20 * 35", "150% * 8"), or None when it is not that."""
    text = re.sub(r"(\d+(?:\.\d+)?)%", r"(\1/100)", expression)
    if len(text) > 200:
        return None
    try:
        return _evaluate(ast.parse(text, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def equations(text: str) -> list[Equation]:
    """Checked arithmetic steps in ``text``: a match whose left side does not evaluate to its right
    side (a fragment of a longer LaTeX expression, a typo) is not an equation."""
    found = []
    for match in _EQUATION.finditer(text):
        lhs, rhs = match.group("lhs").strip(), match.group("rhs")
        expression = plain_arithmetic(lhs)
        value = arithmetic_value(expression)
        target = float(rhs.replace(",", ""))
        if value is not None and abs(value - target) <= 1e-6 * max(1.0, abs(target)):
            found.append(Equation(lhs, rhs, match.start("rhs"), match.end("rhs"), expression))
    return found


def arithmetic_values(text: str) -> list[float]:
    """The values of the arithmetic written in ``text`` with or without a result ("9 * 2",
    "$20/hour x 35 hours", "16 - 3 - 4 = 9"): a quoted step says its result even when the
    result itself is changed or left out."""
    values = []
    for match in _EXPRESSION.finditer(text):
        value = arithmetic_value(plain_arithmetic(match.group(0)))
        if value is not None:
            values.append(value)
    return values


def is_numeric(record: Record) -> bool:
    """A question whose answer is a plain number (GSM8K, GSM8K-Reversal, numeric TabMWP)."""
    if record.answer_type is AnswerType.NUMBER:
        return True
    return record.answer_type is AnswerType.FREE_TEXT and not record.choices and bool(numbers(record.answer))


def answer_display(record: Record) -> str:
    """The gold answer as a reader would say it: "(B) library" for an option, else the answer."""
    if record.choices and record.answer in record.choices and record.answer_type is AnswerType.CHOICE:
        return f"({record.answer}) {record.choices[record.answer]}"
    return record.answer


def context(record: Record) -> str:
    """The question, headed so a probe can refer back to it."""
    heading = "Problem" if record.answer_type in (AnswerType.NUMBER, AnswerType.MATH) else "Question"
    return f"{heading}:\n{record.question.strip()}"


def final_value(step: str) -> str | None:
    """The number a solution step arrives at: its last checked equation's result, else its only
    number; None when that is not clear (several numbers and no checked equation)."""
    found = equations(step)
    if found:
        return found[-1].rhs.replace(",", "")
    values = {slot.value for slot in numbers(step)}
    return format_number(values.pop()) if len(values) == 1 else None
