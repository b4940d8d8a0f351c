"""An async client for any OpenAI-compatible chat endpoint (vLLM ``serve``, SGLang, OpenAI,
Gemini's OpenAI-compatible API), built to run for hours against a paid or self-hosted model.

* ``base_url`` is the API root as the OpenAI SDK takes it (``http://host:8000/v1``); requests go to
  ``{base_url}/chat/completions``. The API key is read from the environment variable named by
  ``api_key_env`` (no Authorization header when it is unset: local servers rarely need one).
* At most ``concurrency`` requests are in flight; identical requests in flight at once are sent once.
  A request waiting to retry holds no slot, so a few failing requests never starve the others.
* 429, 408, 5xx, timeouts, dropped connections and empty replies (content ``""``, blank or null)
  are retried with exponential backoff (honouring ``Retry-After``) up to ``max_attempts``; a
  request that still fails is counted as failed under the kind of its last error and answered
  with None, so one bad request never stops a run. 401/403/404 mean the endpoint, key or model
  name is wrong: :class:`EndpointError` stops the run at once. An endpoint that cannot be
  connected to (refused, unresolvable, no connection within ``connect_timeout_s``), or that drops
  the connection, on a request's last attempt is down, not a bad request:
  :class:`EndpointUnreachable` stops the run, and a rerun resumes from the cache.
* The server's ``usage.completion_tokens`` and ``finish_reason: "length"`` are counted (tokens/s in
  the build's progress; answers cut at max_tokens in its drop report). ``in_flight`` is what was sent
  and is not answered yet.
* Every answer is committed to the :class:`CompletionCache` before it is returned, so a rerun, or
  a run resumed after ``kill -9``, asks nothing that was already answered. Empty replies are never
  stored.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from exgrpo_verl.probes.cache import CompletionCache, request_key
from exgrpo_verl.probes.messages import Messages

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
FATAL_STATUSES = frozenset({401, 403, 404})
ENDPOINT_DOWN = frozenset({"unreachable", "connection_error"})
"""Error kinds that, on a request's last attempt, mean the endpoint is down, not the request bad:
no connection (refused, unresolvable, no route, TLS) or one closed before the answer (a server
killed mid-request, or a tunnel or proxy whose backend is gone)."""


class EndpointError(RuntimeError):
    """The endpoint rejects every request (bad URL, API key or model name): stop the run."""


class EndpointUnreachable(EndpointError):
    """The endpoint cannot be connected to (refused, unresolvable, silent): stop the run rather than
    drop every question's data; a rerun resumes from the cache."""


def describe_error(error: BaseException) -> str:
    """The underlying error in words (aiohttp's timeouts have an empty message)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass(frozen=True)
class EndpointConfig:
    """Where and how to ask one model; the CLI builds one for the teacher and one for the student."""

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    concurrency: int = 16
    timeout_s: float = 120.0
    max_attempts: int = 6
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024
    connect_timeout_s: float = 5.0
    """Longest wait for a connection, and for the start-up check (:mod:`endpoint_check`) to be answered."""
    role: str = ""
    """"teacher" or "student": only names the endpoint in error messages."""

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL must start with http:// or https://, got {self.base_url!r}")
        if self.concurrency < 1 or self.max_attempts < 1:
            raise ValueError("concurrency and max_attempts must be at least 1")
        if self.connect_timeout_s <= 0 or self.timeout_s <= 0:
            raise ValueError("timeouts must be positive")

    def describe(self) -> str:
        """How error messages name this endpoint."""
        return f"{self.role} endpoint {self.base_url} (model {self.model!r})".lstrip()

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def sampling_params(self) -> dict[str, Any]:
        """Everything besides model and messages that determines an answer (part of the cache key)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}

    def headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}


@dataclass
class RequestCounts:
    """What happened to the requests of a run (shown in the progress bar, written to stats)."""

    cached: int = 0
    asked: int = 0
    failed: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    """Failed attempts by kind (a request retried three times after HTTP 500 counts 3 there)."""
    failed_by_kind: dict[str, int] = field(default_factory=dict)
    """Failed requests by the kind of their last attempt's error."""
    completion_tokens: int = 0
    """Tokens of the answers asked (the servers' ``usage``; 0 where a server reports none): for tokens/s."""
    truncated: int = 0
    """Answers cut at max_tokens (``finish_reason: length``): a cut answer often lacks its final answer."""
    in_flight: int = 0
    """Requests sent and not yet answered (a gauge for the progress display, not written to stats)."""

    def note_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def note_failure(self, kind: str) -> None:
        self.failed += 1
        self.failed_by_kind[kind] = self.failed_by_kind.get(kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "cached": self.cached,
            "asked": self.asked,
            "failed": self.failed,
            "retries": self.retries,
            "errors": dict(sorted(self.errors.items())),
            "failed_by_kind": dict(sorted(self.failed_by_kind.items())),
            "completion_tokens": self.completion_tokens,
            "truncated": self.truncated,
        }


class _Retry(Exception):
    def __init__(self, kind: str, retry_after_s: float | None = None, detail: str = ""):
        super().__init__(kind)
        self.kind = kind
        self.retry_after_s = retry_after_s
        self.detail = detail or kind


class _GiveUp(Exception):
    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


@dataclass(frozen=True)
class _Reply:
    text: str
    tokens: int
    truncated: bool


