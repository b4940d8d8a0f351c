"""Stage 1 end to end: records -> probes -> teacher answers -> Eq.1 -> Eq.2 -> parquet + stats.

Teacher-free (no teacher endpoint): template probes over the dataset's own rationale; RL rows carry
the probes (with gold answers where a template knows one) and the SFT data holds the dataset
rationale only. With a teacher: the teacher writes R_T for each question, writes (or answers) the
probes, and Eq.1 keeps the probes after which it still answers Q correctly; with a student
endpoint too, Eq.2 keeps the questions whose Λ falls in the band.

Every model call goes through the persistent cache, so rerunning a finished or killed build asks
only what is missing, and equal inputs give byte-equal outputs.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exgrpo_verl.datasets import LoadResult, Record, load_records
from exgrpo_verl.probes import drop_report, filters, messages, writers
from exgrpo_verl.probes.cache import CompletionCache
from exgrpo_verl.probes.endpoint_check import check_at_start
from exgrpo_verl.probes.filters import RejectionBand
from exgrpo_verl.probes.progress import BuildProgress, choose_mode
from exgrpo_verl.probes.rules import RULE_NAMES, TemplateResult, check_rule_names, flagged, template_probes
from exgrpo_verl.probes.server_limits import same_local_server
from exgrpo_verl.probes.teacher import ChatClient, EndpointConfig, RequestCounts
from exgrpo_verl.prompts import question_messages
from exgrpo_verl.schema import Probe

RL_FILE = "rl_train.parquet"
SFT_FILE = "sft_train.parquet"
STATS_FILE = "stats.json"
PROBES_FILE = "probes.jsonl"
CACHE_FILE = "requests.sqlite"
EXIT_REQUESTS_FAILED = 3


@dataclass
class BuildConfig:
    """Every setting of an EI build (the CLI flags map one to one; see docs/ei-data.md)."""

    dataset: str
    out_dir: Path
    split: str = "train"
    local_paths: list[str] = field(default_factory=list)
    hub_name: str | None = None
    hub_config: str | None = None
    skip_bad_rows: bool = False
    rules: tuple[str, ...] = RULE_NAMES
    probe_source: str = "auto"
    """"template", "teacher" (the teacher writes the probes), or "auto": teacher when one is given."""
    fraction: float = 1.0
    seed: int = 0
    limit: int | None = None
    teacher: EndpointConfig | None = None
    student: EndpointConfig | None = None
    consistency_filter: bool = True
    """Eq.1 (needs a teacher)."""
    rejection_filter: bool = True
    """Eq.2 (needs a student endpoint)."""
    band: RejectionBand = field(default_factory=RejectionBand)
    teacher_rationale: bool = True
    """With a teacher: ask it for R_T on each question (kept only when it answers correctly)."""
    sft_layout: str = "per_probe"
    sft_question: bool = True
    sft_bare_answers: bool = False
    """A question without a rationale gets the SFT row [question -> "The answer is \\boxed{X}."]."""
    cache_path: Path | None = None
    progress: bool = True
    progress_interval_s: float = 30.0
    """Where stderr is not a terminal: a progress line this often (0: only at the start and the end)."""

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.rules = check_rule_names(self.rules)
        if self.probe_source not in ("auto", "template", "teacher"):
            raise ValueError(f"probe_source must be auto, template or teacher, got {self.probe_source!r}")
        if self.probe_source == "teacher" and self.teacher is None:
            raise ValueError("teacher-authored probes need a teacher endpoint (--teacher-url)")
        if self.student is not None and self.teacher is None:
            raise ValueError("Eq.2 grades the student against the teacher's probe answers: give a teacher endpoint too")
        if self.sft_layout not in ("per_probe", "dialogue"):
            raise ValueError(f"sft_layout must be per_probe or dialogue, got {self.sft_layout!r}")
        writers.select_fraction(1, self.fraction, self.seed)  # validates the fraction

    @property
    def uses_teacher_probes(self) -> bool:
        return self.teacher is not None and self.probe_source in ("auto", "teacher")

    @property
    def eq1(self) -> bool:
        return self.teacher is not None and self.consistency_filter

    @property
    def eq2(self) -> bool:
        return self.student is not None and self.rejection_filter

    def cache_file(self) -> Path:
        return self.cache_path or self.out_dir / CACHE_FILE

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "mode": "teacher" if self.teacher else "teacher-free",
            "probe_source": "teacher" if self.uses_teacher_probes else "template",
            "rules": list(self.rules),
            "fraction": self.fraction,
            "seed": self.seed,
            "teacher_model": self.teacher.model if self.teacher else None,
            "student_model": self.student.model if self.student else None,
            "teacher_max_tokens": self.teacher.max_tokens if self.teacher else None,
            "student_max_tokens": self.student.max_tokens if self.student else None,
            "filters": {
                "consistency_eq1": self.eq1,
                "rejection_eq2": self.eq2,
                "min_correct": self.band.min_correct,
                "max_correct": self.band.max_correct,
            },
            "sft_layout": self.sft_layout,
            "sft_question": self.sft_question,
        }


@dataclass
class ProbeState:
    probe: Probe
    status: str = "kept"
    """"kept", or why the probe was dropped: request_failed, no_final_answer, inconsistent."""
    student_correct: bool | None = None


@dataclass
class QuestionOutcome:
    index: int
    record: Record
    probes: list[ProbeState] = field(default_factory=list)
    not_applicable: dict[str, str] = field(default_factory=dict)
    authoring_failed: list[str] = field(default_factory=list)
    question_answer: str | None = None
    teacher_rationale: bool = False
    rationale_fallback: str | None = None
    """Why the teacher's R_T was not used: "request_failed" or "incorrect" (None: used, or not asked)."""
    n_correct: int | None = None
    drop_reason: str | None = None

    def surviving(self) -> list[ProbeState]:
        return [state for state in self.probes if state.status == "kept"]


