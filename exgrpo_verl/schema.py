"""The RL parquet row: verl's RLHFDataset schema plus the probe list the ExGRPO rollout reads.

One module owns the row format so the EI writers (which produce rows) and the rollout (which
consumes them) cannot drift apart::

    data_source     canonical dataset name (exgrpo_verl.data_sources)
    prompt          [{"role": "user", "content": question + \\boxed{} instruction}]
    ability         "reasoning" / "math"
    reward_model    {"style": "rule", "ground_truth": gold answer}
    agent_name      "exgrpo_probe_dialogue" (train) or "single_turn_agent" (val/test)
    extra_info      {"index", "id", "split", "choices",
                     "probes": [{"rule", "question", "teacher_answer", "reveals_answer"}]}

``reveals_answer`` marks a probe that states or implies the gold answer (design card §1.3): the
rollout does not ask it unless ``exgrpo.revealing_probes=allow``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from exgrpo_verl.datasets.record import Record
from exgrpo_verl.probes.reveals import reveals_answer
from exgrpo_verl.prompts import question_messages

PROBE_AGENT_NAME = "exgrpo_probe_dialogue"
SINGLE_TURN_AGENT_NAME = "single_turn_agent"
PROBES_KEY = "probes"
CHOICES_KEY = "choices"
REVEALS_KEY = "reveals_answer"


class Probe(TypedDict, total=False):
    """One explanatory probe: the EI rule that made it, the question, the teacher's answer if any,
    and whether the question states or implies the gold answer (None: a row written before the
    flag existed)."""

    rule: str
    question: str
    teacher_answer: str | None
    reveals_answer: bool | None


class MalformedProbesError(ValueError):
    """A row's probe list is not a list of {rule, question[, teacher_answer]}."""


def build_rl_row(record: Record, index: int, probes: Sequence[Probe] | None) -> dict[str, Any]:
    """A train row (with probes, for the probe-dialogue agent loop) or, with ``probes=None``, a
    single-turn val/test row. A probe without ``reveals_answer`` is checked against the record's
    gold answer here, so every written row carries the flag."""
    extra_info: dict[str, Any] = {
        "index": index,
        "id": record.id,
        "split": record.split,
        CHOICES_KEY: record.choices_column(),
    }
    if probes is not None:
        extra_info[PROBES_KEY] = [
            {
                "rule": p["rule"],
                "question": p["question"],
                "teacher_answer": p.get("teacher_answer"),
                "reveals_answer": (
                    bool(p["reveals_answer"])
                    if p.get("reveals_answer") is not None
                    else reveals_answer(p["question"], record)
                ),
            }
            for p in probes
        ]
    return {
        "data_source": record.data_source,
        "prompt": question_messages(record.question, record.data_source),
        "ability": "math" if record.data_source in ("math", "gsm8k", "gsm8k_reversal", "tabmwp") else "reasoning",
        "reward_model": {"style": "rule", "ground_truth": record.answer},
        "agent_name": PROBE_AGENT_NAME if probes is not None else SINGLE_TURN_AGENT_NAME,
        "extra_info": extra_info,
    }


def parse_probes(extra_info: Any, row_index: Any) -> list[Probe]:
    """The probe list of a row, validated; an absent or empty list is []. Raises
    MalformedProbesError naming the row index and the offending entry."""
    if not isinstance(extra_info, Mapping):
        return []
    raw = extra_info.get(PROBES_KEY)
    if raw is None:
        return []
    if hasattr(raw, "tolist"):
        raw = raw.tolist()
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise MalformedProbesError(
            f"row {row_index}: extra_info.{PROBES_KEY} must be a list of {{rule, question}}, got {type(raw).__name__}"
        )
    probes: list[Probe] = []
    for position, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise MalformedProbesError(
                f"row {row_index}: extra_info.{PROBES_KEY}[{position}] must be a mapping, got {type(entry).__name__}"
            )
        question, rule = entry.get("question"), entry.get("rule")
        if not isinstance(question, str) or not question.strip():
            raise MalformedProbesError(f"row {row_index}: extra_info.{PROBES_KEY}[{position}].question is missing")
        teacher_answer = entry.get("teacher_answer")
        reveals = entry.get(REVEALS_KEY)
        if reveals is not None and not isinstance(reveals, (bool, int)) and not hasattr(reveals, "item"):
            raise MalformedProbesError(
                f"row {row_index}: extra_info.{PROBES_KEY}[{position}].{REVEALS_KEY} must be true or false, "
                f"got {reveals!r}"
            )
        probes.append(
            {
                "rule": str(rule) if rule is not None else "unknown",
                "question": question,
                "teacher_answer": teacher_answer if isinstance(teacher_answer, str) and teacher_answer else None,
                REVEALS_KEY: bool(reveals) if reveals is not None else None,
            }
        )
    return probes
