"""Endpoints that never answer, on 127.0.0.1, for fail-fast tests of the EI build.

* :func:`refusing` -- nothing listens on the port: every connection is refused (a server that is down).
* :func:`hanging_up` -- connections are accepted and closed at once, before any answer.
* :func:`stalling` -- connections are accepted by the kernel and then nothing is ever said.
* :data:`UNRESOLVABLE_URL` -- a host name that cannot resolve (``.invalid`` is reserved, RFC 2606).

Each context manager yields an OpenAI-style base URL (``http://127.0.0.1:PORT/v1``).
:func:`free_port` gives a port for a server that is stopped and started again on it.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections.abc import Iterator

UNRESOLVABLE_URL = "http://teacher.invalid:8000/v1"


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768 and up), so no client socket takes it as its
    own local port while the server on it is down (which would block the restart, or let a client
    connect to itself)."""
    for port in random.Random().sample(range(20000, 32000), 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as candidate:
            try:
                candidate.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


def _listener(backlog: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    return listener


@contextlib.contextmanager
def refusing() -> Iterator[str]:
    """A port that was free a moment ago and has no listener."""
    yield _url(free_port())


@contextlib.contextmanager
def hanging_up() -> Iterator[str]:
    """Accept every connection and close it without a word."""
    listener = _listener(64)
    listener.settimeout(0.05)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield _url(listener.getsockname()[1])
    finally:
        done.set()
        thread.join(timeout=5)
        listener.close()


@contextlib.contextmanager
def stalling() -> Iterator[str]:
    """Listen and never accept: the kernel completes the handshake, takes the request, and no reply
    ever comes."""
    listener = _listener(64)
    try:
        yield _url(listener.getsockname()[1])
    finally:
        listener.close()
