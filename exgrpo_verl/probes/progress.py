"""Request-level progress of an EI build: what is done of what is expected, by phase, with rates and an ETA.

Why requests and not questions: a question finishes only when its last request (often an Eq.2
student answer) does, so against a slow server a bar over questions reads 0/N for many minutes
while the server works. Every model request belongs to one phase: the teacher's own solution R_T
("rationale"), writing probes ("probes"), the teacher answering them ("answers"), the Eq.1 re-asks
("Eq.1") and the student's answers for Eq.2 ("student"). A phase's expected total starts as an
estimate and is corrected as questions resolve (a rule that does not fit, a probe Eq.1 drops).

Shown as a bar in a terminal; where stderr is not one (a log file, a batch job) a line every
``interval_s`` seconds instead, plus one at the start and one at the end.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from exgrpo_verl.probes.teacher import RequestCounts

PHASES: dict[str, str] = {
    "rationale": "rationale",
    "authoring": "probes",
    "answers": "answers",
    "eq1": "Eq.1",
    "eq2": "student",
}
"""Phase key -> its label in the display, in the order a question passes through them."""
RATE_WINDOW_S = 120.0
"""Rates (and so the ETA) are measured over this much recent time, so a slow first request (the
server loading its model) stops weighing on them."""
BAR_TICK_S = 1.0


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def choose_mode(enabled: bool, stream: TextIO) -> str:
    """The display: a bar in a terminal, log lines elsewhere, nothing when progress is switched off."""
    if not enabled:
        return "off"
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "log"


@dataclass
class PhaseCount:
    expected: int = 0
    done: int = 0
    failed: int = 0


class BuildProgress:
    """Counts requests by phase (the builder calls :meth:`expect` and :meth:`finished`) and shows them."""

    def __init__(
        self,
        counts: dict[str, RequestCounts],
        questions: int,
        mode: str = "log",
        interval_s: float = 30.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.counts = counts
        self.questions = questions
        self.questions_done = 0
        self.mode = mode
        self.interval_s = interval_s
        self.stream = stream or sys.stderr
        self.clock = clock
        self.phases = {phase: PhaseCount() for phase in PHASES}
        self.started = clock()
        self._samples: deque[tuple[float, int, int]] = deque()
        self._bars: tuple | None = None
        self._last_draw = 0.0

    # ---- counting (called by the builder and the clients) ----

    def expect(self, phase: str, requests: int) -> None:
        """Add ``requests`` (negative: a correction) to the phase's expected total."""
        self.phases[phase].expected += requests
        self.refresh()

    def finished(self, phase: str, failed: bool = False) -> None:
        """One request of ``phase`` is answered (from the server or the cache) or has failed for good."""
        count = self.phases[phase]
        count.done += 1
        count.failed += failed
        count.expected = max(count.expected, count.done)
        self.refresh()

    def question_done(self) -> None:
        self.questions_done += 1
        self.refresh()

    # ---- what is shown ----

    @property
    def expected(self) -> int:
        return sum(count.expected for count in self.phases.values())

    @property
    def done(self) -> int:
        return sum(count.done for count in self.phases.values())

    def _total(self, key: str) -> int:
        return sum(getattr(count, key) for count in self.counts.values())

    def rates(self) -> tuple[float | None, float | None]:
        """(requests/s, tokens/s) of answers from the servers over the recent window; None before any."""
        now = self.clock()
        asked, tokens = self._total("asked"), self._total("completion_tokens")
        self._samples.append((now, asked, tokens))
        while len(self._samples) > 2 and now - self._samples[1][0] > RATE_WINDOW_S:
            self._samples.popleft()
        since, asked_then, tokens_then = self._samples[0]
        if asked == asked_then:  # nothing answered within the window: fall back to the whole build
            since, asked_then, tokens_then = self.started, 0, 0
        elapsed = now - since
        if asked == asked_then or elapsed <= 0:
            return None, None
        return (asked - asked_then) / elapsed, ((tokens - tokens_then) / elapsed if tokens else None)

    def eta_s(self, requests_per_s: float | None) -> float | None:
        remaining = self.expected - self.done
        if remaining <= 0:
            return 0.0
        return remaining / requests_per_s if requests_per_s else None

    def phase_text(self) -> str:
        return ", ".join(
            f"{PHASES[phase]} {count.done}/{count.expected}" for phase, count in self.phases.items() if count.expected
        )

    def status(self) -> str:
        """Everything after the request count: phases, questions, requests in flight, rates, ETA."""
        requests_per_s, tokens_per_s = self.rates()
        eta = self.eta_s(requests_per_s)
        parts = [self.phase_text(), f"questions {self.questions_done}/{self.questions}"]
        parts.append(
            f"in flight {self._total('in_flight')}, cached {self._total('cached')}, failed {self._total('failed')}"
        )
        rate = f"{requests_per_s:.2f} req/s" if requests_per_s else "no answer yet"
        if tokens_per_s:
            rate += f", {tokens_per_s:.1f} tok/s"
        parts.append(rate)
        parts.append(f"ETA {format_duration(eta)}" if eta is not None else "ETA ?")
        return " | ".join(part for part in parts if part)

    def line(self) -> str:
        """One log line: elapsed time, requests done of expected, then :meth:`status`."""
        elapsed = format_duration(self.clock() - self.started)
        if not self.expected:
            return f"[ei-build {elapsed}] questions {self.questions_done}/{self.questions}"
        return f"[ei-build {elapsed}] requests {self.done}/{self.expected}: {self.status()}"

    def plan(self) -> str:
        """The start-of-build line: what will be asked."""
        if not self.expected:
            return f"ei-build: {self.questions} question(s), no model requests (teacher-free)"
        phases = ", ".join(f"{PHASES[p]} {c.expected}" for p, c in self.phases.items() if c.expected)
        every = f"; a progress line every {self.interval_s:g} s" if self.mode == "log" and self.interval_s > 0 else ""
        return f"ei-build: {self.questions} question(s), about {self.expected} model requests ({phases}){every}"

    # ---- display ----

    def start(self) -> None:
        if self.mode == "log":
            self._print(self.plan())
        elif self.mode == "bar":
            from tqdm import tqdm

            if self.expected:
                main = tqdm(
                    total=self.expected,
                    desc="EI build",
                    file=self.stream,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} requests [{elapsed}] {postfix}",
                    position=0,
                )
                detail = tqdm(total=0, file=self.stream, bar_format="  {desc}", position=1)
                self._bars = (main, detail)
            else:
                self._bars = (tqdm(total=self.questions, unit="question", desc="EI build", file=self.stream),)
        self._draw(force=True)

    def refresh(self) -> None:
        """Redraw the bar (at most twice a second); log lines come from :meth:`ticker`."""
        if self.mode == "bar":
            self._draw()

    def _draw(self, force: bool = False) -> None:
        if self._bars is None:
            return
        now = self.clock()
        if not force and now - self._last_draw < 0.5:
            return
        self._last_draw = now
        if len(self._bars) == 1:
            bar = self._bars[0]
            bar.n = self.questions_done
            bar.refresh()
            return
        main, detail = self._bars
        main.total, main.n = max(self.expected, 1), self.done
        status = self.status().split(" | ")
        main.set_postfix_str(" | ".join(status[-2:]), refresh=False)  # rates and ETA beside the bar
        detail.set_description_str(" | ".join(status[:-2]), refresh=False)  # phases and counts below it
        main.refresh()
        detail.refresh()

    async def ticker(self) -> None:
        """Keep the display moving while requests are out: the bar's clock and ETA every second, a
        log line every ``interval_s`` (so a slow server is never silent)."""
        if self.mode == "off" or (self.mode == "log" and self.interval_s <= 0):
            return
        period = BAR_TICK_S if self.mode == "bar" else self.interval_s
        while True:
            await asyncio.sleep(period)
            if self.mode == "bar":
                self._draw(force=True)
            else:
                self._print(self.line())

    def close(self, finished: bool = True) -> None:
        """The last line (or the bar's last state); ``finished`` False: the build stopped early."""
        if self.mode == "log":
            self._print(self.line() + (" (done)" if finished else " (stopped)"))
        elif self._bars is not None:
            self._draw(force=True)
            for bar in reversed(self._bars):
                bar.close()
            self._bars = None

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
