"""Math-expression answers (MATH): cheap normalised comparison first, then math-verify.

math-verify can spend unbounded time in SymPy, and its own timeout uses ``signal.alarm``, which
only works on the main thread, while verl's reward loop grades on executor threads. Raising from
a signal handler inside the caller's process is also unsafe (the exception can land in a gc
callback or a ``finally``). So math-verify runs only in small helper processes: the caller waits
on a pipe with a deadline and kills and replaces a helper that overruns it. Nothing in the
caller's process is interrupted, and any thread may call :func:`math_equal`.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import queue
import re
from typing import Any

from exgrpo_verl.answers.numbers import is_plain_number, numbers_equal, parse_number
from exgrpo_verl.answers.verdict import Choices, Verdict

DEFAULT_TIMEOUT_S = 5.0
_POOL_SIZE = 2
_START_TIMEOUT_S = 120.0

_NOISE = re.compile(r"\\left|\\right|\\[,;:! ]|\\displaystyle|\^\{?\\circ\}?|\\%|%|\$|\s+")
_FRAC_ALIASES = re.compile(r"\\[dt]frac")


def _normalize(expr: str) -> str:
    expr = _FRAC_ALIASES.sub(r"\\frac", expr)
    return _NOISE.sub("", expr).rstrip(".")


def _verify(pred: str, gold: str, timeout_s: float) -> bool:
    """math-verify's parse + verify, under its own (main-thread) timeouts; runs in a helper."""
    from math_verify import parse, verify

    seconds = max(1, math.ceil(timeout_s))
    gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=seconds)
    pred_parsed = parse(f"\\boxed{{{pred}}}", parsing_timeout=seconds)
    return bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=seconds))


def _serve(conn: Any) -> None:
    """Helper-process loop: answer (pred, gold, timeout) requests until the pipe closes."""
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    import math_verify  # noqa: F401  (import before saying ready)

    conn.send("ready")
    while True:
        try:
            pred, gold, timeout_s = conn.recv()
        except EOFError:
            return
        try:
            answer = _verify(pred, gold, timeout_s)
        except BaseException:  # SymPy raises anything on odd input; that is a wrong answer
            answer = False
        conn.send(answer)


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
            self.kill()
            raise RuntimeError("math-verify helper process did not start")
        self._conn.recv()

    def kill(self) -> None:
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
        self.kill()
        return False


_helpers: queue.Queue[_Helper] = queue.Queue()
for _ in range(_POOL_SIZE):
    _helpers.put(_Helper())


def _verify_in_helper(pred: str, gold: str, timeout_s: float) -> bool:
    helper = _helpers.get()
    try:
        return helper.verify(pred, gold, timeout_s)
    except (OSError, EOFError, RuntimeError):  # a broken pipe or a helper that would not start
        helper.kill()
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
    return _verify_in_helper(pred, gold, timeout_s)


def check_math(
    span: str, gold: object, choices: Choices | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Verdict:
    return (math_equal(span, str(gold), timeout_s), span)
