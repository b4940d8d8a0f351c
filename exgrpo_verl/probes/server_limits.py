"""Requests in flight and the per-request timeout, when the ``ei-build`` flags leave them to the build.

Why the endpoint decides: vLLM and SGLang batch whatever arrives, so 16 requests in flight keep
them busy, and so do hosted APIs. A server on this machine that does not say it is one of those
(``transformers serve``, llama.cpp, Ollama) is assumed to answer about one request at a time per
model: more in flight only queue there, a queued request's wait counts against its timeout, and a
request that times out keeps the server busy (it does not stop generating) while its retry queues
again. On a laptop that turns a slow build into one that never finishes. So a local endpoint gets
:data:`LOCAL_CONCURRENCY` requests in flight (two keep a one-at-a-time server busy; four let
``transformers serve --continuous-batching`` batch) and :data:`LOCAL_TIMEOUT_S` per request
(answers of 1024 tokens at a few tokens per second on a CPU, behind the others in its queue).
Teacher and student on the same local server share one pool of slots (see the pipeline).

A server says what it is in ``GET /models``: vLLM and SGLang name themselves in ``owned_by``.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

REMOTE_CONCURRENCY = 16
LOCAL_CONCURRENCY = 4
REMOTE_TIMEOUT_S = 120.0
LOCAL_TIMEOUT_S = 600.0
BATCHING_SERVERS = frozenset({"vllm", "sglang"})
"""``owned_by`` values of servers that batch concurrent requests."""
PROBE_TIMEOUT_S = 3.0


def is_local(base_url: str) -> bool:
    """Is the endpoint on this machine (loopback or the unspecified address)?"""
    host = (urlsplit(base_url).hostname or "").strip("[]").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def same_local_server(first: str, second: str) -> bool:
    """Two base URLs naming one server on this machine (teacher and student share its capacity)."""
    return is_local(first) and first.rstrip("/") == second.rstrip("/")


def server_owners(
    base_url: str, headers: dict[str, str] | None = None, timeout_s: float = PROBE_TIMEOUT_S
) -> frozenset[str]:
    """The ``owned_by`` values ``GET {base_url}/models`` reports (empty when it reports none or fails)."""
    request = urllib.request.Request(base_url.rstrip("/") + "/models", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            payload = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return frozenset()
    entries = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        return frozenset()
    return frozenset(str(entry.get("owned_by", "")).lower() for entry in entries if isinstance(entry, dict))


@dataclass(frozen=True)
class Limits:
    concurrency: int
    timeout_s: float
    why: str


def default_limits(
    base_url: str, headers: dict[str, str] | None = None, probe_timeout_s: float = PROBE_TIMEOUT_S
) -> Limits:
    """The build's choice for an endpoint, with the reason in words (printed at the start of a build).
    Only a local endpoint is asked what it is (within ``probe_timeout_s``; no answer: not batching)."""
    if not is_local(base_url):
        return Limits(REMOTE_CONCURRENCY, REMOTE_TIMEOUT_S, "not on this machine")
    batching = server_owners(base_url, headers, probe_timeout_s) & BATCHING_SERVERS
    if batching:
        return Limits(REMOTE_CONCURRENCY, REMOTE_TIMEOUT_S, f"a batching server on this machine ({min(batching)})")
    return Limits(
        LOCAL_CONCURRENCY,
        LOCAL_TIMEOUT_S,
        "a server on this machine that does not report batching (transformers serve, llama.cpp, Ollama)",
    )
