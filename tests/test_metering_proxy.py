"""The metering proxy (issue 15): usage read off the wire, per-call settlement, refusal, secrecy.

Pure parts (``core.wire_usage``, ``core.metering``) get property tests: any byte split of a
stream reads the same, forged numbers never lower a bill, the ledger never admits past its
limit. The proxy itself runs on 127.0.0.1 against the local model stand-in.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loop_runtime.adapters.agents.metered import bill, metered
from loop_runtime.adapters.metering_proxy import UPSTREAM_AUTH, UPSTREAM_DOWN, UPSTREAM_ERRORS, MeteringProxy
from loop_runtime.core.metering import CallLedger, refusal
from loop_runtime.core.wire_usage import MAX_TOKENS, Reading, SseSplitter, UsageReader, dialect_of
from loop_runtime.ports import AgentRequest, AgentResult, Permission, Usage
from tests.fakes.model_server import ModelServer, _sse, anthropic_events, responses_events

KEY = "sk-ant-proxy-test-0123456789abcdef"
AU = {"input_tokens": 1000, "output_tokens": 200, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 500}


def anthropic_stream(usage: dict[str, Any] = AU) -> bytes:
    return b"".join(_sse(n, d) for n, d in anthropic_events({"text": "hello there", "usage": usage}, "m"))


def responses_stream(usage: dict[str, Any]) -> bytes:
    return b"".join(_sse(n, d) for n, d in responses_events({"text": "hi", "usage": usage}, "m"))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def read(dialect: Any, chunks: list[bytes], streaming: bool = True) -> Reading:
    reader = UsageReader(dialect, streaming=streaming)
    for c in chunks:
        reader.feed(c)
    return reader.finish()


# --------------------------------------------------------------------------- SSE framing


events_st = st.lists(st.tuples(st.sampled_from(["message_start", "ping", "x"]),
                               st.lists(st.text(st.characters(blacklist_categories=("Cs",),
                                                              blacklist_characters="\r\n"), max_size=20),
                                        min_size=1, max_size=3)), min_size=1, max_size=6)


@given(events=events_st, eol=st.sampled_from(["\n", "\r\n", "\r"]), cuts=st.lists(st.integers(0, 10_000)))
def test_sse_events_are_the_same_whatever_the_byte_split(events: list[tuple[str, list[str]]], eol: str,
                                                         cuts: list[int]) -> None:
    """Any chunking (including between \\r and \\n, or inside a UTF-8 character) yields the same events."""
    text = "".join(f": comment{eol}event: {name}{eol}" + "".join(f"data: {d}{eol}" for d in data) + eol
                   for name, data in events)
    raw = text.encode()
    splitter = SseSplitter()
    got: list[tuple[str, str]] = []
    for chunk in split(raw, cuts):
        got += splitter.feed(chunk)
    got += splitter.close()
    assert got == [(name, "\n".join(data)) for name, data in events]


@given(cuts=st.lists(st.integers(0, 100_000), max_size=30))
def test_anthropic_usage_is_exact_whatever_the_byte_split(cuts: list[int]) -> None:
    raw = anthropic_stream()
    reading = read("anthropic", split(raw, cuts))
    assert reading.complete and reading.usage == Usage(input=1000, output=200, cache_write=300, cache_read=500)


@given(cuts=st.lists(st.integers(0, 100_000), max_size=30))
def test_responses_usage_is_exact_whatever_the_byte_split(cuts: list[int]) -> None:
    raw = responses_stream({"input_tokens": 1500, "input_tokens_details": {"cached_tokens": 500},
                            "output_tokens": 300})
    reading = read("responses", split(raw, cuts))
    assert reading.complete and reading.usage == Usage(input=1000, output=300, cache_read=500)


def test_chat_stream_usage_chunk_and_done_marker() -> None:
    chunks = [{"choices": [{"delta": {"content": "hi"}}]},
              {"choices": [], "usage": {"prompt_tokens": 900, "completion_tokens": 40,
                                        "prompt_tokens_details": {"cached_tokens": 100}}}]
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    assert read("chat", [raw]).usage == Usage(input=800, output=40, cache_read=100)


def test_gemini_usage_last_metadata_wins_in_sse_and_json_array() -> None:
    first = {"candidates": [], "usageMetadata": {"promptTokenCount": 100}}
    last = {"candidates": [], "usageMetadata": {"promptTokenCount": 1200, "cachedContentTokenCount": 200,
                                                "candidatesTokenCount": 30, "thoughtsTokenCount": 20,
                                                "totalTokenCount": 1250}}
    want = Usage(input=1000, output=50, cache_read=200)
    sse = b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in (first, last))
    assert read("gemini", [sse]).usage == want
    assert read("gemini", [json.dumps([first, last]).encode()], streaming=False).usage == want
    assert read("gemini", [json.dumps(last).encode()], streaming=False).usage == want


def test_dialects_by_path_and_free_endpoints() -> None:
    assert dialect_of("POST", "/v1/messages") == "anthropic"
    assert dialect_of("POST", "/v1/messages/count_tokens") is None
    assert dialect_of("POST", "/v1/chat/completions") == "chat"
    assert dialect_of("POST", "/v1/responses") == "responses"
    assert dialect_of("POST", "/v1/responses/compact") == "responses"
    assert dialect_of("POST", "/v1beta/models/gemini-2.5-pro:streamGenerateContent") == "gemini"
    assert dialect_of("POST", "/v1beta/models/gemini-2.5-pro:countTokens") is None
    assert dialect_of("GET", "/v1/models") is None


# --------------------------------------------------------------------------- forged usage

forged_value = st.one_of(st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=False),
                         st.text(max_size=5), st.none(), st.booleans(), st.lists(st.integers(), max_size=2))


@given(start=st.dictionaries(st.sampled_from(list(AU)), forged_value, max_size=4),
       delta=st.dictionaries(st.sampled_from(list(AU)), forged_value, max_size=4))
def test_forged_anthropic_usage_never_reads_negative_or_overflows(start: dict[str, Any],
                                                                 delta: dict[str, Any]) -> None:
    """Whatever a hostile upstream claims, every count is an int in [0, MAX_TOKENS]; a negative,
    non-numeric or absurd final value is flagged as suspect."""
    raw = (_sse("message_start", {"type": "message_start", "message": {"id": "m", "usage": start}})
           + _sse("message_delta", {"type": "message_delta", "usage": {"output_tokens": 1, **delta}}))
    reading = read("anthropic", [raw])
    for value in (reading.usage.input, reading.usage.output, reading.usage.cache_write, reading.usage.cache_read):
        assert isinstance(value, int) and 0 <= value <= MAX_TOKENS
    final = {k: v for k, v in {**start, "output_tokens": 1, **delta}.items() if v is not None}
    bad = [v for v in final.values()
           if isinstance(v, (bool, str, list)) or (isinstance(v, (int, float)) and (v < 0 or v >= MAX_TOKENS))]
    if bad:
        assert reading.suspect


def test_cached_subset_larger_than_total_never_goes_negative() -> None:
    body = json.dumps({"usage": {"prompt_tokens": 10, "completion_tokens": 5,
                                 "prompt_tokens_details": {"cached_tokens": 10**6}}}).encode()
    usage = read("chat", [body], streaming=False).usage
    assert usage.input == 0 and usage.cache_read == 10**6  # over-count rather than under-count


def test_missing_usage_is_charged_the_remaining_reservation() -> None:
    """A 2xx model call whose usage never came (absent, or a cut stream) settles fail-closed."""
    ledger = CallLedger(limit=10_000)
    assert ledger.admit()
    ledger.settle("anthropic", 200, read("anthropic", [anthropic_stream()]))  # 2,000 exact
    assert ledger.admit()
    cut = anthropic_stream()[:300]  # message_start only: input seen, final delta lost
    record = ledger.settle("anthropic", 200, read("anthropic", [cut]))
    assert not record.exact and ledger.spent == 10_000 and not ledger.exact
    assert not ledger.admit() and ledger.refused == 1


@given(calls=st.lists(st.tuples(st.integers(0, 5000), st.sampled_from([200, 200, 400, 500])), max_size=30),
       limit=st.integers(1, 40_000))
def test_ledger_never_admits_a_call_once_the_reservation_is_spent(calls: list[tuple[int, int]], limit: int) -> None:
    ledger = CallLedger(limit)
    spent = 0
    for tokens, status in calls:
        admitted = ledger.admit()
        assert admitted == (spent < limit)
        if admitted:
            ledger.settle("chat", status, Reading(Usage(input=tokens), complete=True))
            spent += tokens
        assert ledger.spent == spent
    assert ledger.refused == sum(1 for _ in range(len(calls))) - len(ledger.calls)


def test_refusals_are_api_shaped_and_not_retryable() -> None:
    for dialect, key in (("anthropic", "type"), ("chat", "error"), ("responses", "error"), ("gemini", "error")):
        status, body = refusal(dialect, "spent")  # type: ignore[arg-type]
        assert status == 400 and key in body and "spent" in json.dumps(body)


# --------------------------------------------------------------------------- the proxy on the wire


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=30) as c:
        return c.post(url, json=body, headers=headers or {})


async def _with_proxy(upstream: str, limit: int, fn: Any, **kw: Any) -> tuple[Any, MeteringProxy, list[Any]]:
    log: list[Any] = []
    async with MeteringProxy(upstream, limit, log=log.append, **kw) as proxy:
        out = await asyncio.to_thread(fn, proxy)
    return out, proxy, log


def with_proxy(upstream: str, limit: int, fn: Any, **kw: Any) -> tuple[Any, MeteringProxy, list[Any]]:
    return asyncio.run(_with_proxy(upstream, limit, fn, **kw))


def test_streamed_answer_passes_through_byte_for_byte_and_is_metered() -> None:
    with ModelServer([{"text": "hello there", "usage": AU}] * 2) as server:
        direct = post(f"{server.base_url}/v1/messages", {"stream": True})
        out, proxy, log = with_proxy(server.base_url, 100_000,
                                     lambda p: post(f"{p.base_url}/v1/messages", {"stream": True}))
    strip = [line for line in direct.content.split(b"\n") if b"msg_" not in line]
    assert [line for line in out.content.split(b"\n") if b"msg_" not in line] == strip  # ids are random
    assert out.headers["content-type"] == "text/event-stream"
    assert proxy.usage == Usage(input=1000, output=200, cache_write=300, cache_read=500)
    assert [e["type"] for e in log] == ["proxy.call"] and log[0]["exact"] is True


def test_streamed_chunks_arrive_before_the_answer_ends() -> None:
    """Streaming is real: the first event reaches the client while the upstream is still answering."""
    import socket
    import threading
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    release = threading.Event()

    def slow_upstream() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
        conn.sendall(b"event: ping\ndata: {\"type\": \"ping\"}\n\n")
        release.wait(20)
        conn.sendall(b"data: [DONE]\n\n")
        conn.close()

    threading.Thread(target=slow_upstream, daemon=True).start()

    def client(proxy: MeteringProxy) -> float:
        start = time.monotonic()
        with httpx.Client(trust_env=False, timeout=30) as c, \
                c.stream("POST", f"{proxy.base_url}/v1/chat/completions", json={"stream": True}) as r:
            chunks = r.iter_raw()
            first = next(chunks)
            waited = time.monotonic() - start
            assert b"ping" in first
            release.set()
            list(chunks)
        return waited

    waited, proxy, _ = with_proxy(f"http://127.0.0.1:{listener.getsockname()[1]}", 10_000, client)
    assert release.is_set() and waited < 20


@pytest.mark.parametrize("prefix", ["", "x", "{s}x", "x{s}", "{short}", "{upper}", "{s}/..", "{s}%2F..",
                                    "{s}/%2e%2e"])
def test_requests_without_the_exact_secret_are_refused_and_never_forwarded(prefix: str) -> None:
    with ModelServer([{"text": "hi", "usage": AU}]) as server:
        def attack(p: MeteringProxy) -> int:
            seg = prefix.format(s=p.secret, short=p.secret[:-1], upper=p.secret.upper())
            return post(f"http://127.0.0.1:{p.port}/{seg}/v1/messages", {"stream": True}).status_code
        status, proxy, _ = with_proxy(server.base_url, 100_000, attack)
        assert status in (400, 404) and server.requests == [] and proxy.ledger.calls == []


def test_next_call_after_the_reservation_is_refused_at_the_network() -> None:
    with ModelServer([{"text": "hi", "usage": AU}] * 5) as server:
        def calls(p: MeteringProxy) -> list[httpx.Response]:
            return [post(f"{p.base_url}/v1/messages", {"stream": True}) for _ in range(4)]
        out, proxy, log = with_proxy(server.base_url, 3_000, calls)
        served = len(server.requests)
    assert [r.status_code for r in out] == [200, 200, 400, 400]
    assert out[2].json()["error"]["type"] == "invalid_request_error" and "reservation" in out[2].text
    assert served == 2 and proxy.usage.total == 4_000 and proxy.stop_reason() == "budget"
    assert [e["type"] for e in log] == ["proxy.call", "proxy.call", "proxy.refused", "proxy.refused"]


def test_streamed_chat_requests_ask_for_the_usage_chunk() -> None:
    with ModelServer([{"text": "hi", "usage": {"prompt_tokens": 5, "completion_tokens": 2}}]) as server:
        with_proxy(server.base_url, 10_000, lambda p: post(f"{p.base_url}/v1/chat/completions",
                                                           {"model": "m", "stream": True, "messages": []}))
        body = server.bodies("/v1/chat/completions")[0]
    assert body["stream_options"] == {"include_usage": True} and body["model"] == "m"


def test_dead_upstream_is_a_clear_stop_and_costs_nothing() -> None:
    with ModelServer() as server:
        dead = server.base_url
    out, proxy, _ = with_proxy(dead, 10_000, lambda p: post(f"{p.base_url}/v1/messages", {"stream": True}))
    assert out.status_code == 502 and out.json()["error"]["type"] == "invalid_request_error"
    assert proxy.stop_reason() == UPSTREAM_DOWN and "cannot reach" in (proxy.stop_detail() or "")
    assert proxy.usage.total == 0


def test_rejected_key_and_repeated_5xx_are_stop_reasons() -> None:
    with ModelServer([{"status": 401}]) as server:
        out, proxy, _ = with_proxy(server.base_url, 10_000, lambda p: post(f"{p.base_url}/v1/messages", {}))
    assert out.status_code == 401 and proxy.stop_reason() == UPSTREAM_AUTH and proxy.usage.total == 0
    with ModelServer([{"status": 500, "repeat": 10}]) as server:
        out, proxy, _ = with_proxy(server.base_url, 10_000, lambda p: [
            post(f"{p.base_url}/v1/responses", {}).status_code for _ in range(4)])
    assert out == [500] * 4 and proxy.stop_reason() == UPSTREAM_ERRORS and "4 times" in (proxy.stop_detail() or "")


def test_keys_and_the_secret_never_reach_the_call_log(tmp_path: Path) -> None:
    """Keys in headers and in the query (Gemini's ?key=) are forwarded but never logged."""
    request = AgentRequest(role="implementer", prompt="p", cwd=str(tmp_path), permission=Permission.READ_ONLY,
                           token_limit=2_500, transcript_dir=str(tmp_path / "t"))

    async def go(upstream: str) -> tuple[str, list[httpx.Response]]:
        async with metered(request, upstream, secrets=[KEY]) as proxy:
            def calls() -> list[httpx.Response]:
                return [post(f"{proxy.base_url}/v1/messages?key={KEY}", {"stream": True},
                             headers={"x-api-key": KEY, "authorization": f"Bearer {KEY}"}) for _ in range(3)]
            out = await asyncio.to_thread(calls)
        bill(AgentResult(text="", usage=Usage()), proxy, Usage(input=1))  # closes the log after the cross-check
        return proxy.secret, out

    with ModelServer([{"text": "hi", "usage": AU}] * 3) as server:
        secret, out = asyncio.run(go(server.base_url))
        forwarded = server.requests[0]
    assert forwarded["headers"].get("x-api-key") == KEY and forwarded["path"].endswith(f"key={KEY}")
    (log_file,) = (tmp_path / "t").glob("proxy-implementer-*.jsonl")
    text = log_file.read_text()
    assert KEY not in text and secret not in text and "key=" not in text
    kinds = [json.loads(line)["type"] for line in text.splitlines()]
    assert kinds == ["proxy.call", "proxy.call", "proxy.refused", "proxy.disagreement"]
    assert out[2].status_code == 400


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(usage=st.fixed_dictionaries({k: st.integers(0, 10**7) for k in AU}))
def test_metered_usage_equals_what_the_stand_in_reported(usage: dict[str, int]) -> None:
    with ModelServer([{"text": "x", "usage": usage}]) as server:
        _, proxy, _ = with_proxy(server.base_url, 10**9, lambda p: post(f"{p.base_url}/v1/messages",
                                                                         {"stream": True}))
    assert proxy.usage == Usage(input=usage["input_tokens"], output=usage["output_tokens"],
                                cache_write=usage["cache_creation_input_tokens"],
                                cache_read=usage["cache_read_input_tokens"])


# --------------------------------------------------------------------------- a hostile CLI

HOSTILE = r'''#!{python}
"""A 'CLI' that lies about its usage and ignores the proxy's refusals: it calls forever."""
import json, os, sys, urllib.request, urllib.error
base = os.environ["ANTHROPIC_BASE_URL"]
def call():
    req = urllib.request.Request(base + "/v1/messages", data=b'{{"stream": true}}', method="POST",
                                 headers={{"content-type": "application/json", "x-api-key": os.environ["ANTHROPIC_API_KEY"]}})
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except urllib.error.HTTPError:
        pass  # refused: ignore it and go on
call()
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False, "num_turns": 1, "result": "all good",
                  "usage": {{"input_tokens": 1, "output_tokens": 1}}}}), flush=True)
while True:
    call()
'''


def test_a_cli_that_lies_and_ignores_refusals_is_billed_the_truth_and_killed(tmp_path: Path) -> None:
    """Claims 2 tokens after a 2,000-token call, then hammers the proxy: the refused calls never reach
    the upstream, the run halts on budget with the metered usage, and the disagreement is logged."""
    import sys

    from loop_runtime.adapters.agents import ClaudeCliBackend
    from tests.fakes.fake_cli import live_processes_in

    script = tmp_path / "hostile-cli"
    script.write_text(HOSTILE.format(python=sys.executable))
    script.chmod(0o755)
    wt = tmp_path / "wt"
    wt.mkdir()
    req = AgentRequest(role="implementer", prompt="p", cwd=str(wt.resolve()), permission=Permission.READ_ONLY,
                       token_limit=1_500, timeout_s=60, transcript_dir=str(tmp_path / "t"),
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    with ModelServer([{"text": "hi", "usage": AU}] * 10) as server:
        backend = ClaudeCliBackend(binary=str(script), env={"ANTHROPIC_API_KEY": KEY,
                                                            "ANTHROPIC_BASE_URL": server.base_url})
        res = asyncio.run(backend.run(req))
        served = server.served
    assert served == 1
    assert (res.status, res.stop_reason) == ("halted", "budget")
    assert res.usage.total == 2_000  # the truth, not the 2 tokens it claimed
    (log,) = (tmp_path / "t").glob("proxy-implementer-*.jsonl")
    kinds = [json.loads(line)["type"] for line in log.read_text().splitlines()]
    assert kinds[0] == "proxy.call" and "proxy.refused" in kinds and kinds[-1] == "proxy.disagreement"
    assert KEY not in log.read_text()
    assert live_processes_in(wt.resolve()) == []


@settings(max_examples=8, deadline=None)
@given(cuts=st.lists(st.integers(0, 5000), min_size=5, max_size=60))
def test_usage_is_exact_when_the_upstream_writes_at_odd_byte_boundaries(cuts: list[int]) -> None:
    """A real socket upstream flushing the SSE stream in arbitrary pieces (mid-line, mid-\\r\\n)."""
    import socket
    import threading
    import time

    raw = anthropic_stream().replace(b"\n", b"\r\n")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def upstream() -> None:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
        for piece in split(raw, cuts):
            conn.sendall(piece)
            time.sleep(0.001)
        conn.close()
        listener.close()

    threading.Thread(target=upstream, daemon=True).start()
    out, proxy, _ = with_proxy(f"http://127.0.0.1:{listener.getsockname()[1]}", 10_000,
                               lambda p: post(f"{p.base_url}/v1/messages", {"stream": True}))
    assert out.content == raw  # unchanged, byte for byte
    assert proxy.usage == Usage(input=1000, output=200, cache_write=300, cache_read=500)
    assert proxy.ledger.exact


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/embeddings", "/v1/messages/batches", "/v1/complete",
                                  "/v1beta/models/g:embedContent", "/v1/messages/", "/v1/responses/x"])
