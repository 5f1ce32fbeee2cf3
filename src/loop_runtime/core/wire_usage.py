"""Token usage read off the wire: one model call's response bytes → the provider's usage.

Why a parser of our own on the raw bytes: the metering proxy (``adapters/metering_proxy``)
sees every model call an agent CLI makes, in whichever of four dialects, streamed or not,
and must know what each call cost without trusting the CLI's own report. This module is
pure (bytes in, values out, no I/O): the proxy feeds it the response chunks exactly as they
arrive — split at any byte — and asks for the usage when the response ends.

Dialects and where the usage is (each normalised to ``ports.Usage``, whose four fields are
disjoint, so ``Usage.total`` is every token the provider processed):

- ``anthropic`` (``POST …/messages``): SSE ``message_start.message.usage`` then
  ``message_delta.usage`` (cumulative; its fields replace the start's); or a JSON body's
  ``usage``. Fields are already disjoint.
- ``chat`` (``POST …/chat/completions``): the streamed chunk carrying ``usage`` (sent when
  the request asked ``stream_options.include_usage``; the proxy asks for it) or a JSON
  body's ``usage``. ``prompt_tokens_details.cached_tokens`` is a subset of ``prompt_tokens``.
- ``responses`` (``POST …/responses``): ``response.completed`` (or ``response.incomplete`` /
  ``response.failed``) ``.response.usage``, or a JSON body's ``usage``;
  ``input_tokens_details.cached_tokens`` is a subset of ``input_tokens``.
- ``gemini`` (``…:generateContent`` / ``…:streamGenerateContent``): ``usageMetadata`` on each
  chunk, cumulative, the last one wins (SSE with ``alt=sse``, else a JSON array or object).
  ``cachedContentTokenCount`` is a subset of ``promptTokenCount``; thoughts are billed as output.

Untrusted numbers: a usage value that is not a non-negative integer counts as 0 and marks
the reading ``suspect`` (the proxy logs it); each value is clamped to ``MAX_TOKENS`` so a
forged "10^40 tokens" settles as "far over any reservation", not as an overflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..ports import Usage

Dialect = Literal["anthropic", "chat", "responses", "gemini"]
DIALECTS: tuple[Dialect, ...] = ("anthropic", "chat", "responses", "gemini")
MAX_TOKENS = 2**48  # far above any real call; far below SQLite's 2**63
BODY_LIMIT = 64 * 1024 * 1024  # a non-streamed body larger than this is not parsed (usage unknown)
FREE_SUFFIXES = ("/messages/count_tokens", ":countTokens")


def dialect_of(method: str, path: str) -> Dialect | None:
    """The model-call dialect of a request, or None for a call that is not a billed model call.

    ``path`` is the upstream path (no query). Token-count endpoints are free.
    """
    if method.upper() != "POST" or path.endswith(FREE_SUFFIXES):
        return None
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith(("/responses", "/responses/compact")):  # codex compacts a long thread with the latter
        return "responses"
    if path.endswith((":generateContent", ":streamGenerateContent")):
        return "gemini"
    return None


def unmetered_post(method: str, path: str) -> bool:
    """A POST the proxy cannot meter (not a model call nor a free token count): it is refused.

    Why refuse rather than pass: an endpoint we cannot read the usage of (legacy completions,
    embeddings, batches) would be a way around the reservation for a hostile agent.
    """
    return method.upper() == "POST" and dialect_of(method, path) is None and not path.endswith(FREE_SUFFIXES)


@dataclass(frozen=True)
class Reading:
    """What one response told us: its usage, whether a final usage was seen, and any oddity."""

    usage: Usage
    complete: bool
    suspect: tuple[str, ...] = ()


class _Ints:
    """Collects untrusted integers, remembering which ones were not plain non-negative ints."""

    def __init__(self) -> None:
        self.suspect: list[str] = []

    def get(self, raw: Any, key: str) -> int:
        if not isinstance(raw, Mapping) or key not in raw or raw[key] is None:
            return 0
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
            self.suspect.append(f"{key}={str(value)[:40]!r}")
            return 0
        if value < 0:
            self.suspect.append(f"{key}={value}")
            return 0
        if value >= MAX_TOKENS:
            self.suspect.append(f"{key} clamped from {str(value)[:40]}")
            return MAX_TOKENS
        if isinstance(value, float) and not value.is_integer():
            self.suspect.append(f"{key}={value}")
        return int(value)


def anthropic_usage(raw: Mapping[str, Any], ints: _Ints) -> Usage:
    return Usage(input=ints.get(raw, "input_tokens"), output=ints.get(raw, "output_tokens"),
                 cache_write=ints.get(raw, "cache_creation_input_tokens"),
                 cache_read=ints.get(raw, "cache_read_input_tokens"))


def _subset(total: int, *parts: int) -> int:
    """``total`` minus its reported subsets; when the parts claim more than the total, 0 (never negative)."""
    return max(0, total - sum(parts))


def chat_usage(raw: Mapping[str, Any], ints: _Ints) -> Usage:
    prompt = ints.get(raw, "prompt_tokens")
    cached = ints.get(raw.get("prompt_tokens_details"), "cached_tokens")
    return Usage(input=_subset(prompt, cached), output=ints.get(raw, "completion_tokens"), cache_read=cached)


def responses_usage(raw: Mapping[str, Any], ints: _Ints) -> Usage:
    inp = ints.get(raw, "input_tokens")
    cached = ints.get(raw.get("input_tokens_details"), "cached_tokens")
    return Usage(input=_subset(inp, cached), output=ints.get(raw, "output_tokens"), cache_read=cached)


def gemini_usage(raw: Mapping[str, Any], ints: _Ints) -> Usage:
    prompt = ints.get(raw, "promptTokenCount")
    cached = ints.get(raw, "cachedContentTokenCount")
    return Usage(input=_subset(prompt, cached) + ints.get(raw, "toolUsePromptTokenCount"),
                 output=ints.get(raw, "candidatesTokenCount") + ints.get(raw, "thoughtsTokenCount"),
                 cache_read=cached)


_USAGE_KEYS = {
    "anthropic": ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"),
    "chat": ("prompt_tokens", "completion_tokens"),
    "responses": ("input_tokens", "output_tokens"),
    "gemini": ("promptTokenCount", "candidatesTokenCount", "totalTokenCount"),
}


def _has_usage(dialect: Dialect, raw: Any) -> bool:
    """A usage object is one with at least one of the dialect's count fields (else it is missing)."""
    return isinstance(raw, Mapping) and any(k in raw for k in _USAGE_KEYS[dialect])


