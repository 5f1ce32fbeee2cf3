"""The metering proxy: every model call an agent CLI makes goes through us, is metered and capped.

Why at the network: a CLI's own usage report is an estimate while it runs (Claude streams
``output_tokens: 1`` until the end), absent for some CLIs (Grok prints none) and forgeable by
a hostile agent. The proxy sees the provider's own numbers for every call — including the
calls a CLI makes on its own (title generation, routing) — and can refuse the next call the
moment the run's reservation is spent, which no flag of any CLI can do.

One proxy per agent run (each run holds its own reservation, ``AgentRequest.token_limit``):
- listens on ``127.0.0.1`` on a random port, only for requests whose first path segment is a
  fresh random secret (``http://127.0.0.1:<port>/<secret>``): another local process cannot
  spend the run's reservation or reach the upstream through us (wrong secret → 404, nothing
  forwarded, compared in constant time);
- maps its base URL one-for-one onto the upstream base URL (``<base>/v1/messages`` →
  ``<upstream>/v1/messages``), headers (API keys) and body passed through untouched — except
  ``Accept-Encoding: identity`` (so the bytes can be read) and, for a streamed Chat
  Completions request, ``stream_options.include_usage: true`` (else the stream carries no usage);
- streams the response back chunk by chunk as it arrives (server-sent events pass through
  unchanged) while ``core.wire_usage.UsageReader`` reads the usage off the same bytes;
- settles each call in a ``core.metering.CallLedger`` and, once the reservation is spent,
  answers the next model call with an API-shaped 400 the CLI does not retry, and reports
  ``stop_reason() == "budget"`` so the backend stops the process group;
- refuses (403) a POST to any other endpoint than a model call it can meter or a free token
  count — legacy completions, embeddings or batches would otherwise be a way around the cap;
- reports an unreachable upstream and a rejected key (401/403) at once, and a run of
  consecutive 5xx answers, as stop reasons, so a CLI's own minutes-long retry loop is cut short.

Nothing secret is logged: the call log (``proxy-<role>-<stamp>.jsonl`` beside the transcript)
holds the upstream path without its query (Gemini keys may travel as ``?key=``), the status,
the usage and timings — never headers, never the secret — and goes through redaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets as secrets_mod
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ..core.metering import CallLedger, CallRecord, refusal
from ..core.wire_usage import Dialect, UsageReader, dialect_of, unmetered_post
from ..errors import AgentNotStarted
from ..ports import Usage

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"})
RESPONSE_DROP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})
UPSTREAM_DOWN = "upstream-unreachable"
UPSTREAM_AUTH = "auth-failed"
UPSTREAM_ERRORS = "upstream-error"
MAX_CONSECUTIVE_5XX = 4
REQUEST_LIMIT = 32 * 1024 * 1024  # a model request (a long conversation with images) stays far below
STOP_REASONS = {
    UPSTREAM_DOWN: "cannot reach the model API at {host}",
    UPSTREAM_AUTH: "the model API at {host} rejected the credentials (HTTP {status})",
    UPSTREAM_ERRORS: "the model API at {host} kept failing (HTTP {status}, {count} times in a row)",
}


@dataclass(frozen=True)
class ProxyCall:
    """A metered call as logged: no headers, no query, no secret."""

    record: CallRecord
    method: str
    path: str
    ms: float


def with_include_usage(body: bytes) -> bytes:
    """A streamed Chat Completions body asking for the final usage chunk (unchanged otherwise)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if not isinstance(doc, dict) or doc.get("stream") is not True:
        return body
    options = doc.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return body
    doc["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return json.dumps(doc, ensure_ascii=False).encode()


class MeteringProxy:
    """A per-run metering proxy in the caller's event loop; use as ``async with``.

    ``upstream``: the real API base URL the CLI would have used. ``limit``: the run's
    reservation in tokens. ``log``: receives one dict per event (already free of secrets).
    """

    def __init__(self, upstream: str, limit: int, *, log: Callable[[Mapping[str, Any]], None] | None = None,
                 read_timeout_s: float = 600.0, connect_timeout_s: float = 10.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AgentNotStarted(f"model API base URL must be http(s)://host[/path], got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.host = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.ledger = CallLedger(limit)
        self.calls: list[ProxyCall] = []
        self._log = log
        self._secret = secrets_mod.token_urlsafe(24)
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._stop: str | None = None
        self._stop_detail: str | None = None
        self._consecutive_5xx = 0
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self.port = 0

    # ------------------------------------------------------------------ public

    @property
    def base_url(self) -> str:
        """What the CLI gets in place of the upstream base URL (carries the secret)."""
        return f"http://127.0.0.1:{self.port}/{self._secret}"

    @property
    def secret(self) -> str:
        return self._secret

    @property
    def usage(self) -> Usage:
        return self.ledger.usage

    def stop_reason(self) -> str | None:
        """``budget`` once a call was refused; an upstream failure reason; else None (poll this)."""
        if self.ledger.refused:
            return "budget"
        return self._stop

    def stop_detail(self) -> str | None:
        """A one-line explanation of an upstream stop reason."""
        return self._stop_detail

    async def __aenter__(self) -> MeteringProxy:
        import httpx
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import Route

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it an event stream's small writes wait on delayed ACKs (40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=methods)])
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None, log_level="critical",
                                timeout_graceful_shutdown=1, ws="none")
        self._server = _QuietServer(config)
        connect, read = self._timeouts
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(read, connect=connect), follow_redirects=False,
                                         limits=httpx.Limits(max_keepalive_connections=8))
        self._task = asyncio.ensure_future(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                sock.close()
                await self._client.aclose()
                raise AgentNotStarted(f"the metering proxy did not start: {self._task.exception()}")
            await asyncio.sleep(0.005)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 3)
            except (TimeoutError, Exception):  # a stuck connection must not hold the run
                self._server.force_exit = True
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
        if self._client is not None:
            await self._client.aclose()

    # ------------------------------------------------------------------ request handling

    async def _handle(self, request: Any) -> Any:
        from starlette.responses import JSONResponse, Response

        raw = request.scope.get("raw_path") or request.scope.get("path", "").encode()
        segment, _, rest = raw.decode("latin-1").split("?")[0].lstrip("/").partition("/")
        if not hmac.compare_digest(segment.encode(), self._secret.encode()):
            return Response(status_code=404)
        path = "/" + rest
        if any(part in ("..", ".") for part in unquote(path).split("/")) or "%2f" in path.lower():
            return Response(status_code=400)  # stays under the upstream base path: no dot segments
        dialect = dialect_of(request.method, path)
        if unmetered_post(request.method, path):
            self._emit({"type": "proxy.blocked", "path": path})
            _, payload = refusal(None, f"loop-runtime proxy: {path} is not a model endpoint it can meter")
            return JSONResponse(payload, status_code=403)
        body = await _read_body(request)
        if body is None:
            _, payload = refusal(dialect, f"loop-runtime proxy: request body over {REQUEST_LIMIT:,} bytes")
            return JSONResponse(payload, status_code=413)
        if dialect is not None and not self.ledger.admit():
            status, payload = refusal(dialect, self.ledger.refusal_message())
            self._emit({"type": "proxy.refused", "path": path, "dialect": dialect, "spent": self.ledger.spent,
                        "limit": self.ledger.limit})
            return JSONResponse(payload, status_code=status)
        if dialect == "chat":
            body = with_include_usage(body)
        query = request.scope.get("query_string", b"").decode("latin-1")
        url = self.upstream + path + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        headers.append(("accept-encoding", "identity"))
        started = time.perf_counter()
        try:
            upstream = await self._client.send(
                self._client.build_request(request.method, url, headers=headers, content=body), stream=True)
        except Exception as exc:  # noqa: BLE001 - every transport failure becomes an API-shaped 502
            return self._unreachable(dialect, path, exc, started)
        self._watch_status(upstream.status_code)
        streaming = "text/event-stream" in upstream.headers.get("content-type", "")
        reader = UsageReader(dialect, streaming=streaming) if dialect is not None else None
        out_headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in RESPONSE_DROP]
        return _Relay(self, upstream, reader, dialect, request.method, path, started, out_headers)

    def _unreachable(self, dialect: Dialect | None, path: str, exc: Exception, started: float) -> Any:
        import httpx
        from starlette.responses import JSONResponse

        never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol))
        if dialect is not None:
            # Not sent: nothing was spent. Sent and lost: we cannot know → fail closed (200, no reading).
            record = self.ledger.settle(dialect, 502 if never_sent else 200, None)
            self._record(record, "POST", path, started)
        if never_sent and self._stop is None:
            self._stop = UPSTREAM_DOWN
            self._stop_detail = STOP_REASONS[UPSTREAM_DOWN].format(host=self.host) + f" ({type(exc).__name__})"
        message = f"loop-runtime proxy: upstream {self.host} failed: {type(exc).__name__}"
        self._emit({"type": "proxy.upstream_error", "path": path, "error": type(exc).__name__})
        status, payload = refusal(dialect, message)
        return JSONResponse(payload, status_code=502)

    def _watch_status(self, status: int) -> None:
        if status in (401, 403) and self._stop is None:
            self._stop = UPSTREAM_AUTH
            self._stop_detail = STOP_REASONS[UPSTREAM_AUTH].format(host=self.host, status=status)
        if status >= 500:
            self._consecutive_5xx += 1
            if self._consecutive_5xx >= MAX_CONSECUTIVE_5XX and self._stop is None:
                self._stop = UPSTREAM_ERRORS
                self._stop_detail = STOP_REASONS[UPSTREAM_ERRORS].format(
                    host=self.host, status=status, count=self._consecutive_5xx)
        elif status < 400:
            self._consecutive_5xx = 0

    def _record(self, record: CallRecord, method: str, path: str, started: float) -> None:
        call = ProxyCall(record, method, path, (time.perf_counter() - started) * 1000)
        self.calls.append(call)
        self._emit({"type": "proxy.call", "n": record.n, "method": method, "path": path,
                    "dialect": record.dialect, "status": record.status, "usage": record.usage.as_dict(),
                    "exact": record.exact, "note": record.note or None, "ms": round(call.ms, 2),
                    "spent": self.ledger.spent, "limit": self.ledger.limit})

    def _emit(self, event: Mapping[str, Any]) -> None:
        if self._log is not None:
            with contextlib.suppress(Exception):  # logging must never break a model call
                self._log(event)