class _Builder:
    """Runs one record through the stages; holds the clients of a build and tells the progress
    display what each question will ask and has asked."""

    def __init__(
        self,
        config: BuildConfig,
        teacher: ChatClient | None,
        student: ChatClient | None,
        progress: BuildProgress | None = None,
    ):
        self.config = config
        self.teacher = teacher
        self.student = student
        self.progress = progress or BuildProgress({}, 0, mode="off")

    def expected(self, record: Record) -> dict[str, int]:
        """The requests ``record`` will take, by phase, as far as is known before asking (probe
        counts are corrected in :meth:`run` once the probes exist and once the filters ran)."""
        config = self.config
        if config.teacher is None:
            return {}
        own_decomposition = "decomposition" in config.rules and bool(record.sub_questions)
        if config.uses_teacher_probes:
            authoring = len(config.rules) - own_decomposition
            probes = authoring + (len(record.sub_questions) if own_decomposition else 0)
        else:
            authoring = 0
            probes = len(template_probes(record, record.rationale, config.rules).probes)
        return {
            "rationale": int(config.teacher_rationale),
            "authoring": authoring,
            "answers": probes,
            "eq1": probes if config.eq1 else 0,
            "eq2": probes if config.eq2 else 0,
        }

    def _correct(self, phases: tuple[str, ...], was: int, now: int) -> None:
        for phase in phases:
            if now != was:
                self.progress.expect(phase, now - was)

    async def run(self, index: int, record: Record) -> QuestionOutcome:
        outcome = QuestionOutcome(index, record)
        estimate = self.expected(record).get("answers", 0)
        eq1 = ("eq1",) if self.config.eq1 else ()
        eq2 = ("eq2",) if self.config.eq2 else ()
        rationale = await self._rationale(record, outcome)
        await self._make_probes(record, rationale, outcome)
        if self.teacher is not None:
            self._correct(("answers", *eq1, *eq2), estimate, len(outcome.probes))
            await asyncio.gather(*(self._teacher_answer(state) for state in outcome.probes))
            self._correct(eq1 + eq2, len(outcome.probes), len(outcome.surviving()))
        consistent = len(outcome.surviving())
        if self.config.eq1:
            await asyncio.gather(*(self._consistency(record, state) for state in outcome.surviving()))
        outcome.question_answer = writers.question_target(record, rationale, self.config.sft_bare_answers)
        self._decide(outcome)
        self._correct(eq2, consistent, len(outcome.surviving()) if outcome.drop_reason is None else 0)
        if outcome.drop_reason is None and self.config.eq2:
            await self._rejection(outcome)
        return outcome

    async def _ask(self, client: ChatClient, request: messages.Messages, phase: str) -> str | None:
        text = await client.complete(request)
        self.progress.finished(phase, failed=text is None)
        return text

    async def _ask_teacher(self, request: messages.Messages, phase: str) -> str | None:
        assert self.teacher is not None, "this stage needs a teacher endpoint"
        return await self._ask(self.teacher, request, phase)

    async def _rationale(self, record: Record, outcome: QuestionOutcome) -> str | None:
        """R_T: the teacher's solution when it is correct, else the dataset's own rationale."""
        if self.teacher is None or not self.config.teacher_rationale:
            return record.rationale
        text = await self._ask_teacher(question_messages(record.question, record.data_source), "rationale")
        if text is not None and filters.answers_question(text, record):
            outcome.teacher_rationale = True
            return text
        outcome.rationale_fallback = "request_failed" if text is None else "incorrect"
        return record.rationale

    async def _make_probes(self, record: Record, rationale: str | None, outcome: QuestionOutcome) -> None:
        templates: TemplateResult = template_probes(record, rationale, self.config.rules)
        if not self.config.uses_teacher_probes:
            outcome.probes = [ProbeState(probe) for probe in templates.probes]
            outcome.not_applicable = templates.not_applicable
            return
        authored = await asyncio.gather(*(self._author(rule, record, rationale) for rule in self.config.rules))
        for rule, result in zip(self.config.rules, authored, strict=True):
            if rule == "decomposition" and record.sub_questions:
                # The dataset's own sub-questions are real decomposition probes; no need to ask.
                outcome.probes += [ProbeState(probe) for probe in templates.probes if probe["rule"] == rule]
            elif result is None:
                outcome.authoring_failed.append(rule)
            elif result == "":
                outcome.not_applicable[rule] = "teacher: not applicable"
            else:
                probe = flagged({"rule": rule, "question": result, "teacher_answer": None}, record)
                outcome.probes.append(ProbeState(probe))

    async def _author(self, rule: str, record: Record, rationale: str | None) -> str | None:
        """The teacher's probe, "" when it declined, None when the request failed."""
        if rule == "decomposition" and record.sub_questions:
            return ""
        text = await self._ask_teacher(messages.authoring_messages(rule, record, rationale), "authoring")
        if text is None:
            return None
        return messages.parse_authored_probe(text) or ""

    async def _teacher_answer(self, state: ProbeState) -> None:
        text = await self._ask_teacher(messages.probe_answer_messages(state.probe["question"]), "answers")
        if text is None:
            state.status = "request_failed"
        elif filters.teacher_final_answer(text) is None:
            state.status = "no_final_answer"
        else:
            state.probe = {**state.probe, "teacher_answer": text}

    async def _consistency(self, record: Record, state: ProbeState) -> None:
        request = messages.consistency_messages(state.probe["question"], str(state.probe["teacher_answer"]), record)
        text = await self._ask_teacher(request, "eq1")
        if text is None:
            state.status = "request_failed"
        elif not filters.answers_question(text, record):
            state.status = "inconsistent"

    def _decide(self, outcome: QuestionOutcome) -> None:
        if not outcome.surviving():
            if self.config.eq2:
                outcome.drop_reason = "no_consistent_probes"
            elif outcome.probes or outcome.authoring_failed:
                outcome.drop_reason = "no_probes_left"
            else:
                outcome.drop_reason = "no_applicable_rule"

    async def _rejection(self, outcome: QuestionOutcome) -> None:
        survivors = outcome.surviving()
        student = self.student
        assert student is not None, "Eq.2 needs a student endpoint"

        async def student_correct(state: ProbeState) -> bool | None:
            text = await self._ask(student, messages.probe_answer_messages(state.probe["question"]), "eq2")
            if text is None:
                return None
            reference = filters.teacher_final_answer(str(state.probe["teacher_answer"]))
            return filters.matches_reference(text, reference or "")

        results = await asyncio.gather(*(student_correct(state) for state in survivors))
        for state, correct in zip(survivors, results, strict=True):
            state.student_correct = correct
        if any(correct is None for correct in results):
            outcome.drop_reason = "student_request_failed"
            return
        outcome.n_correct = sum(bool(correct) for correct in results)
        outcome.drop_reason = self.config.band.drop_reason(len(survivors), outcome.n_correct)


