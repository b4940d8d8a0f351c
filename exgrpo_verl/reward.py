"""verl reward function: R_outcome of the FINAL assistant turn.

verl hands a multi-turn rollout to the reward function as one ``solution_str`` (every turn, role
markers stripped), so an answer written in a probe turn would be graded too. The probe-dialogue
agent loop therefore puts the final assistant turn's text into ``extra_info[FINAL_RESPONSE_KEY]``
(agent-loop ``extra_fields`` are merged into ``extra_info`` by verl's reward managers); when the
key is present only that text is graded, and when it is absent (single-turn validation, eval)
``solution_str`` is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from exgrpo_verl.answers import grade
from exgrpo_verl.answers.math_expr import DEFAULT_TIMEOUT_S
from exgrpo_verl.data_sources import UnknownDataSourceError
from exgrpo_verl.schema import CHOICES_KEY

logger = logging.getLogger(__name__)
_failures = 0

FINAL_RESPONSE_KEY = "final_response"
"""extra_info key holding the final assistant turn's text of a multi-turn rollout."""


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    math_timeout_s: float = DEFAULT_TIMEOUT_S,
    **kwargs: Any,
) -> dict[str, Any]:
    """Return {"score": R_outcome in {0, 1}, "acc": bool, "pred": normalised prediction}.

    Never raises on model output, gold values or a failing math helper: anything that goes wrong
    while grading scores 0 (logged once). Raises UnknownDataSourceError for a data_source no
    checker knows, a configuration error that would otherwise score every rollout 0.
    """
    try:
        response, choices = solution_str, None
        if extra_info is not None and (type(extra_info) is dict or isinstance(extra_info, Mapping)):
            final = extra_info.get(FINAL_RESPONSE_KEY)
            if final is not None:
                response = final
            choices = extra_info.get(CHOICES_KEY)
        correct, pred = grade(data_source, response, ground_truth, choices, math_timeout_s)
    except UnknownDataSourceError:
        raise
    except Exception as error:
        _log_failure(data_source, error)
        return {"score": 0.0, "acc": False, "pred": ""}
    return {"score": 1.0 if correct else 0.0, "acc": correct, "pred": pred}


def _log_failure(data_source: Any, error: Exception) -> None:
    global _failures
    _failures += 1
    if _failures == 1:
        logger.warning(
            "grading a %r answer failed (%r); it scores 0. Logged once; later failures are counted in "
            "exgrpo_verl.reward.grading_failures()",
            data_source,
            error,
            exc_info=True,
        )


def grading_failures() -> int:
    """How many compute_score calls in this process scored 0 because grading itself failed."""
    return _failures
