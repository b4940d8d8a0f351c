"""The teacher client against a real local HTTP server: retries, backoff, cache, concurrency."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from exgrpo_verl.probes.cache import CompletionCache, request_key
from exgrpo_verl.probes.teacher import ChatClient, EndpointConfig, EndpointError
from exgrpo_verl.testing.openai_stub import StubServer, default_script, fail_first


def _config(stub: StubServer, **overrides) -> EndpointConfig:
    values = {"concurrency": 4, "timeout_s": 2.0, "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "max_attempts": 4}
    values.update(overrides)
    return EndpointConfig(stub.base_url, "teacher", **values)


def _ask(config: EndpointConfig, cache: CompletionCache, prompts: list[str]) -> tuple[list, ChatClient]:
    async def go():
        async with ChatClient(config, cache) as client:
            answers = await asyncio.gather(*(client.complete([{"role": "user", "content": p}]) for p in prompts))
            return answers, client

    return asyncio.run(go())


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def test_retries_429_500_and_timeouts_then_answers(tmp_path):
    with StubServer(faults=fail_first(429, 500, "timeout"), timeout_hold_s=1.0) as stub:
        config = _config(stub, timeout_s=0.3)
        answers, client = _ask(config, CompletionCache(tmp_path / "c.sqlite"), ["a", "b"])
    body = {"model": "teacher", "messages": _messages("a"), **config.sampling_params()}
    assert answers[0] == default_script(body)
    assert client.counts.asked == 2 and client.counts.retries == 6 and client.counts.failed == 0
    assert client.counts.errors == {"http_429": 2, "http_500": 2, "timeout": 2}
    assert sorted(stub.attempts.values()) == [4, 4] and len(stub.answered) == 2


def test_failure_after_the_last_attempt_is_counted_and_not_cached(tmp_path):
    cache = CompletionCache(tmp_path / "c.sqlite")
    with StubServer(faults=fail_first(503, 503, 503)) as stub:
        answers, client = _ask(_config(stub, max_attempts=3), cache, ["a"])
        assert answers == [None] and client.counts.failed == 1 and client.counts.retries == 2
        assert len(cache) == 0
        # A rerun asks the failed request again (the server has recovered by now: 4th attempt).
        answers, client = _ask(_config(stub, max_attempts=3), cache, ["a"])
        assert answers[0] is not None and client.counts.asked == 1 and len(cache) == 1


def test_client_errors_are_not_retried_and_auth_errors_stop_the_run(tmp_path):
    cache = CompletionCache(tmp_path / "c.sqlite")
    with StubServer(faults=fail_first(400)) as stub:
        answers, client = _ask(_config(stub), cache, ["a"])
        assert answers == [None] and client.counts.errors == {"http_400": 1} and stub.attempts.most_common(1)[0][1] == 1
    with StubServer(api_key="sekret") as stub:
        with pytest.raises(EndpointError, match="HTTP 401"):
            _ask(_config(stub, api_key_env="EXGRPO_TEST_KEY"), cache, ["a"])
        os.environ["EXGRPO_TEST_KEY"] = "sekret"
        try:
            answers, _ = _ask(_config(stub, api_key_env="EXGRPO_TEST_KEY"), cache, ["b"])
        finally:
            del os.environ["EXGRPO_TEST_KEY"]
        assert answers[0] is not None


def test_cache_hits_skip_the_server_and_key_on_sampling_params(tmp_path):
    cache = CompletionCache(tmp_path / "c.sqlite")
    with StubServer() as stub:
        first, _ = _ask(_config(stub), cache, ["a", "b", "c"])
        second, client = _ask(_config(stub), cache, ["a", "b", "c"])
        assert second == first and client.counts.cached == 3 and client.counts.asked == 0
        assert len(stub.received) == 3
        _, client = _ask(_config(stub, temperature=0.7), cache, ["a"])
        assert client.counts.asked == 1 and len(stub.received) == 4
    key = request_key("teacher", _messages("a"), _config(stub).sampling_params())
    assert cache.get(key) == first[0]


def test_identical_requests_in_flight_are_sent_once(tmp_path):
    with StubServer(latency_s=0.05) as stub:
        answers, client = _ask(_config(stub), CompletionCache(tmp_path / "c.sqlite"), ["same"] * 5)
    assert len(set(answers)) == 1 and len(stub.received) == 1 and client.counts.asked == 1


def test_concurrency_limit(tmp_path):
    with StubServer(latency_s=0.05) as stub:
        _ask(_config(stub, concurrency=3), CompletionCache(tmp_path / "c.sqlite"), [f"q{i}" for i in range(15)])
    assert stub.max_in_flight == 3


def test_cached_answers_survive_kill_9(tmp_path):
    """A writer killed with SIGKILL right after put() returns loses none of its answers."""
    path = tmp_path / "c.sqlite"
    script = textwrap.dedent(
        f"""
        import os, signal
        from exgrpo_verl.probes.cache import CompletionCache
        cache = CompletionCache({str(path)!r})
        for i in range(200):
            cache.put(f"k{{i}}", "m", {{"i": i}}, f"answer {{i}}")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert process.returncode == -signal.SIGKILL
    cache = CompletionCache(path)
    assert len(cache) == 200 and cache.get("k199") == "answer 199"


def test_endpoint_config_validation():
    with pytest.raises(ValueError, match="http"):
        EndpointConfig("localhost:8000/v1", "m")
    assert EndpointConfig("http://h:1/v1/", "m").url == "http://h:1/v1/chat/completions"
