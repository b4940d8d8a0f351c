"""A persistent cache of chat completions keyed by (model, messages, sampling parameters).

SQLite in WAL mode: every answer is committed before the caller sees it, and a committed
transaction survives ``kill -9`` of the writer (with ``synchronous=NORMAL`` it can only be lost
to an operating-system crash or power cut; pass ``durable=True`` for ``synchronous=FULL``).
Concurrent readers (another process inspecting progress) never block the writer.

An empty or blank reply is never an answer: :meth:`CompletionCache.put` refuses one, and
:meth:`CompletionCache.get` treats a blank row (written by an older version) as missing, so the
request is asked again and its new answer replaces the blank one.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def request_key(model: str, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> str:
    """A stable hash of everything that determines a completion."""
    canonical = json.dumps(
        {"model": model, "messages": list(messages), "params": dict(params)},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CompletionCache:
    """Thread-safe get/put of completion texts in one SQLite file."""

    def __init__(self, path: str | Path, durable: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM completions WHERE key = ?", (key,)).fetchone()
        return row[0] if row and row[0].strip() else None

    def put(self, key: str, model: str, request: Mapping[str, Any], response: str) -> None:
        """Store an answer; it is committed when this returns. The first answer for a key is kept,
        unless it was blank."""
        if not response.strip():
            raise ValueError(f"refusing to cache an empty reply for request {key[:12]}")
        payload = json.dumps(request, ensure_ascii=False, sort_keys=True)
        row = (key, model, payload, response, time.time())
        with self._lock:
            old = self._db.execute("SELECT response FROM completions WHERE key = ?", (key,)).fetchone()
            if old is None:
                self._db.execute(
                    "INSERT OR IGNORE INTO completions (key, model, request, response, created) VALUES (?, ?, ?, ?, ?)",
                    row,
                )
            elif not old[0].strip():
                self._db.execute(
                    "UPDATE completions SET model = ?, request = ?, response = ?, created = ? WHERE key = ?",
                    (*row[1:], key),
                )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
