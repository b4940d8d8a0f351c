"""Start and stop ``transformers serve`` (transformers' own OpenAI-compatible server) for tests and benchmarks.

The server runs in its own process, started through this interpreter (``sys.executable -m
transformers.cli.transformers serve``, never a console script found on PATH), bound to 127.0.0.1
on a free port, with the hub switched off (``HF_HUB_OFFLINE=1``, no update check): it serves local
model folders only. ``model`` given: the server preloads it and answers only requests naming it
exactly (its path as given); without one it loads whichever local folder a request names, on first
use. Ready means ``GET /health`` answers 200 (after the preload, when there is one).

    with TransformersServer(model="path/to/model") as server:
        ... server.base_url ...  # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from exgrpo_verl.testing.dead_endpoints import free_port

SERVE_MODULE = "transformers.cli.transformers"
PR_SET_PDEATHSIG = 1


class ServerFailed(RuntimeError):
    """The server exited or did not become ready; the message ends with its log."""


def serving_available() -> str | None:
    """None when ``transformers serve`` can run here, else why not (an older transformers, whose serve
    command lives elsewhere, or the ``serving`` extra missing)."""
    import transformers

    try:
        found = importlib.util.find_spec(SERVE_MODULE) is not None
    except ImportError:
        found = False
    if not found:
        return f"transformers {transformers.__version__} has no {SERVE_MODULE} (transformers serve as of 5.0)"
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        return "transformers serve needs its serving extra: pip install 'transformers[serving]'"
    return None


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: a function for ``preexec_fn`` that has the server sent SIGTERM when the thread that
    started it dies, so a killed test run leaves no server behind (None elsewhere, where
    :meth:`TransformersServer.stop` is the only stop). libc is loaded here, before the fork: the
    child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class TransformersServer:
    """One ``transformers serve`` process; a context manager that always stops it."""

    def __init__(
        self,
        model: str | Path | None = None,
        continuous_batching: bool = False,
        device: str = "cpu",
        log_path: str | Path | None = None,
        ready_timeout_s: float = 180.0,
        extra_args: list[str] | None = None,
    ):
        self.model = str(model) if model is not None else None
        self.continuous_batching = continuous_batching
        self.device = device
        self.log_path = Path(log_path) if log_path else None
        self.ready_timeout_s = ready_timeout_s
        self.extra_args = list(extra_args or [])
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", SERVE_MODULE, "serve"]
        if self.model is not None:
            command.append(self.model)
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--device", self.device, "--log-level", "warning"]
        if self.continuous_batching:
            command.append("--continuous-batching")
        return command + self.extra_args

    def start(self) -> TransformersServer:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "TRANSFORMERS_OFFLINE": "1"}
        for attempt in range(3):  # another process may take the free port before the server binds it
            self.port = free_port()
            log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
            self._log = log if self.log_path else None
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent()
            )
            try:
                self._wait_ready()
                return self
            except ServerFailed:
                self.stop()
                if attempt == 2 or not self._port_taken():
                    raise
        return self

    def _port_taken(self) -> bool:
        return "address already in use" in self.log_tail().lower()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        url = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"transformers serve exited with code {self.process.returncode}.{self._tail_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise ServerFailed(f"transformers serve was not ready within {self.ready_timeout_s:g} s.{self._tail_text()}")

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def _tail_text(self) -> str:
        tail = self.log_tail()
        return f" Its log ends:\n{tail}" if tail else ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> TransformersServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