@dataclass
class BuildResult:
    outcomes: list[QuestionOutcome]
    stats: dict[str, Any]
    paths: dict[str, Path]
    failed_requests: int


def load(config: BuildConfig) -> LoadResult:
    return load_records(
        config.dataset,
        config.split,
        local_paths=config.local_paths or None,
        hub_name=config.hub_name,
        hub_config=config.hub_config,
        skip_bad_rows=config.skip_bad_rows,
        limit=config.limit,
    )


async def _run_all(
    config: BuildConfig, selected: list[tuple[int, Record]], counts: dict[str, RequestCounts]
) -> list[QuestionOutcome]:
    endpoints = {name: endpoint for name in ("teacher", "student") if (endpoint := getattr(config, name))}
    down = await check_at_start(endpoints, config.cache_file())  # a dead endpoint stops here, writing nothing
    mode = choose_mode(config.progress, sys.stderr)
    progress = BuildProgress(counts, len(selected), mode, config.progress_interval_s)
    cache = CompletionCache(config.cache_file()) if config.teacher else None
    ticker: asyncio.Task | None = None
    finished = False
    try:
        teacher = student = None
        limiter = None
        if config.teacher and config.student and same_local_server(config.teacher.base_url, config.student.base_url):
            limiter = asyncio.Semaphore(config.teacher.concurrency)  # one local server: one pool of slots
        if config.teacher:
            teacher = ChatClient(
                config.teacher, cache, counts["teacher"], progress.refresh, down.get("teacher"), limiter
            )
        if config.student:
            student = ChatClient(
                config.student, cache, counts["student"], progress.refresh, down.get("student"), limiter
            )
        async with _maybe(teacher), _maybe(student):
            builder = _Builder(config, teacher, student, progress)
            for _, record in selected:
                for phase, requests in builder.expected(record).items():
                    progress.phases[phase].expected += requests
            progress.start()
            ticker = asyncio.create_task(progress.ticker())
            in_flight = asyncio.Semaphore(max(8, 4 * (config.teacher.concurrency if config.teacher else 1)))

            async def one(index: int, record: Record) -> QuestionOutcome:
                async with in_flight:
                    outcome = await builder.run(index, record)
                progress.question_done()
                return outcome

            try:
                outcomes = list(await asyncio.gather(*(one(index, record) for index, record in selected)))
            except BaseException:
                await _stop_other_tasks()  # an endpoint error stops the build: nothing may run on
                raise
            finished = True
            return outcomes
    finally:
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        progress.close(finished)
        if cache is not None:
            cache.close()


