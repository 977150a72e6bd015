"""The model proxy (:mod:`taskmill.proxy`): the key never reaches the agent, the proxy adds
it on the way out, forwards to the configured upstream only, passes streams through
unchanged, and counts the tokens itself.

In-process tests drive a :class:`ModelProxy` in front of the scripted model server; a mill
test runs ``taskmill run`` with an exec agent that calls the proxy with urllib; the tests
marked ``agents`` run the real CLIs through it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mill_helpers import MillRepo, agent_script
from taskmill.config_schema import check_config
from taskmill.proxy import ModelProxy, PriceTable
from taskmill.proxy.usage import ResponseMeter, read_usage
from taskmill.testing.fake_model import FakeModelServer

REAL_KEY = "sk-real-key-0b1d2c3e"
AGENT_KEY = "sk-agent-tried-this"


def fp(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def side(input_tokens: int, output_tokens: int, **cache: int) -> dict[str, Any]:
    """A script whose tool-less requests are answered with these figures."""
    return {"side": {"text": "Hello from the fake model.",
                     "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                               **cache}},
            "models": ["claude-sonnet-4-5"]}


@pytest.fixture
def fake() -> Iterator[FakeModelServer]:
    with FakeModelServer(side(1000, 40, cache_read_tokens=200, cache_creation_tokens=50)) as s:
        yield s


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ModelProxy]:
    with ModelProxy(tmp_path / "run" / "proxy-test.sock") as p:
        yield p


# One model call per API family: (family, path, body, stream?)
CALLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "anthropic": ("anthropic", "/v1/messages",
                  {"model": "claude-sonnet-4-5", "max_tokens": 50,
                   "messages": [{"role": "user", "content": "hi"}]}),
    "responses": ("openai", "/v1/responses", {"model": "gpt-5", "input": "hi"}),
    "chat": ("openai", "/v1/chat/completions",
             {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}),
    "gemini": ("gemini", "/v1beta/models/gemini-2.5-pro:generateContent",
               {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
}
AGENT_AUTH = {"x-api-key": AGENT_KEY, "authorization": f"Bearer {AGENT_KEY}",
              "x-goog-api-key": AGENT_KEY, "api-key": AGENT_KEY}
FAMILY_HEADER = {"anthropic": "x-api-key", "openai": "authorization",
                 "gemini": "x-goog-api-key"}


def call(url: str, wire: str, *, stream: bool, headers: dict[str, str] | None = None,
         query: str = "") -> httpx.Response:
    _family, path, body = CALLS[wire]
    if wire == "gemini" and stream:
        path, query = path.replace(":generateContent", ":streamGenerateContent"), "alt=sse"
    elif stream:
        body = {**body, "stream": True}
    target = url + path + (f"?{query}" if query else "")
    return httpx.post(target, json=body, headers=headers or {}, timeout=10)


# -- the key ----------------------------------------------------------------------------------


@pytest.mark.parametrize("wire", list(CALLS))
def test_the_real_key_is_added_and_the_agents_credentials_dropped(
        wire: str, fake: FakeModelServer, proxy: ModelProxy) -> None:
    family = CALLS[wire][0]
    route = proxy.register(agent="bot", upstream=fake.url, key=REAL_KEY, family=family)  # type: ignore[arg-type]
    answer = call(route.base_url, wire, stream=False, headers=AGENT_AUTH,
                  query=f"key={AGENT_KEY}&keep=1")
    assert answer.status_code == 200, answer.text
    (entry,) = fake.requests
    # the upstream saw exactly one credential: the real key, in the family's header
    assert entry["credentials"] == {FAMILY_HEADER[family]: fp(REAL_KEY)}
    assert entry["query"] == {"keep": "1"}
    assert AGENT_KEY not in json.dumps(entry)


def test_unknown_or_expired_token_is_refused(fake: FakeModelServer, proxy: ModelProxy) -> None:
    base = f"http://127.0.0.1:{proxy.port}"
    for url in (f"{base}/t/not-a-token/v1/messages", f"{base}/v1/messages", f"{base}/t//x",
                f"{base}/"):
        answer = httpx.post(url, json={}, timeout=10)
        assert answer.status_code == 403, (url, answer.text)
        assert "unknown or expired turn token" in answer.json()["error"]["message"]
    route = proxy.register(agent="bot", upstream=fake.url, key=REAL_KEY, family="anthropic")
    assert call(route.base_url, "anthropic", stream=False).status_code == 200
    assert proxy.unregister(route.token) is not None
    assert call(route.base_url, "anthropic", stream=False).status_code == 403
    assert len(fake.requests) == 1


def raw_request(port: int, target: bytes, host: bytes = b"127.0.0.1") -> bytes:
    """An HTTP/1.1 request with a request target no client library would send."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST " + target + b" HTTP/1.1\r\nHost: " + host +
                     b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_only_the_upstream_host_is_reachable(fake: FakeModelServer, proxy: ModelProxy) -> None:
    script = side(1, 1)
    with FakeModelServer(script) as other:
        route = proxy.register(agent="bot", upstream=fake.url + "/v1", key=REAL_KEY,
                               family="openai")
        prefix = f"/t/{route.token}".encode()
        other_netloc = f"127.0.0.1:{other.port}".encode()
        for rest in (b"//" + other_netloc + b"/v1/models", b"/http://" + other_netloc + b"/",
                     b"/@" + other_netloc + b"/v1/models", b"/../../" + other_netloc,
                     b"/%2F%2F" + other_netloc + b"/v1/models", b"/v1/models#@" + other_netloc):
            raw_request(proxy.port, prefix + rest, host=other_netloc)
        # the agent may also use an absolute-form request target naming the other host
        raw_request(proxy.port, b"http://" + other_netloc + prefix + b"/v1/models")
        assert other.requests == []
    assert fake.requests, "the requests went to the configured upstream"
    assert {e["headers"]["host"] for e in fake.requests} == {f"127.0.0.1:{fake.port}"}