def test_posts_the_proxy_cannot_meter_are_refused_never_forwarded(path: str) -> None:
    with ModelServer([{"text": "hi", "usage": AU}]) as server:
        out, proxy, log = with_proxy(server.base_url, 10_000, lambda p: post(f"{p.base_url}{path}", {"x": 1}))
        assert server.requests == []
    assert out.status_code == 403 and log == [{"type": "proxy.blocked", "path": path}]


def test_free_token_counts_and_reads_pass_uncharged() -> None:
    with ModelServer() as server:
        out, proxy, _ = with_proxy(server.base_url, 10_000, lambda p: [
            post(f"{p.base_url}/v1/messages/count_tokens", {}).status_code,
            httpx.get(f"{p.base_url}/v1/models", trust_env=False).status_code])
    assert out == [200, 200] and proxy.ledger.calls == []


def test_an_oversized_request_body_is_refused_before_it_is_buffered() -> None:
    from loop_runtime.adapters import metering_proxy

    with ModelServer([{"text": "hi", "usage": AU}]) as server:
        def big(p: MeteringProxy) -> list[int]:
            blob = b"x" * (metering_proxy.REQUEST_LIMIT + 1)
            with httpx.Client(trust_env=False, timeout=60) as c:
                declared = c.post(f"{p.base_url}/v1/messages", content=blob).status_code
                streamed = c.post(f"{p.base_url}/v1/messages", content=iter([blob[:1 << 20]] * 33)).status_code
            return [declared, streamed]
        out, proxy, _ = with_proxy(server.base_url, 10_000, big)
        assert server.requests == []
    assert out == [413, 413] and proxy.ledger.calls == []
