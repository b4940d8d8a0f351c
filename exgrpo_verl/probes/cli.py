"""Command-line surface of stage 1; ``data_preprocess/*.py`` and ``python -m exgrpo_verl`` call these.

ei-build       dataset -> probes -> (teacher, Eq.1, Eq.2) -> rl_train.parquet, sft_train.parquet, stats.json
ei-eval-set    dataset split -> single-turn val/test parquet
ei-check-data  load a dataset (hub or local files) and report its bad rows
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from exgrpo_verl.data_sources import DATA_SOURCES
from exgrpo_verl.datasets import DATASETS, DatasetFileError, DatasetRowError, LoadResult, load_records
from exgrpo_verl.probes import drop_report, pipeline, writers
from exgrpo_verl.probes.filters import RejectionBand
from exgrpo_verl.probes.rules import RULE_NAMES, RULES
from exgrpo_verl.probes.server_limits import (
    LOCAL_CONCURRENCY,
    LOCAL_TIMEOUT_S,
    PROBE_TIMEOUT_S,
    REMOTE_CONCURRENCY,
    REMOTE_TIMEOUT_S,
    default_limits,
    same_local_server,
)
from exgrpo_verl.probes.teacher import EndpointConfig, EndpointError

_DATASET_NAMES = [source.name for source in DATA_SOURCES]
T = TypeVar("T", int, float)


def add_dataset_arguments(parser: argparse.ArgumentParser, default_split: str) -> None:
    group = parser.add_argument_group("dataset")
    group.add_argument("--dataset", required=True, choices=_DATASET_NAMES, help="which of the twelve datasets")
    group.add_argument("--split", default=default_split, help=f"split to read or label (default {default_split})")
    group.add_argument(
        "--local-path",
        action="append",
        default=[],
        metavar="FILE",
        help="a .jsonl/.json/.parquet/.csv file in the dataset's own format; repeat for several files (GSM8K: "
        "the main and Socratic files are merged by question). Without it the hub copy is read.",
    )
    group.add_argument("--hub-name", help="read this hub dataset (or local dataset folder) instead of the default")
    group.add_argument("--hub-config", help="hub config name for --hub-name (or instead of the default's)")
    group.add_argument("--skip-bad-rows", action="store_true", help="count and skip malformed rows instead of failing")
    group.add_argument("--limit", type=int, help="use only the first N questions (smoke runs)")


def _load(args: argparse.Namespace) -> LoadResult:
    result = load_records(
        args.dataset,
        args.split,
        local_paths=args.local_path or None,
        hub_name=args.hub_name,
        hub_config=args.hub_config,
        skip_bad_rows=args.skip_bad_rows,
        limit=args.limit,
    )
    _report_bad_rows(result)
    return result


def _report_bad_rows(result: LoadResult) -> None:
    if result.bad_rows:
        print(f"skipped {len(result.bad_rows)} malformed row(s):", file=sys.stderr)
        for error in result.bad_rows[:10]:
            print(f"  {error}", file=sys.stderr)
        if len(result.bad_rows) > 10:
            print(f"  ... and {len(result.bad_rows) - 10} more", file=sys.stderr)


def _endpoint_arguments(parser: argparse.ArgumentParser, role: str) -> None:
    group = parser.add_argument_group(
        f"{role} endpoint (any OpenAI-compatible chat API: vLLM serve, SGLang, transformers serve, OpenAI, Gemini)"
    )
    group.add_argument(f"--{role}-url", help="API base URL, e.g. http://localhost:8000/v1")
    group.add_argument(f"--{role}-model", help="model name the endpoint serves")
    group.add_argument(
        f"--{role}-api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (default OPENAI_API_KEY; unset = no key sent)",
    )
    group.add_argument(
        f"--{role}-concurrency",
        type=int,
        help=f"requests in flight at most (default {REMOTE_CONCURRENCY}; {LOCAL_CONCURRENCY} for a server on this "
        "machine that does not report batching, e.g. transformers serve, shared by teacher and student when they "
        "use the same one)",
    )
    group.add_argument(f"--{role}-temperature", type=float, default=0.0)
    group.add_argument(f"--{role}-top-p", type=float, default=1.0)
    group.add_argument(f"--{role}-max-tokens", type=int, default=1024)


def _given(value: T | None, default: T) -> T:
    """A flag's value when it was given (0 included: EndpointConfig rejects it), else the default."""
    return default if value is None else value