async def _read_body(request: Any) -> bytes | None:
    """The request body, or None past ``REQUEST_LIMIT`` (a hostile agent must not exhaust our memory)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > REQUEST_LIMIT:
        return None
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > REQUEST_LIMIT:
            return None
        parts.append(chunk)
    return b"".join(parts)


class _Relay:
    """An ASGI response that streams the upstream body through, chunk by chunk, and meters it.

    Written against ASGI directly (not ``StreamingResponse``) so the settle step runs exactly
    once, whether the body ended, the upstream broke or the client went away.
    """

    def __init__(self, proxy: MeteringProxy, upstream: Any, reader: UsageReader | None, dialect: Dialect | None,
                 method: str, path: str, started: float, headers: Sequence[tuple[str, str]]) -> None:
        self.proxy, self.upstream, self.reader, self.dialect = proxy, upstream, reader, dialect
        self.method, self.path, self.started, self.headers = method, path, started, headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": self.upstream.status_code,
                        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]})
            async for chunk in self._chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.upstream.aclose()
            if self.dialect is not None and self.reader is not None:
                record = self.proxy.ledger.settle(self.dialect, self.upstream.status_code, self.reader.finish())
                self.proxy._record(record, self.method, self.path, self.started)

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.upstream.aiter_raw():
                if self.reader is not None:
                    self.reader.feed(chunk)
                yield chunk
        except Exception as exc:  # noqa: BLE001 - the upstream broke mid-body: end the body, settle fail-closed
            self.proxy._emit({"type": "proxy.upstream_error", "path": self.path, "error": type(exc).__name__})


def _quiet_server_class() -> type:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn without its signal handlers: the proxy lives inside the runtime's own process."""

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            yield

    return QuietServer


def _QuietServer(config: Any) -> Any:  # noqa: N802 - reads like the class it builds
    return _quiet_server_class()(config)


__all__ = ["MeteringProxy", "ProxyCall", "UPSTREAM_AUTH", "UPSTREAM_DOWN", "UPSTREAM_ERRORS", "with_include_usage"]
