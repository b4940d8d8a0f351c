"""Fixtures for the eval tests: questions of several answer types, and a scripted OpenAI-compatible
chat server on 127.0.0.1 that records every request it receives."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from exgrpo_verl.datasets.record import Record

_CSQA = {"A": "bank", "B": "library", "C": "forest", "D": "ocean", "E": "desert"}
_OBQA = {"A": "wood", "B": "iron", "C": "glass", "D": "paper"}

# Questions of six answer types (number, math, choice, yes/no, NLI, date) in four held-in and two
# OOD datasets; the question texts are unique so a stub can tell which one it was asked.
FIXTURE_RECORDS: tuple[Record, ...] = (
    Record("g1", "gsm8k", "Tom has 3 apples and buys 4 more. How many apples does he have?", "7", "test"),
    Record("g2", "gsm8k", "A box holds 2 rows of 4 eggs. How many eggs are in the box?", "8", "test"),
    Record("g3", "gsm8k", "Sara reads 5 pages a day for 3 days. How many pages does she read?", "15", "test"),
    Record("m1", "math", "Compute $3 + 4$.", "7", "test"),
    Record("m2", "math", "Simplify $\\frac{2}{4}$.", "\\frac{1}{2}", "test"),
    Record("c1", "commonsense_qa", "Where do people borrow books?\nA. bank\nB. library", "B", "test", choices=_CSQA),
    Record("c2", "commonsense_qa", "Where do trees grow densely?\nC. forest\nD. ocean", "C", "test", choices=_CSQA),
    Record("s1", "strategyqa", "Can a penguin fly over the Alps unaided?", "no", "test"),
    Record("s2", "strategyqa", "Is water wet to the touch at room temperature?", "yes", "test"),
    Record("a1", "anli", "Premise: A man sleeps. Hypothesis: A person rests.", "entailment", "test"),
    Record("d1", "date_understanding", "Today is 04/30/2021. What is the date tomorrow?", "05/01/2021", "test"),
    Record("b1", "boolq", "Passage: The sun is a star. Question: is the sun a star?", "yes", "test"),
    Record("o1", "openbookqa", "Which material is magnetic?\nA. wood\nB. iron", "B", "test", choices=_OBQA),
)


def write_records_jsonl(path: Path, records: Sequence[Record] = FIXTURE_RECORDS) -> Path:
    path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in records), encoding="utf-8")
    return path


def record_for_prompt(content: str, records: Sequence[Record] = FIXTURE_RECORDS) -> Record:
    """The fixture record whose question a prompt asks."""
    matches = [r for r in records if r.question in content]
    assert len(matches) == 1, f"prompt matches {len(matches)} fixture questions: {content[:80]!r}"
    return matches[0]


class StubChatServer:
    """``/v1/models`` and ``/v1/chat/completions`` answering with ``script(record, request_json)``.

    ``hang_on`` (1-based request number) makes that request block without an answer until
    :meth:`release` (to kill a client mid-run); ``hung`` is set once it has arrived.
    """

    def __init__(
        self,
        script: Callable[[Record, dict[str, Any]], str],
        model: str = "stub-model",
        hang_on: int | None = None,
        records: Sequence[Record] = FIXTURE_RECORDS,
    ) -> None:
        self.script, self.model, self.hang_on, self.records = script, model, hang_on, records
        self.requests: list[tuple[str, int | None]] = []  # (record id, seed) of every completion request
        self.answered: list[tuple[str, int | None]] = []
        self.hung = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> StubChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        self._release.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": stub.model, "object": "model", "created": 0}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                record = record_for_prompt(body["messages"][-1]["content"], stub.records)
                with stub._lock:
                    stub.requests.append((record.id, body.get("seed")))
                    number = len(stub.requests)
                if number == stub.hang_on:
                    stub.hung.set()
                    stub._release.wait(60)
                    self.close_connection = True
                    return
                content = stub.script(record, body)
                with stub._lock:
                    stub.answered.append((record.id, body.get("seed")))
                self._send(
                    200,
                    {
                        "id": f"cmpl-{number}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

        return Handler