def _endpoint(args: argparse.Namespace, role: str, notes: list[str] | None = None) -> EndpointConfig | None:
    """The endpoint the flags name; where they leave concurrency or the timeout open, the build
    chooses from where the server is (:mod:`exgrpo_verl.probes.server_limits`) and says so in ``notes``."""
    url = getattr(args, f"{role}_url")
    model = getattr(args, f"{role}_model")
    if not url:
        if model:
            raise ValueError(f"--{role}-model needs --{role}-url")
        return None
    if not model:
        raise ValueError(f"--{role}-url needs --{role}-model")
    chosen = {"concurrency": getattr(args, f"{role}_concurrency"), "timeout_s": args.request_timeout}
    config = EndpointConfig(
        base_url=url,
        model=model,
        api_key_env=getattr(args, f"{role}_api_key_env") or None,
        concurrency=_given(chosen["concurrency"], REMOTE_CONCURRENCY),
        temperature=getattr(args, f"{role}_temperature"),
        top_p=getattr(args, f"{role}_top_p"),
        max_tokens=getattr(args, f"{role}_max_tokens"),
        timeout_s=_given(chosen["timeout_s"], REMOTE_TIMEOUT_S),
        connect_timeout_s=args.connect_timeout,
        role=role,
        max_attempts=args.max_attempts,
        backoff_initial_s=args.backoff_initial,
        backoff_max_s=args.backoff_max,
    )
    if all(value is not None for value in chosen.values()):
        return config
    limits = default_limits(url, config.headers(), min(config.connect_timeout_s, PROBE_TIMEOUT_S))
    config = replace(
        config,
        concurrency=_given(chosen["concurrency"], limits.concurrency),
        timeout_s=_given(chosen["timeout_s"], limits.timeout_s),
    )
    if notes is not None:
        chose = []
        if chosen["concurrency"] is None:
            chose.append(f"{config.concurrency} request(s) in flight (--{role}-concurrency)")
        if chosen["timeout_s"] is None:
            chose.append(f"{config.timeout_s:g} s per request (--request-timeout)")
        notes.append(f"{role} endpoint {url}: {limits.why}: {', '.join(chose)}")
    return config


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Stage 1 (Explanatory Inversion): build probes for a dataset split and write rl_train.parquet (verl "
        "RLHFDataset rows with the probe list), sft_train.parquet (verl MultiTurnSFTDataset), probes.jsonl and "
        "stats.json into --out-dir. Without --teacher-url this is teacher-free: template probes over the "
        "dataset's own rationale."
    )
    parser.epilog = "rules: " + "; ".join(f"{name}: {rule.summary}" for name, rule in RULES.items())
    add_dataset_arguments(parser, "train")
    out = parser.add_argument_group("output")
    out.add_argument("--out-dir", required=True, type=Path, help="folder for the outputs")
    out.add_argument("--cache", type=Path, help="request cache (SQLite; default OUT_DIR/requests.sqlite)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar and no progress lines")
    out.add_argument(
        "--progress-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="where stderr is not a terminal (a log file, a batch job): a progress line this often, with requests "
        "done of expected by phase, req/s, tok/s and an ETA (default 30; 0: only at the start and the end)",
    )
    probes = parser.add_argument_group("probes")
    probes.add_argument("--rules", default=",".join(RULE_NAMES), help="comma-separated EI rules (default: all ten)")
    probes.add_argument(
        "--probe-source",
        choices=["auto", "template", "teacher"],
        default="auto",
        help="who writes the probes: templates, or the teacher (auto: the teacher when --teacher-url is given)",
    )
    probes.add_argument("--fraction", type=float, default=1.0, help="use this fraction of the questions (0 < p <= 1)")
    probes.add_argument("--seed", type=int, default=0, help="seed of the --fraction sample (nested across fractions)")
    _endpoint_arguments(parser, "teacher")
    parser.add_argument(
        "--no-teacher-rationale",
        action="store_true",
        help="do not ask the teacher for its own solution R_T (use the dataset rationale)",
    )
    _endpoint_arguments(parser, "student")
    requests = parser.add_argument_group("requests (both endpoints)")
    requests.add_argument(
        "--request-timeout",
        type=float,
        help=f"seconds per request attempt, its wait in the server's queue included (default {REMOTE_TIMEOUT_S:g}; "
        f"{LOCAL_TIMEOUT_S:g} for a server on this machine that does not report batching)",
    )
    requests.add_argument(
        "--connect-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for a connection, and for the start-up check that each endpoint answers "
        "(a dead endpoint stops the build this soon)",
    )
    requests.add_argument(
        "--max-attempts", type=int, default=6, help="attempts per request (429/5xx/timeouts/dropped connections/empty)"
    )
    requests.add_argument("--backoff-initial", type=float, default=1.0, help="first retry delay (doubles each time)")
    requests.add_argument("--backoff-max", type=float, default=60.0, help="longest retry delay")
    filters = parser.add_argument_group("filters")
    filters.add_argument("--no-consistency-filter", action="store_true", help="switch off Eq.1")
    filters.add_argument("--no-rejection-filter", action="store_true", help="switch off Eq.2")
    filters.add_argument("--min-correct", type=int, default=0, help="Eq.2: keep Q only if Λ >= this (default 0)")
    filters.add_argument("--max-correct", type=int, help="Eq.2: keep Q only if Λ <= this (default: no bound)")
    sft = parser.add_argument_group("SFT data")
    sft.add_argument(
        "--sft-layout",
        choices=["per_probe", "dialogue"],
        default="per_probe",
        help="one row per probe (default) or one dialogue of all probes per question",
    )
    sft.add_argument("--no-sft-question", action="store_true", help="leave out the question -> rationale turn")
    sft.add_argument(
        "--sft-bare-answers",
        action="store_true",
        help="a question without a rationale gets the SFT row question -> 'The answer is \\boxed{X}.' "
        "(an answer-format warm-up for datasets that ship no rationale)",
    )


