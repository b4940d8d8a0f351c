"""The chat requests of stage 1: writing a probe, answering one, and the Eq.1 re-ask of Q.

No request uses a system role (Gemma's chat template rejects one), so the same messages work
for every teacher and student endpoint and end up unchanged in the SFT data.
"""

from __future__ import annotations

from exgrpo_verl.datasets.record import Record
from exgrpo_verl.probes import slots
from exgrpo_verl.probes.rules import RULES
from exgrpo_verl.prompts import question_messages

Messages = list[dict[str, str]]

NOT_APPLICABLE = "NOT_APPLICABLE"
MAX_PROBE_CHARS = 4000

PROBE_ANSWER_INSTRUCTION = (
    "Explain your reasoning step by step, then give a short final answer (a number, a word or a short phrase) "
    "in \\boxed{}."
)

_AUTHORING = """You write explanatory probes: questions that make a student explain the reasoning behind a \
solved problem.

Kind of probe: {rule} ({summary}). {instruction}

{context}

Correct answer: {answer}

Reference solution:
{rationale}

Write exactly one probe of this kind. The student will see the probe on its own, before the problem, so \
restate whatever part of the problem the probe needs. {answer_policy} Do not answer the probe. Reply with the \
probe text only, or with exactly {not_applicable} if this kind of probe does not fit this problem."""

KEEP_ANSWER_HIDDEN = (
    "The student is asked the problem itself after the probe, so the probe must not give its answer away: do not "
    "state or hint at the correct answer, do not name the correct option or rule out all the others (for a yes/no "
    "question, do not call either answer right or wrong), and do not quote the step of the solution that produces "
    "the answer."
)
ANSWER_NEEDED = "This kind of probe needs the correct answer: state it in the probe."


def authoring_messages(rule: str, record: Record, rationale: str | None) -> Messages:
    """Ask the teacher to write one probe of kind ``rule`` for ``record`` (teacher-authored form).
    It is told not to give the answer away unless the rule needs it; what it writes is still
    checked (:func:`exgrpo_verl.probes.rules.flagged`)."""
    spec = RULES[rule]
    content = _AUTHORING.format(
        rule=spec.name,
        summary=spec.summary,
        instruction=spec.teacher_instruction,
        context=slots.context(record),
        answer=slots.answer_display(record),
        rationale=(rationale or "").strip() or "(none given)",
        answer_policy=ANSWER_NEEDED if spec.needs_answer else KEEP_ANSWER_HIDDEN,
        not_applicable=NOT_APPLICABLE,
    )
    return [{"role": "user", "content": content}]


def parse_authored_probe(text: str) -> str | None:
    """The probe a teacher wrote, or None when it declined (NOT_APPLICABLE), wrote nothing, or
    wrote something too long to be one probe."""
    probe = text.strip()
    for label in ("Probe:", "**Probe:**", "Probe -"):
        if probe.startswith(label):
            probe = probe[len(label) :].strip()
    if len(probe) >= 2 and probe[0] == probe[-1] and probe[0] in "\"'":
        probe = probe[1:-1].strip()
    if not probe or (NOT_APPLICABLE in probe.upper().replace(" ", "_") and len(probe) < 80):
        return None
    return probe if len(probe) <= MAX_PROBE_CHARS else None


def probe_answer_messages(probe_question: str) -> Messages:
    """Ask a model (teacher or student) to answer one probe, ending in \\boxed{}."""
    return [{"role": "user", "content": f"{probe_question.strip()}\n\n{PROBE_ANSWER_INSTRUCTION}"}]


def consistency_messages(probe_question: str, probe_answer: str, record: Record) -> Messages:
    """Eq.1: the teacher's probe exchange [Q_i ‖ R_T,i ‖ A_T,i] followed by the original question."""
    return [
        *probe_answer_messages(probe_question),
        {"role": "assistant", "content": probe_answer},
        *question_messages(record.question, record.data_source),
    ]
