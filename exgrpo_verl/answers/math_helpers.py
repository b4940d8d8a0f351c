"""A small pool of math-verify helper processes, safe from any thread and any process.

Why processes: SymPy can run for unbounded time and math-verify's own timeout uses
``signal.alarm``, which only works on the main thread, while verl grades on executor threads. Each
helper is a fresh interpreter (``python -c`` importing :mod:`exgrpo_verl.answers.math_worker`), not
a multiprocessing child, so the caller's ``__main__`` is never run again, whatever the caller's
script looks like. The caller waits on a pipe with a deadline; nothing in its process is ever
interrupted.

Failures never raise: a check that overruns its deadline, a helper that dies mid-request and a
helper that cannot start all make the check a wrong answer. Each kind is logged once (with the
helper's error output for a failed start) and counted in :func:`stats`; a broken or overrunning
helper is replaced on the next check. After a failed start, checks fail fast for
``RETRY_AFTER_S`` seconds instead of each waiting for another start.

A forked child (a dataloader worker, a ``fork`` pool) gets a fresh, empty pool: it never talks to
its parent's helpers.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

POOL_SIZE = 2
START_TIMEOUT_S = 60.0
"""How long a new helper may take to load math-verify (SymPy imports are slow on a busy machine)."""
RETRY_AFTER_S = 30.0
GRACE_S = 2.0
"""Added to a check's timeout for the round trip; a helper silent past it is killed."""

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_BOOTSTRAP = (
    "import sys\n"
    "root = sys.argv[1]\n"
    "sys.path[:] = [p for p in sys.path if p not in ('', '.')]  # not the caller's working directory\n"
    "if root not in sys.path:\n"
    "    sys.path.insert(0, root)\n"
    "from exgrpo_verl.answers.math_worker import serve\n"
    "serve()\n"
)


def worker_command() -> list[str]:
    """The command line of one helper: this interpreter, this copy of exgrpo_verl."""
    return [sys.executable, "-c", _BOOTSTRAP, _PACKAGE_ROOT]


def _close_pipes(proc: subprocess.Popen) -> None:
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


class _StartFailed(Exception):
    pass


class _Overrun(Exception):
    pass


class _Broken(Exception):
    pass


_STAT_NAMES = ("checks", "timeouts", "overruns", "broken", "start_failures", "skipped")
_MESSAGES = {
    "timeouts": "a math-verify check ran past its timeout and counts as a wrong answer",
    "overruns": "a math-verify helper did not answer in time; it was killed, the check counts as a wrong answer",
    "broken": "a math-verify helper died during a check; it is replaced and the check counts as a wrong answer",
    "start_failures": "a math-verify helper could not start; MATH answers that need it count as wrong",
}
_stats = dict.fromkeys(_STAT_NAMES, 0)
_stats_lock = threading.Lock()


def _count(kind: str, detail: str = "") -> None:
    with _stats_lock:
        _stats[kind] += 1
        first = _stats[kind] == 1
    if first and kind in _MESSAGES:
        suffix = f": {detail}" if detail else ""
        logger.warning(
            "%s%s (logged once; see exgrpo_verl.answers.math_helpers.stats() for counts)", _MESSAGES[kind], suffix
        )


def stats() -> dict[str, int]:
    """How many checks ran, and how many ended in each kind of failure, in this process."""
    with _stats_lock:
        return dict(_stats)