def build_config(args: argparse.Namespace, notes: list[str] | None = None) -> pipeline.BuildConfig:
    """The build the flags describe; ``notes`` collects what the build chose where the flags left it open."""
    teacher, student = _endpoint(args, "teacher", notes), _endpoint(args, "student", notes)
    if teacher and student and notes is not None and same_local_server(teacher.base_url, student.base_url):
        notes.append(f"teacher and student share one server: {teacher.concurrency} request(s) in flight in all")
    return pipeline.BuildConfig(
        dataset=args.dataset,
        out_dir=args.out_dir,
        split=args.split,
        local_paths=list(args.local_path),
        hub_name=args.hub_name,
        hub_config=args.hub_config,
        skip_bad_rows=args.skip_bad_rows,
        rules=tuple(name.strip() for name in args.rules.split(",") if name.strip()),
        probe_source=args.probe_source,
        fraction=args.fraction,
        seed=args.seed,
        limit=args.limit,
        teacher=teacher,
        student=student,
        consistency_filter=not args.no_consistency_filter,
        rejection_filter=not args.no_rejection_filter,
        band=RejectionBand(args.min_correct, args.max_correct),
        teacher_rationale=not args.no_teacher_rationale,
        sft_layout=args.sft_layout,
        sft_question=not args.no_sft_question,
        sft_bare_answers=args.sft_bare_answers,
        cache_path=args.cache,
        progress=not args.no_progress,
        progress_interval_s=args.progress_interval,
    )


