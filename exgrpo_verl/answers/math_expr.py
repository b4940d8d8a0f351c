"""Math-expression answers (MATH): cheap normalised comparison first, then math-verify.

math-verify can spend unbounded time in SymPy, and its own timeout uses ``signal.alarm``, which
only works on the main thread, while verl's reward loop grades on executor threads. So every
math-verify call here runs under a per-call wall-clock budget: a timer signal on the main thread,
and a small pool of helper processes (killed and replaced on timeout) on any other thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import re
import signal
import threading
from functools import lru_cache
from typing import Any

from exgrpo_verl.answers.numbers import is_plain_number, numbers_equal, parse_number
from exgrpo_verl.answers.verdict import Choices, Verdict

DEFAULT_TIMEOUT_S = 5.0
# We bound every call ourselves (below), so math-verify's "timeout is disabled" warning is noise.
logging.getLogger("math_verify").setLevel(logging.ERROR)
_POOL_SIZE = 2
_START_TIMEOUT_S = 120.0

_NOISE = re.compile(r"\\left|\\right|\\[,;:! ]|\\displaystyle|\^\{?\\circ\}?|\\%|%|\$|\s+")
_FRAC_ALIASES = re.compile(r"\\[dt]frac")


def _normalize(expr: str) -> str:
    expr = _FRAC_ALIASES.sub(r"\\frac", expr)
    return _NOISE.sub("", expr).rstrip(".")


class _Timeout(BaseException):
    """Raised by the interval timer; a BaseException so math-verify's `except Exception` cannot swallow it."""


def _raise_timeout(signum: int, frame: Any) -> None:
    raise _Timeout()


@lru_cache(maxsize=4096)
def _parse(expr: str) -> tuple:
    from math_verify import parse

    return tuple(parse(f"\\boxed{{{expr}}}", parsing_timeout=None))


def _verify_here(pred: str, gold: str, timeout_s: float) -> bool:
    """math-verify on the main thread under an interval timer."""
    from math_verify import verify

    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        gold_parsed, pred_parsed = _parse(gold), _parse(pred)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None))
    except _Timeout:
        return False
    except Exception:  # math-verify/SymPy raise many types on odd input; a crash is a wrong answer
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _serve(conn: Any) -> None:
    """Helper-process loop: answer (pred, gold, timeout) requests until the pipe closes."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401  (import before saying ready)

    conn.send("ready")
    while True:
        try:
            pred, gold, timeout_s = conn.recv()
        except EOFError:
            return
        conn.send(_verify_here(pred, gold, timeout_s))


class _Helper:
    """One helper process; replaced when it overruns its budget."""

    def __init__(self) -> None:
        self._proc: Any = None
        self._conn: Any = None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="exgrpo-math-verify")
        self._proc.start()
        if not self._conn.poll(_START_TIMEOUT_S):
            self._kill()
            raise RuntimeError("math-verify helper process did not start")
        self._conn.recv()

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(timeout=5)
        self._proc = self._conn = None

    def verify(self, pred: str, gold: str, timeout_s: float) -> bool:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send((pred, gold, timeout_s))
        if self._conn.poll(timeout_s + 1.0):
            return bool(self._conn.recv())
        self._kill()
        return False


_helpers: queue.Queue[_Helper] = queue.Queue()
for _ in range(_POOL_SIZE):
    _helpers.put(_Helper())


def _verify_elsewhere(pred: str, gold: str, timeout_s: float) -> bool:
    helper = _helpers.get()
    try:
        return helper.verify(pred, gold, timeout_s)
    except (OSError, EOFError, RuntimeError):
        return False
    finally:
        _helpers.put(helper)


def math_equal(pred: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether ``pred`` and ``gold`` are the same mathematical answer, within ``timeout_s``."""
    if _normalize(pred) == _normalize(gold):
        return True
    if is_plain_number(pred) and is_plain_number(gold):
        pred_value, gold_value = parse_number(pred), parse_number(gold)
        return pred_value is not None and gold_value is not None and numbers_equal(pred_value, gold_value)
    if threading.current_thread() is threading.main_thread():
        return _verify_here(pred, gold, timeout_s)
    return _verify_elsewhere(pred, gold, timeout_s)


def check_math(
    span: str, gold: object, choices: Choices | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Verdict:
    return (math_equal(span, str(gold), timeout_s), span)
