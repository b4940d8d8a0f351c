"""The math-verify helper process: answers "are these two answers equal?" over a pipe.

Started by :mod:`exgrpo_verl.answers.math_helpers` as a fresh interpreter running :func:`serve`
(never through multiprocessing, so the caller's ``__main__`` is never imported again). One JSON
request per line on stdin: ``{"pred": str, "gold": str, "timeout_s": float}``; one JSON reply per
line on the original stdout: ``{"equal": bool, "status": "ok" | "timeout" | "error"}``. The first
line written is ``ready`` once math-verify is loaded; anything printed before it (an import error)
goes to stderr, anything after it nowhere. End of input ends the process.

SymPy runs on this process's main thread, so a per-request deadline can interrupt it with a timer
signal; the caller also kills and replaces a helper that does not answer in time.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import warnings
from typing import Any, BinaryIO

READY = b"ready\n"


class _Overrun(BaseException):
    """Raised by the timer signal; a BaseException so library ``except Exception`` blocks let it through."""


def _on_timer(signum: int, frame: Any) -> None:
    raise _Overrun


def _answer(equivalent: Any, request: dict[str, Any]) -> dict[str, Any]:
    timeout_s = float(request.get("timeout_s", 5.0))
    try:
        signal.setitimer(signal.ITIMER_REAL, max(timeout_s, 0.01))
        try:
            equal = bool(equivalent(str(request["pred"]), str(request["gold"])))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Overrun:
        return {"equal": False, "status": "timeout"}
    except Exception:  # SymPy raises anything on odd input; that is a wrong answer
        return {"equal": False, "status": "error"}
    return {"equal": equal, "status": "ok"}


def _protocol_stream() -> BinaryIO:
    """The original stdout, kept for replies; fd 1 then points at stderr so that anything a library
    prints cannot corrupt the protocol."""
    stream = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def _silence() -> None:
    """After a good start nothing the helper prints is read (the caller keeps start-up errors only),
    so stray library output goes nowhere instead of piling up for the life of the helper."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def serve() -> None:
    out = _protocol_stream()
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    signal.signal(signal.SIGALRM, _on_timer)
    from exgrpo_verl.answers.math_equivalence import equivalent

    equivalent("x + 1", "1 + x")  # load the LaTeX parser before saying ready
    out.write(READY)
    _silence()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            reply = _answer(equivalent, request)
        except (ValueError, TypeError, KeyError, AttributeError):
            reply = {"equal": False, "status": "error"}
        out.write(json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":
    serve()