def run_build(args: argparse.Namespace) -> int:
    try:
        notes: list[str] = []
        config = build_config(args, notes)
        for note in notes:
            print(note, file=sys.stderr)
        loaded = _load(args)
        result = pipeline.build(config, loaded)
    except (DatasetRowError, DatasetFileError, EndpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    stats = result.stats
    questions = stats["questions"]
    print(f"{config.dataset}/{config.split}: kept {questions['kept']} of {questions['selected']} questions")
    if questions["dropped"]:
        print(f"  dropped: {json.dumps(questions['dropped'])}")
    print(f"  probes per kept question: {stats['probes_per_kept_question']}")
    print(
        f"  askable probes per kept question: {stats['askable_probes_per_kept_question']} "
        "(not revealing the answer: what the rollout asks with exgrpo.revealing_probes=exclude)"
    )
    print("  kept probes per rule: " + ", ".join(f"{r}={s['kept']}" for r, s in stats["rules"].items()))
    revealing = {r: s["kept_revealing"] for r, s in stats["rules"].items() if s["kept_revealing"]}
    if revealing:
        print("  of which reveal the answer: " + ", ".join(f"{r}={n}" for r, n in revealing.items()))
    for name, counts in stats.get("requests", {}).items():
        print(f"  {name} requests: {json.dumps(counts)}")
    reasons = stats.get("drop_reasons", [])
    if reasons:
        print("  " + (drop_report.headline(stats) or "dropped, and what changes it:"))
        for reason in reasons:
            print(f"    - {reason}")
    for name, path in result.paths.items():
        print(f"  {name}: {path}")
    if result.failed_requests:
        kinds: dict[str, int] = {}
        for counts in stats.get("requests", {}).values():
            for kind, count in counts["failed_by_kind"].items():
                kinds[kind] = kinds.get(kind, 0) + count
        print(
            f"warning: {result.failed_requests} request(s) failed after every retry "
            f"({', '.join(f'{kind}: {count}' for kind, count in sorted(kinds.items()))}); their probes were "
            "dropped. Rerun the same command to ask only those again (answers so far are cached).",
            file=sys.stderr,
        )
        return pipeline.EXIT_REQUESTS_FAILED
    return 0


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write a single-turn val/test parquet (verl RLHFDataset rows with agent_name single_turn_agent): "
        "inference asks the question alone."
    )
    add_dataset_arguments(parser, "test")
    parser.add_argument("--out", required=True, type=Path, help="parquet file to write")


def run_eval(args: argparse.Namespace) -> int:
    try:
        loaded = _load(args)
    except (DatasetRowError, DatasetFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    path = writers.write_parquet(writers.eval_rows(loaded.records), args.out)
    print(f"{args.dataset}/{args.split}: {len(loaded.records)} questions -> {path}")
    return 0


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Load a dataset split (hub or local files), report malformed rows, optionally dump records."
    parser.epilog = "local formats: " + "; ".join(f"{name}: {spec.local_format}" for name, spec in DATASETS.items())
    add_dataset_arguments(parser, "test")
    parser.add_argument("--show", type=int, default=1, help="print the first N records")
    parser.add_argument("--out", type=Path, help="write all records to this .jsonl file")


def run_check(args: argparse.Namespace) -> int:
    try:
        loaded = _load(args)
    except (DatasetRowError, DatasetFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"{args.dataset}/{args.split}: {len(loaded.records)} records from {loaded.rows_read} rows, "
        f"{len(loaded.bad_rows)} malformed row(s) skipped, {loaded.not_derivable} not derivable"
    )
    for record in loaded.records[: args.show]:
        print(json.dumps(_record_dict(record), ensure_ascii=False, indent=2))
    if args.out:
        writers.write_jsonl((_record_dict(record) for record in loaded.records), args.out)
        print(f"records: {args.out}")
    return 0


def _record_dict(record) -> dict:
    return {
        "id": record.id,
        "data_source": record.data_source,
        "split": record.split,
        "question": record.question,
        "answer": record.answer,
        "answer_type": record.answer_type.value,
        "rationale": record.rationale,
        "choices": record.choices,
        "sub_questions": [list(pair) for pair in record.sub_questions],
    }