async def _stop_other_tasks() -> None:
    """Cancel and await every other task of this build's event loop (nested gathers leave their
    siblings running when one fails), so none outlives the clients and the cache."""
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


class _maybe:
    """``async with`` a client that may be None."""

    def __init__(self, client: ChatClient | None):
        self.client = client

    async def __aenter__(self) -> ChatClient | None:
        return await self.client.__aenter__() if self.client else None

    async def __aexit__(self, *exc_info: object) -> None:
        if self.client:
            await self.client.__aexit__(*exc_info)


def _stats(config: BuildConfig, loaded: LoadResult, outcomes: list[QuestionOutcome], sft_count: int) -> dict[str, Any]:
    rules: dict[str, Counter] = {rule: Counter() for rule in config.rules}
    reasons: dict[str, Counter] = defaultdict(Counter)
    dropped: Counter = Counter()
    for outcome in outcomes:
        for rule, reason in outcome.not_applicable.items():
            rules[rule]["not_applicable"] += 1
            reasons[rule][reason] += 1
        for rule in outcome.authoring_failed:
            rules[rule]["authoring_failed"] += 1
        for state in outcome.probes:
            counter = rules[state.probe["rule"]]
            counter["generated"] += 1
            if state.status != "kept":
                counter[state.status] += 1
            elif outcome.drop_reason is not None:
                counter["in_dropped_question"] += 1
            else:
                counter["kept"] += 1
                counter["kept_revealing"] += bool(state.probe.get("reveals_answer"))
        if outcome.drop_reason is not None:
            dropped[outcome.drop_reason] += 1
    kept = [outcome for outcome in outcomes if outcome.drop_reason is None]
    kept_probes = sum(len(outcome.surviving()) for outcome in kept)
    askable = [sum(not state.probe.get("reveals_answer") for state in outcome.surviving()) for outcome in kept]
    order = ("generated", "kept", "not_applicable", "authoring_failed", "request_failed", "no_final_answer")
    order += ("inconsistent", "in_dropped_question")
    rule_stats = {
        rule: {key: counter[key] for key in order} | {"not_applicable_reasons": dict(sorted(reasons[rule].items()))}
        for rule, counter in rules.items()
    }
    for rule, counter in rules.items():
        rule_stats[rule]["kept_revealing"] = counter["kept_revealing"]  # kept probes flagged reveals_answer
    return {
        "config": config.describe(),
        "questions": {
            "rows_read": loaded.rows_read,
            "bad_rows_skipped": len(loaded.bad_rows),
            "not_derivable": loaded.not_derivable,
            "loaded": len(loaded.records),
            "selected": len(outcomes),
            "kept": len(kept),
            "dropped": dict(sorted(dropped.items())),
            "with_teacher_rationale": sum(outcome.teacher_rationale for outcome in outcomes),
            "teacher_rationale_fallbacks": {
                reason: sum(outcome.rationale_fallback == reason for outcome in outcomes)
                for reason in ("incorrect", "request_failed")
            },
        },
        "rules": rule_stats,
        "probes_per_kept_question": round(kept_probes / len(kept), 4) if kept else 0.0,
        # Probes the rollout asks under exgrpo.revealing_probes=exclude (kept and not revealing the answer).
        "askable_probes_per_kept_question": round(sum(askable) / len(kept), 4) if kept else 0.0,
        "kept_questions_with_revealing_probes": sum(
            any(state.probe.get("reveals_answer") for state in outcome.surviving()) for outcome in kept
        ),
        "outputs": {"rl_rows": len(kept), "sft_rows": sft_count},
    }