class _Helper:
    """One helper process and its pipes; used by one thread at a time (the pool hands it out)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self._errors: IO[bytes] | None = None
        self._buffer = b""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _start(self) -> None:
        self._errors = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                worker_command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._errors,
                start_new_session=True,  # a Ctrl-C meant for the caller does not kill helpers mid-check
            )
        except (OSError, ValueError, subprocess.SubprocessError) as error:
            self.kill()
            raise _StartFailed(repr(error)) from error
        self._buffer = b""
        try:
            line = self._read_line(time.monotonic() + START_TIMEOUT_S)
        except (_Overrun, _Broken) as error:
            detail = self._error_tail() or f"no reply within {START_TIMEOUT_S:.0f} s"
            self.kill()
            raise _StartFailed(detail) from error
        if line != b"ready":
            detail = self._error_tail() or repr(line[:200])
            self.kill()
            raise _StartFailed(detail)
        self._errors.close()  # start-up went well; the helper writes nothing more there
        self._errors = None

    def _error_tail(self) -> str:
        if self._errors is None:
            return ""
        try:
            self._errors.seek(0, os.SEEK_END)
            size = self._errors.tell()
            self._errors.seek(max(0, size - 2000))
            return self._errors.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def _read_line(self, deadline: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        poller = select.poll()  # not select.select: a large process may hold fds above 1024
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                raise _Overrun
            chunk = os.read(fd, 65536)
            if not chunk:
                raise _Broken("the helper closed its output")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def check(self, pred: str, gold: str, timeout_s: float) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:  # died while idle (killed from outside)
                _count("broken", f"exit status {self.proc.returncode}")
                self.kill()
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        request = json.dumps({"pred": pred, "gold": gold, "timeout_s": timeout_s}).encode() + b"\n"
        try:
            view = memoryview(request)
            while view:
                view = view[os.write(self.proc.stdin.fileno(), view) :]
        except OSError as error:
            raise _Broken(repr(error)) from error
        reply = json.loads(self._read_line(time.monotonic() + timeout_s + GRACE_S))
        if reply.get("status") == "timeout":
            _count("timeouts")
        return reply.get("equal") is True

    def kill(self) -> None:
        """Stop the process (if any) and forget it; the next check starts a new one."""
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.kill()
                proc.wait(timeout=5)
            except (OSError, subprocess.SubprocessError):
                pass
            _close_pipes(proc)
        if self._errors is not None:
            self._errors.close()
            self._errors = None
        self._buffer = b""

    def close(self, wait_s: float = 1.0) -> None:
        """Ask the helper to finish (end of input), then kill it if it does not."""
        proc = self.proc
        if proc is not None and proc.stdin is not None:
            try:
                proc.stdin.close()
                proc.wait(timeout=wait_s)
            except (OSError, subprocess.SubprocessError):
                pass
        self.kill()

    def forget(self) -> None:
        """In a forked child: drop this copy of the parent's pipes without touching the process."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.returncode = 0  # so that Popen's finaliser does not try to reap another's child
            _close_pipes(proc)
        self._errors = None


class _Pool:
    def __init__(self, size: int) -> None:
        self.helpers = [_Helper() for _ in range(size)]
        # LIFO: a single-threaded caller keeps reusing one helper and never starts the second.
        self.idle: queue.LifoQueue[_Helper] = queue.LifoQueue()
        for helper in self.helpers:
            self.idle.put(helper)
        self.retry_at = 0.0

    def check(self, pred: str, gold: str, timeout_s: float) -> bool:
        if time.monotonic() < self.retry_at:
            _count("skipped")
            return False
        helper = self.idle.get()
        try:
            _count("checks")
            return helper.check(pred, gold, timeout_s)
        except _StartFailed as error:
            self.retry_at = time.monotonic() + RETRY_AFTER_S
            _count("start_failures", str(error))
        except _Overrun:
            helper.kill()
            _count("overruns")
        except Exception as error:  # a broken pipe, a garbled reply: the helper is not trustworthy
            returncode = helper.proc.poll() if helper.proc is not None else None
            helper.kill()
            _count("broken", f"exit status {returncode}" if returncode is not None else repr(error))
        except BaseException:  # KeyboardInterrupt mid-check: the helper's reply would be stale
            helper.kill()
            raise
        finally:
            self.idle.put(helper)
        return False

    def close(self) -> None:
        for helper in self.helpers:
            helper.close()

    def forget(self) -> None:
        for helper in self.helpers:
            helper.forget()


_pool = _Pool(POOL_SIZE)
_owner_pid = os.getpid()


MAX_REQUEST_CHARS = 20_000
"""Longer answers are not math answers (and would only make SymPy slow): they are False at once."""


def equivalent(pred: str, gold: str, timeout_s: float) -> bool:
    """Whether math-verify (with the relation rules of math_equivalence) finds ``pred`` equal to
    ``gold`` within ``timeout_s``. Never raises; any failure is False."""
    if len(pred) + len(gold) > MAX_REQUEST_CHARS:
        return False
    try:
        timeout_s = float(timeout_s)
    except (TypeError, ValueError):
        timeout_s = 0.0
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        timeout_s = 0.1
    return _pool.check(pred, gold, timeout_s)


def helper_pids() -> list[int]:
    """Process ids of this process's running helpers (for diagnostics and tests)."""
    return [pid for pid in (helper.pid for helper in _pool.helpers) if pid is not None]


def restart_pool(size: int = POOL_SIZE) -> None:
    """Stop every helper and start over: an empty pool, no retry delay, counts at zero (so the
    next failure of each kind is logged again)."""
    global _pool
    old, _pool = _pool, _Pool(size)
    old.close()
    with _stats_lock:
        _stats.update(dict.fromkeys(_STAT_NAMES, 0))


def _after_fork_in_child() -> None:
    global _pool, _owner_pid, _stats_lock
    _stats_lock = threading.Lock()  # another thread may have held the parent's at the fork
    old, _pool, _owner_pid = _pool, _Pool(POOL_SIZE), os.getpid()
    old.forget()
    _stats.update(dict.fromkeys(_STAT_NAMES, 0))


def _close_at_exit() -> None:
    if os.getpid() == _owner_pid:
        _pool.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)