class SseSplitter:
    """Incremental server-sent-events parser: bytes at any boundary in, complete events out.

    Lines end in ``\\n``, ``\\r\\n`` or ``\\r`` (a ``\\r`` at the end of a chunk waits for the next
    byte to know which); a blank line ends an event; ``data:`` lines join with ``\\n``;
    comments (``:``) are ignored. Follows the WHATWG event-stream grammar.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        self._buf += chunk
        out: list[tuple[str, str]] = []
        while True:
            cut = _line_end(self._buf)
            if cut is None:
                return out
            line, self._buf = self._buf[:cut[0]], self._buf[cut[1]:]
            self._line(line.decode("utf-8", errors="replace"), out)

    def close(self) -> list[tuple[str, str]]:
        """The last event when the stream ended without its blank line (a cut connection)."""
        out: list[tuple[str, str]] = []
        if self._buf:
            self._line(self._buf.rstrip(b"\r").decode("utf-8", errors="replace"), out)
            self._buf = b""
        self._line("", out)
        return out

    def _line(self, line: str, out: list[tuple[str, str]]) -> None:
        if line == "":
            if self._data:
                out.append((self._event or "message", "\n".join(self._data)))
            self._event, self._data = "", []
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value


def _line_end(buf: bytes) -> tuple[int, int] | None:
    """(end of the first line, start of the next), or None while the line is incomplete."""
    n, r = buf.find(b"\n"), buf.find(b"\r")
    if r == -1 and n == -1:
        return None
    if r == -1 or (n != -1 and n < r):
        return n, n + 1
    if r + 1 == len(buf):
        return None  # "\r" may be the first half of "\r\n"
    return (r, r + 2) if buf[r + 1:r + 2] == b"\n" else (r, r + 1)


class UsageReader:
    """The usage of one model call, read incrementally from its response body.

    ``streaming``: the response is an event stream (``Content-Type: text/event-stream``);
    otherwise the body is buffered (up to ``BODY_LIMIT``) and parsed as JSON at ``finish``.
    """

    def __init__(self, dialect: Dialect, *, streaming: bool) -> None:
        self.dialect = dialect
        self.streaming = streaming
        self._sse = SseSplitter() if streaming else None
        self._body: list[bytes] = []
        self._size = 0
        self._ints = _Ints()
        self._usage: Usage | None = None
        self._complete = False
        self._anthropic: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> None:
        if self._sse is not None:
            for _event, data in self._sse.feed(chunk):
                self._data(data)
        elif self._size <= BODY_LIMIT:
            self._size += len(chunk)
            self._body.append(chunk)

    def finish(self) -> Reading:
        """The reading once the body ended (a cut stream gives what was seen, ``complete`` False)."""
        if self._sse is not None:
            for _event, data in self._sse.close():
                self._data(data)
        elif self._size <= BODY_LIMIT:
            try:
                doc = json.loads(b"".join(self._body) or b"null")
            except ValueError:
                doc = None
            for item in (doc if isinstance(doc, list) else [doc]):  # gemini streams as a JSON array
                self._object(item, final=True)
        return Reading(self._usage or Usage(), self._complete, tuple(self._ints.suspect))

    @property
    def usage(self) -> Usage:
        """The usage seen so far (for a live view of a long stream)."""
        return self._usage or Usage()

    def _data(self, data: str) -> None:
        if data.strip() == "[DONE]":
            return
        try:
            obj = json.loads(data)
        except ValueError:
            return
        self._object(obj, final=False)

    def _object(self, obj: Any, *, final: bool) -> None:
        if not isinstance(obj, Mapping):
            return
        d = self.dialect
        if d == "anthropic":
            self._anthropic_event(obj, final)
        elif d == "chat":
            if _has_usage("chat", obj.get("usage")):
                self._usage, self._complete = chat_usage(obj["usage"], self._ints), True
        elif d == "responses":
            response = obj.get("response") if not final else obj
            if not final and obj.get("type") not in ("response.completed", "response.incomplete", "response.failed"):
                return
            raw = response.get("usage") if isinstance(response, Mapping) else None
            if _has_usage("responses", raw):
                self._usage, self._complete = responses_usage(raw, self._ints), True
        elif _has_usage("gemini", obj.get("usageMetadata")):
            self._usage, self._complete = gemini_usage(obj["usageMetadata"], self._ints), True

    def _anthropic_event(self, obj: Mapping[str, Any], final: bool) -> None:
        if final:  # a non-streamed Message
            if _has_usage("anthropic", obj.get("usage")):
                self._usage, self._complete = anthropic_usage(obj["usage"], self._ints), True
            return
        kind = obj.get("type")
        if kind == "message_start" and isinstance(obj.get("message"), Mapping):
            raw = obj["message"].get("usage")
            if isinstance(raw, Mapping):
                self._anthropic = {k: v for k, v in raw.items() if v is not None}
                self._usage = anthropic_usage(self._anthropic, _Ints())  # provisional; re-read at the delta
        elif kind == "message_delta" and _has_usage("anthropic", obj.get("usage")):
            self._anthropic.update({k: v for k, v in obj["usage"].items() if v is not None})
            self._usage, self._complete = anthropic_usage(self._anthropic, self._ints), True


__all__ = ["BODY_LIMIT", "DIALECTS", "MAX_TOKENS", "Dialect", "Reading", "SseSplitter", "UsageReader",
           "dialect_of", "unmetered_post"]
