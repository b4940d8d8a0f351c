"""The teacher client against a real local HTTP server: retries, backoff, cache, concurrency, empty
replies, a dead endpoint and the start-up check."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from exgrpo_verl.probes.cache import CompletionCache, request_key
from exgrpo_verl.probes.endpoint_check import check_reachable
from exgrpo_verl.probes.teacher import ChatClient, EndpointConfig, EndpointError, EndpointUnreachable
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


def test_a_request_waiting_to_retry_holds_no_slot(tmp_path):
    """One slot: "a" has its connection dropped and waits to retry; "b" is answered in the meantime."""
    keys = {}

    def faults(key: str, attempt: int):
        return "drop" if key == keys["a"] and attempt == 1 else None

    with StubServer(faults=faults) as stub:
        config = _config(stub, concurrency=1, backoff_initial_s=0.4, backoff_max_s=0.4)
        keys["a"] = request_key("teacher", _messages("a"), config.sampling_params())
        keys["b"] = request_key("teacher", _messages("b"), config.sampling_params())
        answers, client = _ask(config, CompletionCache(tmp_path / "c.sqlite"), ["a", "b"])
    assert None not in answers and client.counts.errors == {"connection_error": 1}
    assert stub.received == [keys["a"], keys["b"], keys["a"]]


@pytest.mark.parametrize(
    ("faults", "kind"),
    [
        (("empty",), "empty_content"),
        (("blank", "null"), "empty_content"),
        (("no_choices", "bad_json"), "malformed_response"),
    ],
)
def test_empty_and_malformed_replies_are_retried_and_never_cached(tmp_path, faults, kind):
    cache = CompletionCache(tmp_path / "c.sqlite")
    with StubServer(faults=fail_first(*faults)) as stub:
        answers, client = _ask(_config(stub), cache, ["a"])
    assert answers[0] and answers[0].strip() and client.counts.errors == {kind: len(faults)}
    assert client.counts.asked == 1 and len(cache) == 1
    # Persisting past the last attempt: a failed request under its own kind, nothing cached.
    cache = CompletionCache(tmp_path / "d.sqlite")
    with StubServer(faults=fail_first(*faults)) as stub:
        answers, client = _ask(_config(stub, max_attempts=len(faults)), cache, ["a"])
    assert answers == [None] and client.counts.failed_by_kind == {kind: 1} and len(cache) == 0


def test_the_cache_never_holds_an_empty_reply(tmp_path):
    cache = CompletionCache(tmp_path / "c.sqlite")
    with pytest.raises(ValueError, match="empty reply"):
        cache.put("k", "m", {}, " \n")
    # A blank row left by an older version reads as missing and is replaced by the next answer.
    cache._db.execute("INSERT INTO completions VALUES ('k', 'm', '{}', '', 0)")
    assert cache.get("k") is None
    cache.put("k", "m", {}, "answer")
    cache.put("k", "m", {}, "a later answer")  # a real answer is kept
    assert cache.get("k") == "answer" and len(cache) == 1


def test_an_endpoint_down_on_the_last_attempt_stops_the_run(tmp_path):
    with StubServer() as stub:
        config = _config(stub, max_attempts=3, role="teacher")
    # The server is gone now: every attempt is refused.
    cache = CompletionCache(tmp_path / "c.sqlite")
    with pytest.raises(EndpointUnreachable) as raised:
        _ask(config, cache, ["a", "b"])
    message = str(raised.value)
    assert f"teacher endpoint {stub.base_url} (model 'teacher') is down: 3 attempt(s) at one request failed" in message
    assert "Cannot connect to host" in message and str(cache.path) in message


class _GatewayDown(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_start_up_check(tmp_path):
    with StubServer() as stub:
        asyncio.run(check_reachable(_config(stub)))  # answers: returns
        assert stub.received == []  # and asked nothing
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), _GatewayDown)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        config = EndpointConfig(f"http://127.0.0.1:{gateway.server_address[1]}/v1", "m", connect_timeout_s=2.0)
        with pytest.raises(EndpointUnreachable, match="answered HTTP 503"):
            asyncio.run(check_reachable(config))
    finally:
        gateway.shutdown()
        gateway.server_close()


def test_a_connection_dropped_on_every_attempt_also_stops_the_run(tmp_path):
    """A tunnel or proxy whose backend is gone accepts the connection and closes it unanswered."""
    with StubServer(faults=lambda key, attempt: "drop") as stub:
        with pytest.raises(EndpointUnreachable, match="the last with ServerDisconnectedError"):
            _ask(_config(stub, max_attempts=2), CompletionCache(tmp_path / "c.sqlite"), ["a"])
        assert stub.attempts.most_common(1)[0][1] == 2