def _content(payload: Any) -> _Reply:
    """The reply's text, its token count and whether it was cut at max_tokens; an empty reply is a
    failed attempt (kept, it would read as a real answer)."""
    try:
        choice = payload["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError) as error:
        raise _Retry("malformed_response") from error
    if content is None or (isinstance(content, str) and not content.strip()):
        raise _Retry("empty_content")
    if not isinstance(content, str):
        raise _Retry("malformed_response")
    usage = payload.get("usage") if isinstance(payload, dict) else None
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    truncated = isinstance(choice, dict) and choice.get("finish_reason") == "length"
    return _Reply(content, tokens if isinstance(tokens, int) and tokens > 0 else 0, truncated)


class ChatClient:
    """Use as ``async with ChatClient(config, cache) as client: text = await client.complete(messages)``."""

    def __init__(
        self,
        config: EndpointConfig,
        cache: CompletionCache,
        counts: RequestCounts | None = None,
        on_change: Callable[[], None] | None = None,
        down: EndpointUnreachable | None = None,
        limiter: asyncio.Semaphore | None = None,
    ):
        """``down``: the start-up check found the endpoint dead; answer from the cache only and stop
        at the first request it does not hold. ``limiter``: a slot pool shared with another client
        (teacher and student on one local server share its capacity); default: ``config.concurrency``
        slots of its own."""
        self.config = config
        self.down = down
        self.cache = cache
        self.counts = counts or RequestCounts()
        self._on_change = on_change or (lambda: None)
        self._semaphore = limiter or asyncio.Semaphore(config.concurrency)
        self._in_flight: dict[str, asyncio.Future[str | None]] = {}
        self._writes: set[asyncio.Future[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ChatClient:
        # aiohttp rather than httpx: httpcore's pool costs O(connections) per request and stalls at ~50 in flight.
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.concurrency),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s, sock_connect=self.config.connect_timeout_s),
            headers=self.config.headers(),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._writes:  # answers received before a stop are committed, not lost
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def complete(self, messages: Messages) -> str | None:
        """The model's answer to ``messages`` (from the cache when asked before), or None when the
        request failed after every retry."""
        params = self.config.sampling_params()
        key = request_key(self.config.model, messages, params)
        cached = self.cache.get(key)
        if cached is not None:
            self.counts.cached += 1
            self._on_change()
            return cached
        shared = self._in_flight.get(key)
        if shared is not None:
            return await asyncio.shield(shared)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            text = await self._ask(key, messages, params)
            future.set_result(text)
            return text
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            del self._in_flight[key]

    async def _ask(self, key: str, messages: Messages, params: dict[str, Any]) -> str | None:
        if self.down is not None:
            raise EndpointUnreachable(f"{self.down} The cache holds no answer to this request. {self._resume_hint()}")
        body = {"model": self.config.model, "messages": messages, **params}
        for attempt in range(1, self.config.max_attempts + 1):
            # The slot is held for the attempt only: a request sleeping before its retry leaves it to others.
            async with self._semaphore:
                self.counts.in_flight += 1
                self._on_change()
                try:
                    reply = await self._post(body)
                except _GiveUp as error:
                    self.counts.note_error(error.kind)
                    self.counts.note_failure(error.kind)
                    return None
                except _Retry as error:
                    failure = error
                else:
                    await self._store(key, body, reply.text)
                    self.counts.asked += 1
                    self.counts.completion_tokens += reply.tokens
                    self.counts.truncated += reply.truncated
                    return reply.text
                finally:
                    self.counts.in_flight -= 1
                    self._on_change()
            self.counts.note_error(failure.kind)
            if attempt == self.config.max_attempts:
                break
            self.counts.retries += 1
            self._on_change()
            await asyncio.sleep(self._backoff(attempt, failure.retry_after_s))
        if failure.kind in ENDPOINT_DOWN:
            raise EndpointUnreachable(
                f"{self.config.describe()} is down: {self.config.max_attempts} attempt(s) at one request failed, "
                f"the last with {failure.detail}. {self._resume_hint()}"
            )
        self.counts.note_failure(failure.kind)
        self._on_change()
        return None

    def _resume_hint(self) -> str:
        return (
            f"The {len(self.cache)} answer(s) so far are kept in {self.cache.path}; rerun the same command when "
            "the endpoint is up to resume from there."
        )

    async def _store(self, key: str, body: dict[str, Any], text: str) -> None:
        """Commit an answer in a worker thread; shielded, so stopping the run mid-write loses nothing
        (``__aexit__`` waits for writes still running)."""
        write = asyncio.get_running_loop().run_in_executor(None, self.cache.put, key, self.config.model, body, text)
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        await asyncio.shield(write)

    async def _post(self, body: dict[str, Any]) -> _Reply:
        assert self._http is not None, "use ChatClient as an async context manager"
        try:
            async with self._http.post(self.config.url, json=body) as response:
                status = response.status
                text = await response.text()
                headers = response.headers
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            # Refused, unresolvable, unroutable, TLS failure or no connection in time: nothing was asked.
            raise _Retry("unreachable", detail=describe_error(error)) from error
        except asyncio.TimeoutError as error:
            raise _Retry("timeout", detail=f"no answer within {self.config.timeout_s:g} s") from error
        except aiohttp.ClientError as error:
            raise _Retry("connection_error", detail=describe_error(error)) from error
        if status in FATAL_STATUSES:
            raise EndpointError(
                f"{self.config.url} answered HTTP {status} for model {self.config.model!r}: check the base URL, "
                f"the model name and the API key in ${self.config.api_key_env}. Body: {text[:300]}"
            )
        if status in RETRY_STATUSES or status >= 500:
            raise _Retry(f"http_{status}", _retry_after(headers))
        if status != 200:
            raise _GiveUp(f"http_{status}")
        try:
            payload = json.loads(text)
        except ValueError as error:
            raise _Retry("malformed_response") from error
        return _content(payload)

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        delay = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.config.backoff_max_s))
        return delay
