"""Is the endpoint there at all? Asked once before a build sends anything at scale.

Without this check a build against a dead endpoint retries every request with backoff before it
reports anything (hours for a large split). The check GETs ``{base_url}/models`` (served by vLLM,
SGLang, OpenAI and Gemini's OpenAI-compatible API): any HTTP answer means the server is up, even
401 or 404, which the first real request then reports with its own clear message. A refused,
unresolvable or silent endpoint, or a gateway answering 502/503/504 (its backend is down), is
tried a few times within ``connect_timeout_s`` and is then reported as :class:`EndpointUnreachable`
naming the URL, the model and the error. The pipeline decides what that means: stop at once, or
go on with the answers already in the cache.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp

from exgrpo_verl.probes.cache import CompletionCache
from exgrpo_verl.probes.teacher import EndpointConfig, EndpointUnreachable, describe_error

ATTEMPTS = 3
PAUSE_S = 0.5
GATEWAY_DOWN = frozenset({502, 503, 504})


async def check_reachable(config: EndpointConfig) -> None:
    """Return once the endpoint answers HTTP; raise :class:`EndpointUnreachable` after ``ATTEMPTS``
    failed tries or ``config.connect_timeout_s`` seconds, whichever comes first."""
    url = config.base_url.rstrip("/") + "/models"
    deadline = time.monotonic() + config.connect_timeout_s
    problem = "no attempt made"
    async with aiohttp.ClientSession(headers=config.headers()) as http:
        for attempt in range(ATTEMPTS):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if attempt:
                await asyncio.sleep(min(PAUSE_S, remaining / 2))
            try:
                timeout = aiohttp.ClientTimeout(total=max(0.001, deadline - time.monotonic()))
                async with http.get(url, timeout=timeout) as response:
                    await response.read()
                    status = response.status
            except aiohttp.ClientError as error:  # refused, unresolvable, dropped, no connection in time
                problem = describe_error(error)
                continue
            except asyncio.TimeoutError:
                problem = f"connected, but no answer within {config.connect_timeout_s:g} s"
                continue
            if status not in GATEWAY_DOWN:
                return
            problem = f"GET {url} answered HTTP {status}"
    raise EndpointUnreachable(f"{config.describe()} is not answering: {problem}.")


async def unreachable(configs: list[EndpointConfig]) -> list[EndpointUnreachable | None]:
    """Check several endpoints at once (teacher and student; the wait is the slowest one's): for
    each, None when it answers, else the error."""

    async def one(config: EndpointConfig) -> EndpointUnreachable | None:
        try:
            await check_reachable(config)
        except EndpointUnreachable as error:
            return error
        return None

    return list(await asyncio.gather(*(one(config) for config in configs)))


async def check_at_start(endpoints: dict[str, EndpointConfig], cache_file: Path) -> dict[str, EndpointUnreachable]:
    """Before a build: raise when an endpoint is dead, before the cache file or any output exists.
    With answers already cached (a rerun, say to change a filter, while the server is off) warn
    instead and return the dead endpoints by name: their clients answer from the cache and stop at
    the first request it does not hold."""
    errors = await unreachable(list(endpoints.values()))
    down = {name: error for name, error in zip(endpoints, errors, strict=True) if error is not None}
    if down and not _has_answers(cache_file):
        raise EndpointUnreachable(
            f"{' '.join(map(str, down.values()))} Nothing was asked and no output was written; check that the "
            "server is running and the URL is right."
        )
    for error in down.values():
        print(f"warning: {error} Going on with the answers cached in {cache_file}.", file=sys.stderr)
    return down


def _has_answers(cache_file: Path) -> bool:
    if not cache_file.is_file():
        return False
    cache = CompletionCache(cache_file)
    try:
        return len(cache) > 0
    finally:
        cache.close()
