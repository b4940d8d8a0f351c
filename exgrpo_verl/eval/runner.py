"""Ask what the generations file lacks, grade every answer with the project's checkers, summarise."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from exgrpo_verl.answers import grade
from exgrpo_verl.eval.backends.base import Backend, GenRequest, Sampling
from exgrpo_verl.eval.errors import StaleGenerationsError
from exgrpo_verl.eval.metrics import dataset_metrics, group_averages
from exgrpo_verl.eval.records import EvalItem
from exgrpo_verl.eval.store import GenerationStore


def grade_answer(item: EvalItem, response: str) -> tuple[bool, str]:
    """(correct, normalised prediction) of ``response``: the same grading as the RL reward."""
    return grade(item.dataset, response, item.gold, item.choices)


def pending_requests(items: Sequence[EvalItem], samples: int, store: GenerationStore) -> list[GenRequest]:
    """The answers ``store`` does not hold yet; refuses stored answers to a different prompt."""
    pending = []
    for item in items:
        for sample in range(samples):
            stored = store.get((item.dataset, item.id, sample))
            if stored is None:
                pending.append(GenRequest(item, sample))
            elif stored.get("prompt_sha") != item.prompt_sha:
                raise StaleGenerationsError(
                    f"{store.path}: the stored answer for {item.dataset} id {item.id} was asked with another prompt "
                    "(the dataset or the prompt changed); pass --overwrite to start over, or choose another --out"
                )
    return pending


def generate_missing(
    items_by_dataset: Mapping[str, Sequence[EvalItem]],
    store: GenerationStore,
    make_backend: Callable[[], Backend],
    sampling: Sampling,
    samples: int = 1,
    progress: bool = True,
) -> int:
    """Generate, grade and store every missing answer, one dataset at a time with a progress bar.
    The backend is built only if something is missing. Returns the number of answers generated."""
    from tqdm.auto import tqdm

    backend: Backend | None = None
    generated = 0
    for dataset, items in items_by_dataset.items():
        pending = pending_requests(items, samples, store)
        total = len(items) * samples
        with tqdm(
            total=total, initial=total - len(pending), desc=dataset, unit="answer", disable=None if progress else True
        ) as bar:
            if not pending:
                continue
            backend = backend or make_backend()
            for index, completion in backend.generate(pending, sampling):
                request = pending[index]
                correct, pred = grade_answer(request.item, completion.text)
                store.append(request, completion, correct, pred)
                generated += 1
                bar.update()
    return generated


def summarize(
    items_by_dataset: Mapping[str, Sequence[EvalItem]],
    store: GenerationStore,
    samples: int = 1,
    pass_k: Sequence[int] = (),
    regrade: bool = False,
) -> dict[str, Any]:
    """Per-dataset metrics and group averages over exactly the requested items and samples.

    Stored verdicts are reused unless ``regrade`` is set or the gold answer changed since."""
    datasets = {}
    for dataset, items in items_by_dataset.items():
        if not items:
            continue
        per_item = [[_graded(store, item, sample, regrade) for sample in range(samples)] for item in items]
        datasets[dataset] = dataset_metrics(per_item, pass_k)
    return {"datasets": datasets, "averages": group_averages(datasets)}


def _graded(store: GenerationStore, item: EvalItem, sample: int, regrade: bool) -> dict[str, Any]:
    answer = store.get((item.dataset, item.id, sample))
    if answer is None:
        raise StaleGenerationsError(f"{store.path} has no answer for {item.dataset} id {item.id} sample {sample}")
    if regrade or _json(answer.get("gold")) != _json(item.gold):
        correct, pred = grade_answer(item, answer["response"])
        answer = {**answer, "correct": correct, "pred": pred}
    return answer


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
