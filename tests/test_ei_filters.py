"""Eq.1 / Eq.2 decisions, computed by hand, through the whole pipeline against a local stub server."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from exgrpo_verl.datasets import LoadResult, Record
from exgrpo_verl.probes import filters, messages
from exgrpo_verl.probes.filters import RejectionBand
from exgrpo_verl.probes.pipeline import BuildConfig, build
from exgrpo_verl.probes.teacher import EndpointConfig
from exgrpo_verl.schema import PROBE_AGENT_NAME, parse_probes
from exgrpo_verl.testing.openai_stub import StubServer, fail_first


@pytest.mark.parametrize(
    ("n_consistent", "n_correct", "band", "reason"),
    [
        (0, 0, RejectionBand(), "no_consistent_probes"),
        (3, 3, RejectionBand(), "all_solved"),
        (3, 2, RejectionBand(), None),
        (3, 0, RejectionBand(), None),  # literal formula: a question the student misses entirely stays
        (3, 0, RejectionBand(min_correct=1), "below_min_correct"),  # prose reading: too hard
        (5, 4, RejectionBand(max_correct=2), "above_max_correct"),  # formula with tau_hard = 3
        (5, 2, RejectionBand(min_correct=1, max_correct=2), None),
        (1, 1, RejectionBand(min_correct=0, max_correct=5), "all_solved"),  # Λ < N' always applies
    ],
)
def test_rejection_band(n_consistent, n_correct, band, reason):
    assert band.drop_reason(n_consistent, n_correct) == reason


def test_band_validation():
    with pytest.raises(ValueError):
        RejectionBand(min_correct=3, max_correct=1)


@pytest.mark.parametrize(
    ("student", "reference", "kind", "correct"),
    [
        ("so \\boxed{1,000}", "1000", "number", True),
        ("\\boxed{999}", "1000", "number", False),
        ("\\boxed{Yes}", "yes", "yes_no", True),
        ("\\boxed{neutral}", "contradiction", "nli", False),
        ("\\boxed{05/01/2021}", "05/01/2021", "date", True),
        ("\\boxed{(B)}", "B", "option", True),
        ("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}", "math", True),
        ("\\boxed{Subtraction!}", "subtraction", "text", True),
        ("no answer at all", "subtraction", "text", False),
    ],
)
def test_student_probe_answers_are_graded_against_the_teacher_answer(student, reference, kind, correct):
    assert filters.reference_kind(reference) == kind
    assert filters.matches_reference(student, reference) is correct


# Four questions, three template rules each (inverse, assumption, cause): 12 probes.
KEYWORDS = ("apples", "pencils", "marbles", "books")
RECORDS = [
    Record(
        id=keyword,
        data_source="gsm8k",
        question=f"Sam has {10 + i} {keyword} and buys {2 + i} more. How many {keyword} does Sam have?",
        answer=str(12 + 2 * i),
        split="train",
        rationale=f"Sam has {10 + i} + {2 + i} = {12 + 2 * i} {keyword}.",
    )
    for i, keyword in enumerate(KEYWORDS)
]
GOLD = {record.id: record.answer for record in RECORDS}
RULE_PHRASES = {"inverse": "Working backwards", "cause": "decides its answer", "assumption": "What assumptions"}
TEACHER_ANSWER = {"inverse": "5", "cause": "7", "assumption": "11"}
# Eq.1: does the teacher still answer Q after this probe exchange?
CONSISTENT = {
    "apples": {"inverse", "cause"},
    "pencils": {"inverse", "cause", "assumption"},
    "marbles": set(),
    "books": {"inverse", "cause", "assumption"},
}
# Eq.2: does the student match the teacher's answer to this probe?
STUDENT_CORRECT = {
    "apples": {"inverse"},
    "pencils": {"inverse", "cause", "assumption"},
    "marbles": {"inverse"},
    "books": set(),
}


PARQUETS = ("rl_train.parquet", "sft_train.parquet")


def _which(text: str) -> tuple[str, str | None]:
    record = next(k for k in KEYWORDS if k in text)
    rule = next((r for r, phrase in RULE_PHRASES.items() if phrase in text), None)
    return record, rule


def script(body: dict) -> str:
    turns = body["messages"]
    first = turns[0]["content"]
    record, rule = _which(first)
    if body["model"] == "student":
        answer = TEACHER_ANSWER[rule] if rule in STUDENT_CORRECT[record] else "999"
        return f"Student thinks. \\boxed{{{answer}}}"
    if len(turns) == 3:  # Eq.1: [probe, teacher answer, Q]
        answer = GOLD[record] if rule in CONSISTENT[record] else "12345"
        return f"Answering the question again. \\boxed{{{answer}}}"
    if first.endswith(messages.PROBE_ANSWER_INSTRUCTION):
        return f"Teacher explains the {rule} probe. \\boxed{{{TEACHER_ANSWER[rule]}}}"
    # R_T: the teacher's own solution of Q (correct only for apples).
    answer = GOLD[record] if record == "apples" else "0"
    return f"Teacher solution for {record}. \\boxed{{{answer}}}"


def _build(stub: StubServer, out, **overrides) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    endpoint = {"concurrency": 4, "timeout_s": 5.0, "backoff_initial_s": 0.01, "backoff_max_s": 0.02}
    settings = {
        "dataset": "gsm8k",
        "out_dir": out,
        "rules": ("inverse", "cause", "assumption"),
        "teacher": EndpointConfig(stub.base_url, "teacher", **endpoint),
        "student": EndpointConfig(stub.base_url, "student", **endpoint),
        "probe_source": "template",
        "progress": False,
        "cache_path": out.parent / f"{out.name}.sqlite",
    }
    settings.update(overrides)
    result = build(BuildConfig(**settings), LoadResult(records=list(RECORDS), rows_read=len(RECORDS)))
    assert result.failed_requests == 0
    return result.stats, pd.read_parquet(out / "rl_train.parquet"), pd.read_parquet(out / "sft_train.parquet")


def _kept(rl: pd.DataFrame) -> dict[str, list[str]]:
    return {info["id"]: [probe["rule"] for probe in parse_probes(info, i)] for i, info in enumerate(rl["extra_info"])}


def test_eq1_and_eq2_decisions_retries_and_cache(tmp_path):
    with StubServer(script, faults=fail_first(429)) as stub:
        stats, rl, sft = _build(stub, tmp_path / "run")
        # Eq.1 keeps apples {inverse, cause}, pencils all, marbles none, books all.
        # Eq.2: apples Λ=1 < N'=2 keep; pencils Λ=3=N' drop; marbles N'=0 drop; books Λ=0 < 3 keep.
        assert _kept(rl) == {"apples": ["inverse", "cause"], "books": ["inverse", "assumption", "cause"]}
        assert stats["questions"]["dropped"] == {"all_solved": 1, "no_consistent_probes": 1}
        assert {rule: stats["rules"][rule]["inconsistent"] for rule in RULE_PHRASES} == {
            "inverse": 1,
            "cause": 1,
            "assumption": 2,
        }
        assert {rule: stats["rules"][rule]["kept"] for rule in RULE_PHRASES} == {
            "inverse": 2,
            "cause": 2,
            "assumption": 1,
        }
        assert stats["rules"]["cause"]["in_dropped_question"] == 1  # pencils
        teacher = stats["requests"]["teacher"]
        # 4 R_T + 12 probe answers + 12 Eq.1 checks, each answered after one 429.
        assert teacher["asked"] == 4 + 12 + 12 and teacher["retries"] == teacher["asked"]
        assert stats["requests"]["student"]["asked"] == 2 + 3 + 3  # only questions that reach Eq.2
        assert set(rl["agent_name"]) == {PROBE_AGENT_NAME}
        apples = parse_probes(rl["extra_info"][0], 0)
        assert apples[0]["teacher_answer"] == "Teacher explains the inverse probe. \\boxed{5}"

        # SFT (per_probe): apples 2 probe rows + Q row, books 3 probe rows + Q row.
        assert list(sft["kind"]) == ["probe", "probe", "question", "probe", "probe", "probe", "question"]
        question_rows = sft[sft["kind"] == "question"]["messages"].tolist()
        assert question_rows[0][1]["content"] == "Teacher solution for apples. \\boxed{12}"  # R_T was correct
        assert question_rows[1][1]["content"].startswith("Sam has 13 + 5 = 18 books.")  # dataset rationale
        assert all(turn["role"] != "system" for row in sft["messages"] for turn in row)

        # Rerun: every request is a cache hit, the server sees nothing new, outputs are identical.
        seen = len(stub.received)
        first = {name: pq.read_table(tmp_path / "run" / name).to_pylist() for name in PARQUETS}
        stats_again, _, _ = _build(stub, tmp_path / "run")
        assert len(stub.received) == seen
        assert stats_again["requests"]["teacher"]["asked"] == 0 and stats_again["requests"]["teacher"]["cached"] > 0
        assert {name: pq.read_table(tmp_path / "run" / name).to_pylist() for name in PARQUETS} == first


def test_band_settings_change_the_decisions(tmp_path):
    with StubServer(script) as stub:
        _, rl, _ = _build(stub, tmp_path / "min1", band=RejectionBand(min_correct=1))
        assert list(_kept(rl)) == ["apples"]  # books (Λ=0) is "too hard"
        _, rl, _ = _build(stub, tmp_path / "max0", band=RejectionBand(max_correct=0))
        assert list(_kept(rl)) == ["books"]  # apples (Λ=1) is above the band


def test_each_filter_can_be_switched_off(tmp_path):
    with StubServer(script) as stub:
        # Without Eq.1, N' = 3 everywhere: apples Λ=1, pencils 3 (dropped), marbles 1, books 0.
        stats, rl, _ = _build(stub, tmp_path / "no_eq1", consistency_filter=False)
        assert list(_kept(rl)) == ["apples", "marbles", "books"]
        assert all(len(rules) == 3 for rules in _kept(rl).values())
        # Without Eq.2 every question with a consistent probe stays.
        stats, rl, _ = _build(stub, tmp_path / "no_eq2", rejection_filter=False)
        assert _kept(rl) == {
            "apples": ["inverse", "cause"],
            "pencils": ["inverse", "assumption", "cause"],
            "books": ["inverse", "assumption", "cause"],
        }
        assert stats["questions"]["dropped"] == {"no_probes_left": 1}
        assert stats["requests"]["student"]["asked"] == 0


def test_teacher_authored_probes(tmp_path):
    def authoring_script(body: dict) -> str:
        content = body["messages"][0]["content"]
        if "You write explanatory probes" in content:
            rule = content.split("Kind of probe: ", 1)[1].split(" ", 1)[0]
            if rule == "generalization":
                return "NOT_APPLICABLE"
            record = next(k for k in KEYWORDS if k in content)
            return f"Probe: ({rule}) why does Sam end with that many {record}?"
        return "Because. \\boxed{1}"

    with StubServer(authoring_script) as stub:
        stats, rl, sft = _build(
            stub,
            tmp_path / "authored",
            rules=("inverse", "generalization", "cause"),
            probe_source="teacher",
            student=None,
            consistency_filter=False,
            teacher_rationale=False,
        )
    kept = parse_probes(rl["extra_info"][0], 0)
    assert [p["question"] for p in kept] == [
        "(inverse) why does Sam end with that many apples?",
        "(cause) why does Sam end with that many apples?",
    ]
    assert all(p["teacher_answer"] == "Because. \\boxed{1}" for p in kept)
    assert stats["rules"]["generalization"]["not_applicable_reasons"] == {"teacher: not applicable": 4}
    assert json.loads((tmp_path / "authored" / "stats.json").read_text())["config"]["probe_source"] == "teacher"
    assert len(sft) == 4 * 3  # two probe rows and one question row per question
