"""Why a build dropped what it dropped, in words, with the flags that change it.

A weak teacher (a laptop's small chat model) makes the filters drop most probes and questions, and
a student that is the teacher's own model solves every probe, so Eq.2 drops the question: the
numbers in stats.json say how many, these lines say which filter, why, and what to change. The
input is the stats dict the pipeline writes (``stats.json``), so the report can be rebuilt from a
finished build.
"""

from __future__ import annotations

from typing import Any

MOST = 0.5
"""Above this share dropped, the report starts with a warning."""

_PROBE_REASONS: dict[str, str] = {
    "not_applicable": "{n} rule slot(s) gave no probe: the rule does not fit the question ({detail}). "
    "Change: --rules (the rules that fit this dataset), --probe-source.",
    "authoring_failed": "{n} probe(s) were not written: the teacher's request failed after every retry. "
    "Change: rerun the same command (only failed requests are asked again); --request-timeout, --max-attempts.",
    "request_failed": "{n} probe(s) dropped: a teacher request (probe answer or Eq.1 re-ask) failed after every "
    "retry. Change: rerun the same command; --request-timeout, --max-attempts, a lower --teacher-concurrency.",
    "no_final_answer": "{n} probe(s) dropped: the teacher's answer to the probe gave no final answer (no \\boxed{{}} "
    "or 'the answer is'){cut}. Change: a larger --teacher-max-tokens, a stronger --teacher-model.",
    "inconsistent": "{n} probe(s) dropped by Eq.1 (consistency): after its own probe exchange the teacher answered "
    "the question wrong; a weak teacher fails this often. Change: a stronger --teacher-model, a larger "
    "--teacher-max-tokens, or --no-consistency-filter (keeps them; not the paper's data).",
}

_NO_PROBES_PASSED = "{n} question(s) dropped: none of their probes passed the teacher and Eq.1 (see the probe lines)."

_QUESTION_REASONS: dict[str, str] = {
    "no_consistent_probes": _NO_PROBES_PASSED,
    "no_probes_left": _NO_PROBES_PASSED,
    "no_applicable_rule": "{n} question(s) dropped: none of the rules fits them. Change: --rules.",
    "all_solved": "{n} question(s) dropped by Eq.2 (rejection): the student answered every consistent probe "
    "correctly, so the question teaches it nothing; a student as strong as the teacher (the same model) drops "
    "most questions this way. Change: a weaker --student-model, or --no-rejection-filter.",
    "below_min_correct": "{n} question(s) dropped by Eq.2: the student got fewer than --min-correct {min_correct} "
    "probe(s) right. Change: a lower --min-correct.",
    "above_max_correct": "{n} question(s) dropped by Eq.2: the student got more than --max-correct {max_correct} "
    "probe(s) right. Change: a higher --max-correct, or leave it out.",
    "student_request_failed": "{n} question(s) dropped: a student request failed after every retry. Change: rerun "
    "the same command; --request-timeout, --max-attempts.",
}

_RATIONALE_REASONS: dict[str, str] = {
    "incorrect": "{n} question(s): the teacher's own solution R_T was wrong, so the dataset's rationale was used "
    "instead. Change: a stronger --teacher-model, a larger --teacher-max-tokens, or --no-teacher-rationale.",
    "request_failed": "{n} question(s): the request for the teacher's solution R_T failed, so the dataset's "
    "rationale was used. Change: rerun the same command.",
}


def _probe_totals(stats: dict[str, Any]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for rule_stats in stats.get("rules", {}).values():
        for key, value in rule_stats.items():
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
    return totals


def _not_applicable_detail(stats: dict[str, Any]) -> str:
    reasons: dict[str, int] = {}
    for rule, rule_stats in stats.get("rules", {}).items():
        for reason, count in rule_stats.get("not_applicable_reasons", {}).items():
            key = f"{rule}: {reason}"
            reasons[key] = reasons.get(key, 0) + count
    top = sorted(reasons.items(), key=lambda item: -item[1])[:3]
    return "; ".join(f"{key} ({count})" for key, count in top) or "teacher declined"


def headline(stats: dict[str, Any]) -> str | None:
    """A warning when the filters dropped most questions or most probes, else None."""
    questions = stats.get("questions", {})
    selected, kept = questions.get("selected", 0), questions.get("kept", 0)
    probes = _probe_totals(stats)
    generated, kept_probes = probes.get("generated", 0), probes.get("kept", 0)
    parts = []
    if selected and (selected - kept) / selected > MOST:
        parts.append(f"{selected - kept} of {selected} questions")
    if generated and (generated - kept_probes) / generated > MOST:
        parts.append(f"{generated - kept_probes} of {generated} probes")
    return f"most of the data was dropped ({' and '.join(parts)}); why, and what changes it:" if parts else None


def explain(stats: dict[str, Any]) -> list[str]:
    """One line per reason something was dropped (empty when nothing was), most frequent first within each level."""
    config = stats.get("config", {})
    filters = config.get("filters", {})
    probes = _probe_totals(stats)
    truncated = stats.get("requests", {}).get("teacher", {}).get("truncated", 0)
    max_tokens = config.get("teacher_max_tokens")
    cut = f"; {truncated} teacher answer(s) were cut at --teacher-max-tokens {max_tokens}" if truncated else ""
    lines = []
    for reason, template in _PROBE_REASONS.items():
        if probes.get(reason):
            detail = _not_applicable_detail(stats) if reason == "not_applicable" else ""
            lines.append(template.format(n=probes[reason], detail=detail, cut=cut))
    dropped = stats.get("questions", {}).get("dropped", {})
    for reason, count in sorted(dropped.items(), key=lambda item: -item[1]):
        template = _QUESTION_REASONS.get(reason, "{n} question(s) dropped: " + reason + ".")
        lines.append(
            template.format(n=count, min_correct=filters.get("min_correct"), max_correct=filters.get("max_correct"))
        )
    fallbacks = stats.get("questions", {}).get("teacher_rationale_fallbacks", {})
    for reason, template in _RATIONALE_REASONS.items():
        if fallbacks.get(reason):
            lines.append(template.format(n=fallbacks[reason]))
    return lines