# -- streams ----------------------------------------------------------------------------------


class ChunkServer:
    """An upstream that answers every request with ``chunks`` of a chunked SSE body, each
    sent only once the test released it (so a proxy that buffers would never deliver the
    first chunk)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.release = [threading.Event() for _ in chunks]
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # the proxy may cut the connection
            self._answer()

    def _answer(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            for chunk, release in zip(self.chunks, self.release, strict=True):
                release.wait(10)
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.sendall(b"0\r\n\r\n")

    def close(self) -> None:
        for event in self.release:
            event.set()
        self.sock.close()


SSE_EVENTS = [
    b'event: message_start\r\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-5",'
    b'"usage":{"input_tokens":321,"cache_read_input_tokens":7,"output_tokens":1}}}\r\n\r\n',
    b": a comment line\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\","
    b"\"delta\":{\"text\":\"h\xc3\xa9llo\"}}\n\n",
    b'event: message_delta\ndata: {"type":"message_delta",\ndata: "usage":{"output_tokens":55}}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
]


def test_a_stream_passes_through_byte_for_byte_as_it_comes(proxy: ModelProxy) -> None:
    whole = b"".join(SSE_EVENTS)
    # cut mid-line, mid-UTF-8 character and mid-event
    cuts = [0, 37, 200, 201, len(whole) - 30, len(whole)]
    chunks = [whole[a:b] for a, b in itertools.pairwise(cuts)]
    upstream = ChunkServer(chunks)
    try:
        route = proxy.register(agent="bot", upstream=f"http://127.0.0.1:{upstream.port}",
                               key=REAL_KEY, family="anthropic")
        received = b""
        with httpx.stream("POST", route.base_url + "/v1/messages", json={"stream": True},
                          timeout=10) as answer:
            assert answer.headers["content-type"] == "text/event-stream"
            pieces = answer.iter_raw()
            for i, event in enumerate(upstream.release):
                event.set()  # the next chunk is sent only now: it must arrive before the end
                while len(received) < sum(map(len, chunks[:i + 1])):
                    received += next(pieces)
            received += b"".join(pieces)
        assert received == whole
    finally:
        upstream.close()
    counted = proxy.unregister(route.token)
    assert counted is not None
    assert counted.totals().to_json() == {"input_tokens": 321, "output_tokens": 55,
                                          "cache_read_tokens": 7, "cache_write_tokens": 0}


def test_stop_cuts_a_stream_in_flight(tmp_path: Path) -> None:
    """The proxy stops with the run (Ctrl-C included) even while an answer is streaming."""
    upstream = ChunkServer([b"data: {}\n\n", b"data: {}\n\n"])
    proxy = ModelProxy(tmp_path / "proxy.sock").start()
    got: list[bytes] = []
    try:
        route = proxy.register(agent="bot", upstream=f"http://127.0.0.1:{upstream.port}",
                               key=REAL_KEY, family="openai")
        upstream.release[0].set()  # the first event comes, the second never does

        def read() -> None:
            with contextlib.suppress(httpx.HTTPError), httpx.stream(
                    "POST", route.base_url + "/v1/chat/completions", json={}, timeout=30) as a:
                for chunk in a.iter_raw():
                    got.append(chunk)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert wait_until(lambda: bool(got))
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 4
        reader.join(5)
        assert not reader.is_alive()
        assert not (tmp_path / "proxy.sock").exists()
    finally:
        proxy.stop()
        upstream.close()


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


@pytest.mark.parametrize("wire", list(CALLS))
def test_a_streamed_answer_is_unchanged(wire: str, fake: FakeModelServer,
                                        proxy: ModelProxy) -> None:
    """The fake model's own stream, through the proxy: every event intact (ids differ per
    call, so the events are compared with the ids the direct call had)."""
    route = proxy.register(agent="bot", upstream=fake.url, key=REAL_KEY,
                           family=CALLS[wire][0])  # type: ignore[arg-type]
    direct = call(fake.url, wire, stream=True).content
    through = call(route.base_url, wire, stream=True).content
    assert through.count(b"\n\n") == direct.count(b"\n\n") > 1
    assert len(through.splitlines()) == len(direct.splitlines())


# -- usage ------------------------------------------------------------------------------------

EXPECTED = {
    # Anthropic: input without the cache; cache reads and writes apart
    "anthropic": {"input_tokens": 1000, "output_tokens": 40, "cache_read_tokens": 200,
                  "cache_write_tokens": 50},
    # OpenAI and Gemini: cached input is part of the input (no cache writes reported)
    "responses": {"input_tokens": 1000, "output_tokens": 40, "cache_read_tokens": 200,
                  "cache_write_tokens": 0},
    "chat": {"input_tokens": 1000, "output_tokens": 40, "cache_read_tokens": 200,
             "cache_write_tokens": 0},
    "gemini": {"input_tokens": 1000, "output_tokens": 40, "cache_read_tokens": 200,
               "cache_write_tokens": 0},
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("wire", list(CALLS))
def test_usage_is_counted_from_the_answers(wire: str, stream: bool, fake: FakeModelServer,
                                           proxy: ModelProxy) -> None:
    route = proxy.register(agent="bot", upstream=fake.url, key=REAL_KEY,
                           family=CALLS[wire][0])  # type: ignore[arg-type]
    for _ in range(2):
        assert call(route.base_url, wire, stream=stream).status_code == 200
    counted = proxy.unregister(route.token)
    assert counted is not None and counted.requests == 2
    assert counted.totals().to_json() == {k: 2 * v for k, v in EXPECTED[wire].items()}
    assert counted.unread == 0


@pytest.mark.parametrize("wire", list(CALLS))
def test_usage_is_read_whatever_the_chunking(wire: str, fake: FakeModelServer) -> None:
    """A stream fed byte by byte (events cut anywhere) counts the same."""
    answer = call(fake.url, wire, stream=True)
    meter = ResponseMeter(answer.headers["content-type"])
    for i in range(len(answer.content)):
        meter.feed(answer.content[i:i + 1])
    counts = meter.close()
    assert counts is not None and counts.to_json() == EXPECTED[wire]


def test_read_usage_ignores_what_is_not_usage() -> None:
    assert read_usage({"type": "ping"}) is None
    assert read_usage({"type": "response.created", "response": {"usage": None}}) is None
    assert read_usage([1, 2]) is None
    found = read_usage({"type": "message_delta", "usage": {"output_tokens": -3,
                                                           "input_tokens": True}})
    assert found == ({}, False, None)  # negative and boolean figures are not counted


def test_cost_from_the_price_table_and_unknown_models() -> None:
    prices = PriceTable.from_config({"my-model": {"input": 1.0, "output": 2.0}})
    assert prices.find("claude-sonnet-4-5-20250929") == prices.find("claude-sonnet-4-5")
    assert prices.find("gpt-5.5") is None  # not a "gpt-5" snapshot
    assert prices.find("openai/my-model") is not None

    from taskmill.proxy.usage import Counts, TurnUsage

    usage = TurnUsage()
    usage.record(200, Counts(1_000_000, 100_000, 200_000, 0, input_includes_cache=True), "gpt-5")
    cost, unpriced = usage.cost(prices)
    # 800k uncached * 1.25 + 200k cached * 0.125 + 100k output * 10, per million
    assert cost == pytest.approx(1.0 + 0.025 + 1.0) and unpriced == []
    usage.record(200, Counts(10, 10), "mystery-model")
    cost, unpriced = usage.cost(prices)
    assert cost is None and unpriced == ["mystery-model"]
    assert "no price for model 'mystery-model'" in usage.to_json(prices)["cost_unknown"]


def test_config_takes_pricing_and_proxy_keys() -> None:
    base: dict[str, Any] = {"prefix": "tm"}
    assert check_config({**base, "pricing": {"m": {"input": 1, "output": 2.5}}}) == []
    assert any("[pricing]" in p and "output" in p
               for p in check_config({**base, "pricing": {"m": {"input": 1}}}))
    bot = {"adapter": "exec", "command": ["x"]}
    assert check_config({**base, "agents": {"bot": {**bot, "proxy": False}}}) == []
    problems = check_config({**base, "agents": {"bot": {**bot, "proxy": True}}})
    assert any("proxy = true needs base_url" in p for p in problems), problems
    problems = check_config({**base, "agents": {"bot": {
        **bot, "base_url": "http://127.0.0.1:1", "proxy_api": "mistral"}}})
    assert any("proxy_api" in p for p in problems), problems


# -- the mill ---------------------------------------------------------------------------------

KEY_ENV = "TM_PROXY_TEST_KEY"
PROXY_AGENT = r'''
import urllib.request
base = os.environ["TASKMILL_BASE_URL"]
key = os.environ["{key_env}"]
save("env.json", json.dumps(dict(os.environ)))
total = 0
for _ in range(2):
    req = urllib.request.Request(
        base + "/v1/messages", method="POST",
        data=json.dumps({{"model": "claude-sonnet-4-5", "max_tokens": 10, "stream": True,
                         "messages": [{{"role": "user", "content": "hi"}}]}}).encode(),
        headers={{"x-api-key": key, "content-type": "application/json"}})
    with urllib.request.urlopen(req, timeout=30) as answer:
        save("stream.txt", answer.read().decode())
(WT / "done.txt").write_text("done\n")
# the agent's own report is nonsense: the proxy's figures win
usage(input_tokens=987654321, output_tokens=-5, cost_usd=123.0)
'''


def test_the_attempt_counts_what_the_proxy_saw(tmp_path: Path) -> None:
    with FakeModelServer(side(1000, 40, cache_read_tokens=200)) as fake:
        bot = agent_script(tmp_path / "bot.py", PROXY_AGENT.format(key_env=KEY_ENV),
                           spy=tmp_path / "spy")
        repo = MillRepo(tmp_path, agents={"bot": {
            "adapter": "exec", "command": [bot], "base_url": fake.url,
            "api_key_env": KEY_ENV, "proxy_api": "anthropic", "pass_env": [KEY_ENV]}},
            run={"agent": "bot"})
        repo.create("tm-1")
        result = repo.run(env={KEY_ENV: REAL_KEY})
        logged = fake.requests
    assert result.returncode == 0, result.describe()
    repo.assert_all_landed_once(["tm-1"])
    (attempt,) = repo.attempts("tm-1")
    assert (attempt["input_tokens"], attempt["output_tokens"]) == (2000, 80), attempt
    assert attempt["cost_usd"] == pytest.approx((2000 * 3 + 200 * 2 * 0.3 + 80 * 15) / 1e6)
    assert attempt["model"] == "claude-sonnet-4-5"
    detail = attempt["detail"]
    assert detail["usage_source"] == "proxy"
    assert detail["agent_reported"]["input_tokens"] == 987654321
    assert detail["proxy"]["requests"] == 2 and "usage_error" not in detail
    # the key: at the model server, never in the agent's environment
    assert [e["credentials"] for e in logged] == [{"x-api-key": fp(REAL_KEY)}] * 2
    env = json.loads((tmp_path / "spy" / "env.json").read_text())
    assert REAL_KEY not in json.dumps(env)
    assert env[KEY_ENV] == "taskmill-proxy"
    assert env["TASKMILL_BASE_URL"].startswith("http://127.0.0.1:")
    assert "message_delta" in (tmp_path / "spy" / "stream.txt").read_text()
    # the route died with the turn; the run's socket with the run
    assert not list((repo.root / ".taskmill" / "run").glob("proxy-*.sock"))
    started = result.events_of("proxy_started")
    assert len(started) == 1
    answer = httpx.get(env["TASKMILL_BASE_URL"] + "/v1/models", timeout=5) \
        if _port_open(started[0]["port"]) else None
    assert answer is None or answer.status_code == 403


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_proxy_false_hands_the_key_to_the_agent(tmp_path: Path) -> None:
    body = 'save("key", os.environ["TASKMILL_BASE_URL"] + " " + os.environ["' + KEY_ENV + '"])\n' \
           '(WT / "done.txt").write_text("x")\n'
    bot = agent_script(tmp_path / "bot.py", body, spy=tmp_path / "spy")
    repo = MillRepo(tmp_path, agents={"bot": {
        "adapter": "exec", "command": [bot], "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": KEY_ENV, "proxy": False}}, run={"agent": "bot"})
    repo.create("tm-1")
    result = repo.run(env={KEY_ENV: REAL_KEY})
    assert result.returncode == 0, result.describe()
    assert (tmp_path / "spy" / "key").read_text() == f"http://127.0.0.1:9/v1 {REAL_KEY}"
    assert not result.events_of("proxy_started")


def test_a_key_on_the_command_line_is_refused(tmp_path: Path) -> None:
    """A table that would still hand the real key to the agent (here on its command line)
    fails the turn with a message, without running the agent."""
    bot = agent_script(tmp_path / "bot.py", 'save("ran", "yes")\n', spy=tmp_path / "spy")
    repo = MillRepo(tmp_path, agents={"bot": {
        "adapter": "exec", "command": [bot], "base_url": "http://127.0.0.1:9",
        "api_key_env": KEY_ENV, "args": ["--key", REAL_KEY]}},
        run={"agent": "bot", "max_iterations": 1})
    repo.create("tm-1")
    started = time.monotonic()
    result = repo.run(env={KEY_ENV: REAL_KEY})
    assert result.returncode == 1 and time.monotonic() - started < 60
    assert not (tmp_path / "spy" / "ran").exists()
    (attempt,) = repo.attempts("tm-1")
    assert "the model key would reach the agent through its command line" in \
        json.dumps(attempt["detail"])


# -- the real CLIs ----------------------------------------------------------------------------

PROXIED_AGENTS = ("claude", "codex", "gemini", "opencode")


def _files_with(root: Path, secret: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and secret in path.read_bytes():
                found.append(str(path))
        except OSError:
            continue
    return found


@pytest.mark.agents
@pytest.mark.parametrize("name", PROXIED_AGENTS)
def test_real_cli_through_the_proxy(name: str, tmp_path: Path) -> None:
    """The real CLI completes the task in the sandbox through the proxy: the key reaches the
    model server, never the agent; the tokens are the proxy's."""
    from agent_e2e_helpers import (
        GOOD_CALC,
        KEY_VALUE,
        E2ERepo,
        agent_table,
        done,
        report,
        require_agent,
        script,
        usage,
        write_calc,
    )

    binary = require_agent(name)
    lands = script([
        {"tool": "shell", "command": "env > envdump.txt", "usage": usage(700, 30)},
        write_calc(GOOD_CALC, (1000, 50)),
        done("Done.", (1100, 5)),
    ])
    with FakeModelServer(lands, log_path=tmp_path / "requests.ndjson") as server:
        # inside the default sandbox: network off but for the proxy (bridged to its socket)
        repo = E2ERepo(tmp_path, name, agent_table(name, binary, server.url), sandbox={})
        task_id = repo.create_task()
        result = repo.run("--turn-timeout", "240", "--max-iterations", "1")
        logged = server.requests
        info = report(repo, task_id, result, server)

    assert result.returncode == 0, info
    task = repo.show(task_id)
    assert task["status"] == "closed", info
    assert repo.on_target("calc.py") == GOOD_CALC

    # the key reached the model server (added by the proxy) on every call ...
    calls = [e for e in logged if "usage" in e["served"]]
    assert calls and all(fp(KEY_VALUE) in e["credentials"].values() for e in calls), info
    assert all(set(e["credentials"].values()) == {fp(KEY_VALUE)} for e in logged), info
    # ... and never the agent: not in its environment, not in its HOME or its worktree
    dump = repo.on_target("envdump.txt")
    assert KEY_VALUE not in dump and "taskmill-proxy" in dump, dump
    assert _files_with(repo.agent_home(), KEY_VALUE.encode()) == []
    assert _files_with(repo.root / ".taskmill" / "logs", KEY_VALUE.encode()) == []

    # the attempt's tokens are what the server reported, as the proxy counted them
    served = (sum(e["served"]["usage"]["input_tokens"] for e in calls),
              sum(e["served"]["usage"]["output_tokens"] for e in calls))
    (attempt,) = task["attempts"]
    assert (attempt["input_tokens"], attempt["output_tokens"]) == served, info
    detail = attempt["detail"]
    assert detail["usage_source"] == "proxy" and detail["proxy"]["requests"] >= len(calls)
    assert "agent_reported" in detail
    assert detail["sandbox"]["enabled"] is True, detail
