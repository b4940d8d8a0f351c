"""The twelve datasets the method is evaluated on, and how each one's answers are graded.

``name`` is the ``data_source`` value written into every parquet row; aliases (hub names and
common spellings) are accepted wherever a data_source is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache


class AnswerType(str, Enum):
    NUMBER = "number"
    MATH = "math"
    CHOICE = "choice"
    YES_NO = "yes_no"
    NLI = "nli"
    DATE = "date"
    FREE_TEXT = "free_text"


@dataclass(frozen=True)
class DataSource:
    name: str
    answer_type: AnswerType
    held_in: bool
    aliases: tuple[str, ...] = ()


DATA_SOURCES: tuple[DataSource, ...] = (
    DataSource("strategyqa", AnswerType.YES_NO, True, ("strategy_qa", "chilled/strategyqa", "bigbench/strategyqa")),
    DataSource("commonsense_qa", AnswerType.CHOICE, True, ("tau/commonsense_qa", "csqa", "commonsenseqa")),
    DataSource("arc_challenge", AnswerType.CHOICE, True, ("allenai/ai2_arc", "ai2_arc", "arc")),
    DataSource(
        "math",
        AnswerType.MATH,
        True,
        (
            "math500",
            "math_500",
            "hendrycks_math",
            "lighteval/math",
            "huggingfaceh4/math_500",
            "eleutherai/hendrycks_math",
        ),
    ),
    DataSource("gsm8k", AnswerType.NUMBER, True, ("openai/gsm8k", "gsm8k_socratic")),
    DataSource("tabmwp", AnswerType.FREE_TEXT, True, ("tab_mwp", "promptpg/tabmwp")),
    DataSource("anli", AnswerType.NLI, True, ("facebook/anli",)),
    DataSource("date_understanding", AnswerType.DATE, True, ("date", "bigbench/date_understanding")),
    DataSource("boolq", AnswerType.YES_NO, False, ("google/boolq", "super_glue/boolq")),
    DataSource("openbookqa", AnswerType.CHOICE, False, ("allenai/openbookqa", "obqa")),
    DataSource("esnli", AnswerType.NLI, False, ("e_snli", "esnli/esnli")),
    DataSource("gsm8k_reversal", AnswerType.NUMBER, False, ("gsm8k_rev",)),
)

_BY_KEY = {key: source for source in DATA_SOURCES for key in (source.name, *source.aliases)}


class UnknownDataSourceError(ValueError):
    """A data_source no grader knows; the message lists the supported ones."""


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


@lru_cache(maxsize=256)
def get_data_source(name: str) -> DataSource:
    """Look up a dataset by name or alias (case-, dash- and underscore-insensitive)."""
    source = _BY_KEY.get(_key(str(name)))
    if source is None:
        supported = ", ".join(s.name for s in DATA_SOURCES)
        raise UnknownDataSourceError(f"unknown data_source {name!r}; supported: {supported} (or their aliases)")
    return source


def held_in_names() -> list[str]:
    return [s.name for s in DATA_SOURCES if s.held_in]


def ood_names() -> list[str]:
    return [s.name for s in DATA_SOURCES if not s.held_in]
