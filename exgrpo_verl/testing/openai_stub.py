"""A local OpenAI-compatible chat server for tests and benchmarks (binds 127.0.0.1 only).

Answers are scripted and deterministic (a function of the request), and faults are injected per
request: HTTP errors (429, 500, ...), a timeout (the server holds the request past the client's
deadline and then drops the connection), a dropped connection, an empty, blank or null reply,
``choices: []`` or a body that is not JSON. ``latency_s`` delays every answer. The server records
every request it received and every answer it delivered, so tests can check retries and that
nothing was asked twice. :meth:`StubServer.stop` also cuts open connections, so a stopped server
is down the way a killed one is.

Run standalone for benchmarks: ``python -m exgrpo_verl.testing.openai_stub --latency 0.1``
prints ``READY <port>`` and serves until killed.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exgrpo_verl.probes.cache import request_key

Script = Callable[[dict[str, Any]], str]
"""Request body -> the assistant's reply."""
Fault = int | str | None
"""An HTTP status to answer with, one of :data:`FAULTS`, or None (answer normally)."""
FAULTS = {
    "timeout": "hold the request for timeout_hold_s, then drop the connection unanswered",
    "drop": "drop the connection at once, unanswered",
    "empty": 'answer 200 with content ""',
    "blank": "answer 200 with whitespace-only content",
    "null": "answer 200 with content null",
    "no_choices": "answer 200 with choices: []",
    "bad_json": "answer 200 with a body that is not JSON",
}
_CONTENT_FAULTS = {"empty": "", "blank": " \n\t ", "null": None}
FaultPlan = Callable[[str, int], Fault]
"""(request key, attempt number of that request, from 1) -> the fault for this attempt."""


def body_key(body: dict[str, Any]) -> str:
    """The cache key the client computes for this request body."""
    params = {k: v for k, v in body.items() if k not in ("model", "messages")}
    return request_key(body.get("model", ""), body.get("messages", []), params)


def default_script(body: dict[str, Any]) -> str:
    key = body_key(body)
    return f"Stub reply {key[:8]}.\n\n\\boxed{{{int(key[:4], 16) % 10}}}"


def _usage(text: str | None, body: dict[str, Any]) -> tuple[int, str]:
    """The reply's "tokens" (whitespace-separated words stand in for them) and finish reason: "length"
    when they reach the request's max_tokens (the stub never cuts a scripted reply)."""
    tokens = len((text or "").split())
    limit = body.get("max_tokens")
    return tokens, "length" if isinstance(limit, int) and tokens >= limit else "stop"


def fail_first(*faults: Fault) -> FaultPlan:
    """Every distinct request meets ``faults`` on its first attempts, then is answered."""
    unknown = [fault for fault in faults if isinstance(fault, str) and fault not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; known: {sorted(FAULTS)}")
    return lambda key, attempt: faults[attempt - 1] if attempt <= len(faults) else None


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # the default backlog (5) refuses connections when many clients start at once
    daemon_threads = True


class StubServer:
    """``with StubServer(script) as stub: ... stub.base_url ...``"""

    def __init__(
        self,
        script: Script = default_script,
        latency_s: float = 0.0,
        faults: FaultPlan | None = None,
        timeout_hold_s: float = 5.0,
        port: int = 0,
        api_key: str | None = None,
        owned_by: str | None = None,
    ):
        self.script = script
        self.latency_s = latency_s
        self.faults = faults
        self.timeout_hold_s = timeout_hold_s
        self.api_key = api_key
        """When set, requests without "Authorization: Bearer <api_key>" get HTTP 401."""
        self.owned_by = owned_by
        """``owned_by`` of the model GET /models lists (vLLM says "vllm"); absent when None."""
        self.received: list[str] = []
        self.answered: list[str] = []
        self.aborted: list[str] = []
        self.attempts: Counter[str] = Counter()
        self.bodies: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._hold_after: int | None = None
        self._release = threading.Event()
        self._abort_held = False
        self.held = 0
        self._connections: set[socket.socket] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self._server = _Server(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StubServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (keep-alive ones too): the server is down."""
        self.release(abort=True)
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def hold_after(self, answers: int) -> None:
        """Answer ``answers`` requests in total, then hold every further request until :meth:`release`."""
        with self._lock:
            self._hold_after = answers
            self._release.clear()

    def release(self, abort: bool = False) -> None:
        """Let held requests go: answered, or with ``abort`` dropped unanswered (their client is gone)."""
        with self._lock:
            self._abort_held = abort
            self._hold_after = None
        self._release.set()

    def _must_hold(self) -> bool:
        with self._lock:
            return self._hold_after is not None and len(self.answered) >= self._hold_after

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def setup(self) -> None:
                super().setup()
                with stub._lock:
                    stub._connections.add(self.connection)

            def finish(self) -> None:
                with stub._lock:
                    stub._connections.discard(self.connection)
                try:
                    super().finish()
                except OSError:  # the client (or stop()) already closed the connection
                    pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (ConnectionError, OSError):  # the client went away mid-answer: nothing to report
                    self.close_connection = True

            def _send_json(self, status: int, payload: dict[str, Any]) -> None:
                self._send_raw(status, json.dumps(payload).encode("utf-8"))

            def _send_raw(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    entry = {"id": "stub", "object": "model"}
                    if stub.owned_by is not None:
                        entry["owned_by"] = stub.owned_by
                    self._send_json(200, {"object": "list", "data": [entry]})
                else:
                    self._send_json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send_json(400, {"error": {"message": "invalid JSON"}})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                if stub.api_key is not None and self.headers.get("Authorization") != f"Bearer {stub.api_key}":
                    self._send_json(401, {"error": {"message": "invalid API key"}})
                    return
                key = body_key(body)
                with stub._lock:
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    self._answer(key, body)
                finally:
                    with stub._lock:
                        stub.in_flight -= 1

            def _answer(self, key: str, body: dict[str, Any]) -> None:
                with stub._lock:
                    stub.received.append(key)
                    stub.attempts[key] += 1
                    attempt = stub.attempts[key]
                    stub.bodies.setdefault(key, body)
                fault = stub.faults(key, attempt) if stub.faults else None
                if fault == "timeout":
                    time.sleep(stub.timeout_hold_s)
                    self.close_connection = True
                    return
                if fault == "drop":
                    self.close_connection = True
                    return
                if fault == "bad_json":
                    self._send_raw(200, b'{"choices": [{"message": {"content": "cut o')
                    return
                if isinstance(fault, int):
                    self._send_json(fault, {"error": {"message": f"injected HTTP {fault}", "code": fault}})
                    return
                if stub._must_hold():
                    with stub._lock:
                        stub.held += 1
                    stub._release.wait()
                    if stub._abort_held:
                        with stub._lock:
                            stub.aborted.append(key)
                        self.close_connection = True
                        return
                if stub.latency_s:
                    time.sleep(stub.latency_s)
                text = _CONTENT_FAULTS[fault] if fault in _CONTENT_FAULTS else stub.script(body)
                tokens, finish = _usage(text, body)
                payload = {
                    "id": f"chatcmpl-{key[:12]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "stub"),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                    ],
                    "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
                }
                if fault == "no_choices":
                    payload["choices"] = []
                try:
                    self._send_json(200, payload)
                except OSError:
                    return
                if fault is None:
                    with stub._lock:
                        stub.answered.append(key)

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    args = parser.parse_args()
    stub = StubServer(latency_s=args.latency, port=args.port)
    print(f"READY {stub.port}", flush=True)
    stub._server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
