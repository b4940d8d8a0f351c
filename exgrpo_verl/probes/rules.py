"""The ten Explanatory Inversion rules f_1..f_10: Q, A, rationale -> explanatory probes.

Each rule has two forms (design card §1.1):

* a **template** form, filled from slots of the question, answer and rationale with no model
  (teacher-free mode); it returns the probes, or :class:`NotApplicable` with the reason when the
  record lacks what the rule needs (no rationale, no number, no options) rather than emitting junk;
* a **teacher-authored** form: ``teacher_instruction`` tells a teacher model what kind of probe to
  write (see :mod:`exgrpo_verl.probes.messages`).

Probes are self-contained: the probe-dialogue rollout asks them *before* the original question,
so each one restates the problem it is about. Template probes with a checkable answer (GSM8K
Socratic sub-questions, the hidden number of an inverse probe, the corrected step of an
error-diagnosis probe) carry it as ``teacher_answer``; the others carry None.

Because the original question comes last, a probe that states or implies its answer would turn
that last turn into copying. The templates ask without giving the answer away where they can
(``cause`` does not state it, ``step_justification`` and ``error_diagnosis`` quote a step that does
not hold it, option rules name a wrong option only when three or more remain, and every rule of a
question names the same one); a probe that still does (``inverse`` needs the answer) carries
``reveals_answer: True``, set by the rule or by :func:`exgrpo_verl.probes.reveals.reveals_answer`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from exgrpo_verl.answers.numbers import is_plain_number, numbers_equal, parse_number
from exgrpo_verl.data_sources import AnswerType
from exgrpo_verl.datasets.record import Record
from exgrpo_verl.probes import slots
from exgrpo_verl.probes.reveals import mentions_answer, reveals_answer
from exgrpo_verl.schema import Probe


@dataclass(frozen=True)
class NotApplicable:
    """Why a rule yields no probe for a record."""

    reason: str


TemplateFn = Callable[[Record, "str | None"], "list[Probe] | NotApplicable"]


@dataclass(frozen=True)
class EIRule:
    name: str
    summary: str
    teacher_instruction: str
    template: TemplateFn
    needs_answer: bool = False
    """The probe states the answer by its nature (``inverse``): always flagged ``reveals_answer``."""


def _probe(rule: str, question: str, reference: str | None = None, reveals: bool = False) -> Probe:
    return {"rule": rule, "question": question.strip(), "teacher_answer": reference, "reveals_answer": reveals}


def _boxed(value: str) -> str:
    return f"\\boxed{{{value}}}"


def _noun(record: Record) -> str:
    return "problem" if record.answer_type in (AnswerType.NUMBER, AnswerType.MATH) else "question"


def _gold_label(record: Record) -> str | None:
    """The option label of the gold answer (CHOICE: the answer; DATE/TabMWP: the option with its text)."""
    if not record.choices:
        return None
    if record.answer in record.choices:
        return record.answer
    return next((label for label, text in record.choices.items() if text == record.answer), None)


def _other_labels(gold: str, labels: Sequence[str]) -> list[str]:
    return [label for label in labels if label != gold]


def _distractor(record: Record, gold: str, labels: Sequence[str]) -> str | None:
    """The one wrong option (or NLI label) every rule of this question names: picked per question,
    not per rule, so the probes of a dialogue together rule out at most one option. An option
    whose text holds the answer's ("free will" for "will", a duplicate) is never named; None when
    no other option is left."""
    others = _other_labels(gold, labels)
    if record.choices:
        others = [label for label in others if not mentions_answer(f"({label}) {record.choices[label]}", record)]
    return _pick(record, "distractor", others) if others else None


_NLI_LABELS = ("entailment", "neutral", "contradiction")


def _pick(record: Record, rule: str, items: Sequence):
    return items[slots.stable_index(f"{record.id}/{rule}", len(items))]


_FIGURE = re.compile(r"\[asy\].*?(?:\[/asy\]|$)", re.DOTALL)


def _question_numbers(record: Record) -> list[slots.NumberSlot]:
    """Given numbers in the question text proper (not inside the rendered answer options)."""
    body = record.question.split("\n\nAnswer choices:\n", 1)[0]
    figures = [(m.start(), m.end()) for m in _FIGURE.finditer(body)]
    return [s for s in slots.numbers(body) if not any(start <= s.start < end for start, end in figures)]


def _solution_numbers(rationale: str | None) -> set[float]:
    return {slot.value for slot in slots.numbers(rationale or "")}


def _gold_value(record: Record) -> float | None:
    """The answer as a number, when it is one (GSM8K, numeric TabMWP, a MATH integer)."""
    return parse_number(record.answer) if is_plain_number(record.answer) else None


def _other_value(value: float, avoid: float | None) -> float:
    """A plausible changed value (see slots.perturbed) that is not the gold answer."""
    for candidate in (slots.perturbed(value), value + 1, value + 2, value * 2 + 1):
        if candidate != value and (avoid is None or not numbers_equal(candidate, avoid)):
            return candidate
    return value + 3


def _preferred_numbers(record: Record, rationale: str | None, once: bool) -> list[slots.NumberSlot]:
    """Question numbers the solution uses (all of them when it uses none we can see)."""
    found = _question_numbers(record)
    if once:
        values = [slot.value for slot in found]
        found = [slot for slot in found if values.count(slot.value) == 1]
    used = _solution_numbers(rationale)
    preferred = [slot for slot in found if slot.value in used]
    return preferred or found


# ---------------------------------------------------------------------------------------------


def counterfactual(record: Record, rationale: str | None) -> list[Probe] | NotApplicable:
    """Change one condition (a number, an option, the hypothesis) and ask how the answer changes."""
    name, kind, context = "counterfactual", record.answer_type, slots.context(record)
    gold = _gold_label(record)
    removed = _distractor(record, gold, list(record.choices)) if gold and record.choices else None
    if kind is AnswerType.CHOICE and removed and record.choices and len(record.choices) >= 3:
        return [
            _probe(
                name,
                f"{context}\n\nSuppose option ({removed}) {record.choices[removed]} were removed from the answer "
                "choices. Would the best answer change? Explain why or why not.",
            )
        ]
    if kind is AnswerType.CHOICE and gold:
        return [
            _probe(
                name,
                f"{context}\n\nWhat would have to be different in the question for the other option to be the "
                "best answer? Name the fact that would have to change, and explain why it would flip the answer.",
            )
        ]
    if kind is AnswerType.YES_NO:
        return [
            _probe(
                name,
                f"{context}\n\nWhat would have to be different for the answer to this question to be the "
                "opposite? Name the fact that would have to change, and explain why it would flip the answer.",
            )
        ]
    if kind is AnswerType.NLI:
        target = _pick(record, "distractor", _other_labels(record.answer, _NLI_LABELS))
        return [
            _probe(
                name,
                f"{context}\n\nRewrite the hypothesis, changing as little as possible, so that the relation "
                f"becomes {target}. Explain why your change has that effect.",
            )
        ]
    if kind is AnswerType.DATE:
        return [
            _probe(
                name,
                f"{context}\n\nSuppose every date stated in the question were one week later. What would the "
                "answer be then (it need not be one of the choices)? Explain.",
            )
        ]
    candidates = _preferred_numbers(record, rationale, once=False)
    if not candidates:
        return NotApplicable("no number in the question to change")
    slot = _pick(record, name, candidates)
    new = slots.format_number(_other_value(slot.value, _gold_value(record)))
    variant = record.question[: slot.start] + new + record.question[slot.end :]
    return [
        _probe(
            name,
            f"Consider this variant of a {_noun(record)}, in which {slot.token} has been changed to {new}:"
            f"\n\n{variant.strip()}\n\nHow does the change affect the solution? Solve the variant.",
        )
    ]


def decomposition(record: Record, rationale: str | None) -> list[Probe] | NotApplicable:
    """GSM8K Socratic sub-questions become probes with their gold answers; otherwise ask for the
    sub-questions of a multi-step solution."""
    name, context = "decomposition", slots.context(record)
    probes = []
    for sub_question, step in record.sub_questions[:-1]:  # the last one restates the question
        if not any(char.isdigit() for char in step):
            continue  # "Define a variable" -> "Let x be ...": a setup line, not a question to answer
        value = slots.final_value(step)
        reference = f"{step}\n\n{_boxed(value)}" if value is not None else step
        probes.append(_probe(name, f"{context}\n\nAnswer this part of the problem first: {sub_question}", reference))
    if probes:
        return probes
    if len(slots.steps(rationale)) >= 2:
        return [
            _probe(
                name,
                f"{context}\n\nBreak this {_noun(record)} into the smaller questions that have to be answered "
                "before the final answer can be given. List them in order and answer each one.",
            )
        ]
    return NotApplicable("needs Socratic sub-questions or a rationale with at least two steps")


def step_justification(record: Record, rationale: str | None) -> list[Probe] | NotApplicable:
    """Quote one step of the solution and ask why it (or its operation) is right."""
    name, context = "step_justification", slots.context(record)
    steps = slots.steps(rationale)
    if not steps:
        return NotApplicable("no rationale steps to justify")
    # Quoting the final step, or any step that holds the answer, would give it away; a step that only
    # states the final answer ("Therefore, the answer is \boxed{9}.") says nothing to justify anyway.
    clean = [step for step in steps[:-1] if "\\boxed" not in step and not mentions_answer(step, record)]
    # An NLI explanation, or a one-step solution, is the whole reason for the answer.
    reveals = not clean or len(steps) == 1 or record.answer_type is AnswerType.NLI
    steps = [step for step in steps if "\\boxed" not in step] or steps
    worked = [step for step in clean or steps if slots.equations(step)]
    step = _pick(record, name, worked or clean or steps)
    operations = [op for equation in slots.equations(step) for op in equation.operations]
    if len(set(operations)) == 1:
        ask = f"Why is {operations[0]} the right operation in this step, and why is the step needed?"
    else:
        ask = "Why is this step needed, and why is it justified?"
    return [_probe(name, f'{context}\n\nA solution contains the step:\n"{step}"\n\n{ask}', reveals=reveals)]


def inverse(record: Record, rationale: str | None) -> list[Probe] | NotApplicable:
    """Hide a given number, state the answer, and ask for the number (work backwards)."""
    name = "inverse"
    if not slots.is_numeric(record):
        return NotApplicable("needs a numeric answer to work backwards from")
    answer = float(slots.numbers(record.answer)[0].value) if slots.numbers(record.answer) else None
    candidates = [s for s in _preferred_numbers(record, rationale, once=True) if s.value != answer]
    if not candidates:
        return NotApplicable("no given number that occurs once in the question and differs from the answer")
    slot = _pick(record, name, candidates)
    symbol = next(s for s in ("x", "y", "z", "n", "k") if not re.search(rf"\b{s}\b", record.question))
    masked = record.question[: slot.start] + symbol + record.question[slot.end :]
    return [
        _probe(
            name,
            f"In the {_noun(record)} below, one of the given numbers has been replaced by {symbol}.\n\n"
            f"{masked.strip()}\n\nThe answer to the {_noun(record)} is {record.answer}. "
            f"Working backwards from the answer, what is the value of {symbol}?",
            _boxed(slots.format_number(slot.value)),
            reveals=True,
        )
    ]


def principle(record: Record, rationale: str | None) -> list[Probe] | NotApplicable:
    """Ask for the general principle (or, for worked arithmetic, the reason for each operation)."""
    name, context = "principle", slots.context(record)
    operations: list[str] = []
    for equation in slots.equations(rationale or ""):
        operations += [op for op in equation.operations if op not in operations]
    if operations:
        used = operations[0] if len(operations) == 1 else ", ".join(operations[:-1]) + f" and {operations[-1]}"
        ask = f"A solution to this problem uses {used}. What general principle makes each the right operation here?"
    else:
        ask = "What general principle, rule or fact is needed to answer this? Name it, then explain how it applies."
    return [_probe(name, f"{context}\n\n{ask}")]


def assumption(record: Record, rationale: str | None) -> list[Probe] | NotApplicable:
    """Ask for the unstated assumptions the answer depends on."""
    return [
        _probe(
            "assumption",
            f"{slots.context(record)}\n\nWhat assumptions does answering this rely on that are not stated "
            "explicitly? Would the answer change if one of them did not hold?",
        )
    ]


def error_diagnosis(record: Record, rationale: str | None) -> list[Probe] | NotApplicable:
    """Show a wrong step (a checked equation with a wrong result) or a wrong answer; ask for the error."""
    name, kind, context = "error_diagnosis", record.answer_type, slots.context(record)
    gold_value = _gold_value(record)
    worked = []
    for step in slots.steps(rationale):
        for equation in slots.equations(step):
            wrong = slots.format_number(_other_value(float(equation.rhs.replace(",", "")), gold_value))
            corrupted = step[: equation.rhs_start] + wrong + step[equation.rhs_end :]
            # The corrected result is the answer when the step is the final one: that gives it away.
            reveals = mentions_answer(corrupted, record) or mentions_answer(equation.rhs, record)
            worked.append((reveals, equation, wrong, corrupted))
    if worked:
        reveals, equation, wrong, corrupted = _pick(record, name, [w for w in worked if not w[0]] or worked)
        reference = f"The step is wrong: {equation.lhs} = {equation.rhs}, not {wrong}.\n\n{_boxed(equation.rhs)}"
        return [
            _probe(
                name,
                f'{context}\n\nA student\'s solution contains this step:\n"{corrupted}"\n\n'
                "Is the step correct? If it is not, explain the mistake and correct it.",
                reference,
                reveals=reveals,
            )
        ]
    gold = _gold_label(record)
    wrong_label = _distractor(record, gold, list(record.choices)) if gold and record.choices else None
    if record.choices and wrong_label and len(record.choices) >= 3:
        return [
            _probe(
                name,
                f"{context}\n\nA student chose ({wrong_label}) {record.choices[wrong_label]}. "
                "What is wrong with picking it?",
            )
        ]
    if kind is AnswerType.YES_NO or (record.choices and gold):
        # Naming the wrong one of two answers would give the right one away.
        return [
            _probe(
                name,
                f"{context}\n\nWhat mistake in reasoning would lead someone to the wrong answer here? Explain the "
                "mistake and why it leads astray.",
            )
        ]
    if kind is AnswerType.NLI:
        wrong_label = _pick(record, "distractor", _other_labels(record.answer, _NLI_LABELS))
        return [
            _probe(
                name, f"{context}\n\nA student labelled this pair as {wrong_label}. What is wrong with that judgement?"
            )
        ]
    return NotApplicable("no worked arithmetic step to corrupt and no wrong option to diagnose")


def generalization(record: Record, rationale: str | None) -> list[Probe] | NotApplicable:
    """Replace the given numbers by symbols and ask for the general formula."""
    if not (slots.is_numeric(record) or record.answer_type is AnswerType.MATH):
        return NotApplicable("the answer is not a quantity, so there is no formula to generalise")
    seen: list[str] = []
    for slot in _question_numbers(record):
        if slot.token not in seen:
            seen.append(slot.token)
    if len(seen) < 2:
        return NotApplicable("fewer than two given numbers to replace by symbols")
    # The numbers are not listed again: when the answer is one of them, the list would repeat it.
    return [
        _probe(
            "generalization",
            f"{slots.context(record)}\n\nReplace each of the given numbers with a letter and write a general "
            "formula for the answer in terms of those letters. Then check that it gives the right answer for "
            f"this {_noun(record)}'s numbers.",
        )
    ]


def analogy(record: Record, rationale: str | None) -> list[Probe] | NotApplicable:
    """Ask for an analogous problem solved by the same reasoning."""
    context = slots.context(record)
    if slots.is_numeric(record) or record.answer_type is AnswerType.MATH:
        ask = (
            "Write a different problem, set in another situation, that is solved with exactly the same steps as "
            "this one. Solve it, and say which quantity in your problem plays the role of each quantity here."
        )
    else:
        ask = (
            "Give an analogous question from a different topic that is answered with the same kind of reasoning. "
            "Answer it, and explain what the two questions have in common."
        )
    return [_probe("analogy", f"{context}\n\n{ask}")]


def cause(record: Record, rationale: str | None) -> list[Probe] | NotApplicable:
    """Ask what in the question decides its answer (without saying what the answer is)."""
    return [
        _probe(
            "cause",
            f"{slots.context(record)}\n\nWhat in the {_noun(record)} decides its answer? Point to the facts that "
            "decide it, and explain why they lead to that answer and not to another one.",
        )
    ]


RULES: dict[str, EIRule] = {
    rule.name: rule
    for rule in (
        EIRule(
            "counterfactual",
            "change one condition of the question and ask how the answer changes",
            "Change one condition of the problem (a number, a fact or an answer option) and ask how the answer "
            "changes. Present the changed problem in full and ask the student to solve or reason about it.",
            counterfactual,
        ),
        EIRule(
            "decomposition",
            "ask for an intermediate result the solution needs (GSM8K Socratic sub-questions)",
            "Ask for one intermediate result or sub-question that the solution needs before the final answer "
            "(not the final answer itself).",
            decomposition,
        ),
        EIRule(
            "step_justification",
            "quote a solution step and ask why it is right",
            "Quote one step of the reference solution and ask why that step, or the operation it uses, is "
            "needed and correct. Example: for the step '5 - 2 = 3', ask 'Why is subtraction used here?'",
            step_justification,
        ),
        EIRule(
            "inverse",
            "give the answer, hide a given number, ask for it",
            "State the final answer, hide one of the given quantities or facts, and ask the student to work "
            "backwards from the answer to recover it. Example: 'Given the result 3 and that 2 were given away, "
            "what operation finds the start?'",
            inverse,
            needs_answer=True,
        ),
        EIRule(
            "principle",
            "ask for the general principle the solution rests on",
            "Ask which general principle, rule, formula or background fact the solution rests on, and how it "
            "applies to this problem.",
            principle,
        ),
        EIRule(
            "assumption",
            "ask for the unstated assumptions the answer depends on",
            "Ask about an assumption the solution makes that the problem does not state, and whether the "
            "answer depends on it.",
            assumption,
        ),
        EIRule(
            "error_diagnosis",
            "show a wrong step or answer and ask for the mistake",
            "Show a plausible but wrong step or answer (a typical mistake) and ask the student to find and "
            "correct the error.",
            error_diagnosis,
        ),
        EIRule(
            "generalization",
            "replace the given numbers by symbols and ask for the formula",
            "Ask the student to generalise the problem: replace its specific values or entities by general ones "
            "and state the general rule or formula.",
            generalization,
        ),
        EIRule(
            "analogy",
            "ask for an analogous problem solved the same way",
            "Pose an analogous problem from a different setting that is solved with the same reasoning, and ask "
            "how the two correspond.",
            analogy,
        ),
        EIRule(
            "cause",
            "ask which facts of the question decide its answer",
            "Ask what causes the answer to be what it is: which facts of the problem decide it, and why. "
            "Example: 'Does the order of 5 - 2 versus 2 - 5 matter?'",
            cause,
        ),
    )
}
RULE_NAMES: tuple[str, ...] = tuple(RULES)


@dataclass
class TemplateResult:
    probes: list[Probe] = field(default_factory=list)
    not_applicable: dict[str, str] = field(default_factory=dict)
    """rule -> why it gave no probe for this record."""


def check_rule_names(names: Sequence[str]) -> tuple[str, ...]:
    """Validate a user's rule selection (order follows RULE_NAMES)."""
    unknown = [name for name in names if name not in RULES]
    if unknown:
        raise ValueError(f"unknown EI rule(s) {unknown}; choose from {', '.join(RULE_NAMES)}")
    return tuple(name for name in RULE_NAMES if name in names)


def template_probes(record: Record, rationale: str | None = None, rules: Sequence[str] = RULE_NAMES) -> TemplateResult:
    """Every applicable rule's template probes for ``record``, in rule order.

    ``rationale`` defaults to the dataset's own (``record.rationale``); pass the teacher's R_T to
    fill the slots from it instead.
    """
    rationale = record.rationale if rationale is None else rationale
    result = TemplateResult()
    for name in rules:
        outcome = RULES[name].template(record, rationale)
        if isinstance(outcome, NotApplicable):
            result.not_applicable[name] = outcome.reason
        else:
            result.probes.extend(flagged(probe, record) for probe in outcome)
    return result


def flagged(probe: Probe, record: Record) -> Probe:
    """``probe`` with ``reveals_answer`` set: what its rule knows, or what the checkers find in its text."""
    rule = RULES.get(probe["rule"])
    reveals = bool(probe.get("reveals_answer")) or (rule is not None and rule.needs_answer)
    return {**probe, "reveals_answer": reveals or reveals_answer(probe["question"], record)}
