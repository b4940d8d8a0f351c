"""``python -m exgrpo_verl eval``: single-turn accuracy of a model on the twelve datasets.

Checks in the order that wastes the least time: dataset names and settings, then the backend's
library and the model, then the generations file, then the datasets; the model weights load last,
and only when some answer is missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from exgrpo_verl import __version__
from exgrpo_verl.data_sources import DATA_SOURCES, UnknownDataSourceError, get_data_source, held_in_names, ood_names
from exgrpo_verl.eval.backends import BACKENDS, Sampling, auto_backend, backend_class
from exgrpo_verl.eval.errors import EvalError
from exgrpo_verl.eval.records import (
    EvalItem,
    items_from_records,
    load_dataset_items,
    read_records_jsonl,
    read_rl_parquet,
)
from exgrpo_verl.eval.results import write_results
from exgrpo_verl.eval.runner import generate_missing, summarize
from exgrpo_verl.eval.store import GenerationStore

DATASET_GROUPS = {"all": lambda: [s.name for s in DATA_SOURCES], "held_in": held_in_names, "ood": ood_names}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Single-turn accuracy on the twelve datasets, with the training prompt and the reward's checkers. "
        "Resumable: rerun the same command and only missing answers are generated."
    )
    parser.add_argument(
        "--model", required=True, help="model folder or hub name (hf, vllm); served model name (openai)"
    )
    parser.add_argument(
        "--backend", choices=["auto", *BACKENDS], default="auto", help="auto: openai with --base-url, vllm on a GPU, hf"
    )
    parser.add_argument("--out", required=True, help="results file, e.g. results/RUN.json")
    parser.add_argument("--generations", help="answers file (default: OUT with .generations.jsonl)")
    parser.add_argument("--name", help="run label in reports (default: OUT's file name)")

    data = parser.add_argument_group("questions")
    data.add_argument(
        "--datasets",
        help="comma-separated names or aliases, or all / held_in / ood "
        "(default: all twelve, or every dataset in --data/--records)",
    )
    data.add_argument("--split", default="test", help="split the dataset loaders read (default: test)")
    data.add_argument("--limit", type=int, help="first N questions of each dataset")
    data.add_argument("--local-path", action="append", default=[], metavar="NAME=PATH", help="local copy of a dataset")
    data.add_argument(
        "--data", action="append", default=[], metavar="FILE.parquet", help="RL/val parquet rows instead of loaders"
    )
    data.add_argument(
        "--records", action="append", default=[], metavar="FILE.jsonl", help="jsonl of Record fields instead of loaders"
    )

    decoding = parser.add_argument_group("decoding")
    decoding.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    decoding.add_argument("--top-p", type=float, default=1.0)
    decoding.add_argument("--max-tokens", type=int, default=2048, help="answer length limit in tokens")
    decoding.add_argument("--samples", type=int, default=1, help="answers per question (needs --temperature > 0)")
    decoding.add_argument("--pass-k", help="comma-separated k for pass@k (default with --samples N > 1: 1,N)")
    decoding.add_argument("--seed", type=int, default=0)

    run = parser.add_argument_group("running")
    run.add_argument(
        "--batch-size",
        "--concurrency",
        type=int,
        dest="batch_size",
        help="hf: prompts per generate call (8); vllm: prompts per chunk (512); openai: requests in flight (8)",
    )
    run.add_argument("--overwrite", action="store_true", help="discard stored answers and start over")
    run.add_argument("--regrade", action="store_true", help="grade stored answers again with the current checkers")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    local = parser.add_argument_group("hf and vllm backends")
    local.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    local.add_argument("--device", help="hf: torch device (default: cuda if available, else cpu)")
    local.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm")
    local.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vllm")
    local.add_argument("--max-model-len", type=int, help="vllm")

    remote = parser.add_argument_group("openai backend")
    remote.add_argument("--base-url", help="endpoint, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL)")
    remote.add_argument("--api-key", help="default: $OPENAI_API_KEY, else 'EMPTY'")
    remote.add_argument("--request-timeout", type=float, default=600.0, help="seconds per request")


def run(args: argparse.Namespace) -> int:
    try:
        results = evaluate_cli(args)
    except (EvalError, UnknownDataSourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(results))
    print(f"results: {args.out}\nanswers: {results['generations']}")
    return 0


def evaluate_cli(args: argparse.Namespace) -> dict[str, Any]:
    names = resolve_datasets(args.datasets)
    sampling, pass_k = _decoding(args)
    if args.limit is not None and args.limit < 1:
        raise EvalError("--limit must be at least 1")
    local_paths = _local_paths(args.local_path)

    backend_name = args.backend if args.backend != "auto" else auto_backend(args.base_url)
    backend_cls = backend_class(backend_name)
    options = _backend_options(backend_name, args)
    backend_cls.check_installed()
    backend_cls.check_model(args.model, options)

    out = Path(args.out)
    generations = Path(args.generations) if args.generations else out.with_suffix(".generations.jsonl")
    settings = {"model": args.model, "backend": backend_name, "sampling": sampling.answer_settings()}
    with GenerationStore(generations, settings, overwrite=args.overwrite) as store:
        items = collect_items(args, names, local_paths)
        generate_missing(
            items,
            store,
            lambda: backend_cls(args.model, **options),
            sampling,
            samples=args.samples,
            progress=not args.no_progress,
        )
        summary = summarize(items, store, samples=args.samples, pass_k=pass_k, regrade=args.regrade)
    results = {
        "run": args.name or out.stem,
        "model": args.model,
        "backend": backend_name,
        "split": args.split,
        "questions_from": [*args.data, *args.records] or "dataset loaders",
        "sampling": sampling.as_dict(),
        "samples": args.samples,
        "pass_k": list(pass_k),
        "generations": str(generations),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "exgrpo_verl_version": __version__,
        **summary,
    }
    write_results(out, results)
    return results


def resolve_datasets(spec: str | None) -> list[str] | None:
    """Canonical dataset names of a comma-separated list (aliases and the groups all/held_in/ood
    accepted), or None when no list was given."""
    if spec is None:
        return None
    names: list[str] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        group = DATASET_GROUPS.get(token.lower().replace("-", "_"))
        if group is not None:
            names.extend(group())
            continue
        try:
            names.append(get_data_source(token).name)
        except UnknownDataSourceError as error:
            raise EvalError(f"{error}; or a group: {', '.join(DATASET_GROUPS)}") from error
    if not names:
        raise EvalError("--datasets names no dataset")
    return list(dict.fromkeys(names))


def collect_items(
    args: argparse.Namespace, names: list[str] | None, local_paths: dict[str, str]
) -> dict[str, list[EvalItem]]:
    """Questions per dataset, from --data/--records files if given, else from the loaders."""
    if not (args.data or args.records):
        by_dataset = {}
        for name in names or DATASET_GROUPS["all"]():
            items = load_dataset_items(name, args.split, local_paths.get(name), args.limit)
            if not items:
                raise EvalError(f"dataset {name} has no questions in split {args.split!r}")
            by_dataset[name] = items[: args.limit] if args.limit else items
        return by_dataset
    pooled: list[EvalItem] = []
    for path in args.data:
        pooled.extend(read_rl_parquet(path))
    for path in args.records:
        pooled.extend(items_from_records(read_records_jsonl(path)))
    found: dict[str, list[EvalItem]] = {}
    for item in pooled:
        found.setdefault(item.dataset, []).append(item)
    missing = [n for n in names or [] if n not in found]
    if missing:
        raise EvalError(
            f"{', '.join(missing)} not in the --data/--records files; they hold: {', '.join(found) or 'nothing'}"
        )
    order = names or [s.name for s in DATA_SOURCES if s.name in found]
    return {name: found[name][: args.limit] if args.limit else found[name] for name in order}


def format_summary(results: dict[str, Any]) -> str:
    lines = [f"{'dataset':<20} {'group':<8} {'accuracy':>9} {'correct':>15} {'no answer':>9} {'cut off':>8}"]
    for name, m in results["datasets"].items():
        counts = f"{m['correct']}/{m['answers']}"
        lines.append(
            f"{name:<20} {m['group']:<8} {m['accuracy']:>8.2f}% {counts:>15} {m['no_answer']:>9} {m['truncated']:>8}"
        )
        for k, value in m.get("pass_at_k", {}).items():
            lines.append(f"{'':<20} {'pass@' + k:<8} {value:>8.2f}%")
    for group, average in results["averages"].items():
        if average["accuracy"] is not None:
            note = "" if average["complete"] else f" (over {len(average['datasets'])} datasets, not the full group)"
            lines.append(f"{group + ' average':<29} {average['accuracy']:>8.2f}%{note}")
    return "\n".join(lines)


def _decoding(args: argparse.Namespace) -> tuple[Sampling, tuple[int, ...]]:
    if args.samples < 1:
        raise EvalError("--samples must be at least 1")
    if args.samples > 1 and args.temperature <= 0:
        raise EvalError("--samples > 1 needs --temperature > 0 (greedy answers would all be the same)")
    if args.max_tokens < 1:
        raise EvalError("--max-tokens must be at least 1")
    if args.pass_k:
        try:
            pass_k = tuple(sorted({int(k) for k in args.pass_k.split(",") if k.strip()}))
        except ValueError as error:
            raise EvalError(f"--pass-k must be comma-separated integers, got {args.pass_k!r}") from error
        bad = [k for k in pass_k if not 1 <= k <= args.samples]
        if bad:
            raise EvalError(f"--pass-k values must be between 1 and --samples ({args.samples}); got {bad}")
    else:
        pass_k = (1, args.samples) if args.samples > 1 else ()
    sampling = Sampling(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed)
    return sampling, pass_k


def _local_paths(specs: Sequence[str]) -> dict[str, str]:
    paths = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise EvalError(f"--local-path takes NAME=PATH, got {spec!r}")
        paths[resolve_datasets(name)[0]] = path
    return paths


def _backend_options(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    if backend == "hf":
        return {"batch_size": args.batch_size, "device": args.device, "dtype": args.dtype}
    if backend == "vllm":
        return {
            "batch_size": args.batch_size,
            "tensor_parallel_size": args.tensor_parallel_size,
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "max_model_len": args.max_model_len,
            "dtype": args.dtype,
            "seed": args.seed,
        }
    return {
        "batch_size": args.batch_size,
        "base_url": args.base_url,
        "api_key": args.api_key,
        "request_timeout_s": args.request_timeout,
    }