def _probe_log(outcomes: list[QuestionOutcome]) -> list[dict[str, Any]]:
    rows = []
    for outcome in outcomes:
        for state in outcome.probes:
            rows.append(
                {
                    "id": outcome.record.id,
                    "rule": state.probe["rule"],
                    "question": state.probe["question"],
                    "teacher_answer": state.probe.get("teacher_answer"),
                    "reveals_answer": bool(state.probe.get("reveals_answer")),
                    "status": state.status if state.status != "kept" else (outcome.drop_reason or "kept"),
                    "student_correct": state.student_correct,
                }
            )
    return rows


def build(config: BuildConfig, loaded: LoadResult | None = None) -> BuildResult:
    """Run a whole EI build and write its outputs into ``config.out_dir``."""
    loaded = loaded or load(config)
    indices = writers.select_fraction(len(loaded.records), config.fraction, config.seed)
    selected = [(index, loaded.records[index]) for index in indices]
    counts = {"teacher": RequestCounts(), "student": RequestCounts()}
    outcomes = asyncio.run(_run_all(config, selected, counts))

    kept = [outcome for outcome in outcomes if outcome.drop_reason is None]
    rl_rows = writers.rl_train_rows(
        (outcome.index, outcome.record, [state.probe for state in outcome.surviving()]) for outcome in kept
    )
    sft = [
        row
        for outcome in kept
        for row in writers.sft_rows(
            outcome.record,
            [state.probe for state in outcome.surviving()] if config.teacher else [],
            outcome.question_answer,
            config.sft_layout,
            config.sft_question or config.teacher is None,
        )
    ]
    out = config.out_dir
    paths = {
        "rl": writers.write_parquet(rl_rows, out / RL_FILE),
        "sft": writers.write_parquet(sft, out / SFT_FILE),
        "probes": writers.write_jsonl(_probe_log(outcomes), out / PROBES_FILE),
    }
    stats = _stats(config, loaded, outcomes, len(sft))
    stats["requests"] = {name: c.as_dict() for name, c in counts.items() if getattr(config, name)}
    stats["drop_reasons"] = drop_report.explain(stats)  # the same lines the end-of-build summary prints
    paths["stats"] = writers.write_json(stats, out / STATS_FILE)
    failed = sum(c.failed for c in counts.values())
    return BuildResult(outcomes, stats, paths, failed)
