"""A local model stand-in: Anthropic Messages, OpenAI Responses and OpenAI Chat on 127.0.0.1.

The real Claude Code CLI (``ANTHROPIC_BASE_URL``) and the real Codex CLI (a custom
provider in ``$CODEX_HOME/config.toml``) send their model calls here, so tests drive
the real clients end to end with no network and no key. Each test scripts the turns
the "model" answers, in order, one turn per model request:

    {"text": "hello", "usage": {...}}                        a text answer
    {"tool_use": {"name": "Write", "input": {...}}, "usage": {...}}   a tool call
    {"status": 500}  /  {"status": 429, "retry_after": 0}   an HTTP error (no usage)

Any turn may add ``"delay": seconds`` (answer late) and ``"repeat": n`` (serve it n times).
Chat turns may also use ``"tool_calls": [...]`` (several calls), ``"raw_arguments"`` in a call
(arguments sent verbatim, e.g. invalid JSON) and ``"no_usage": true`` (omit ``usage``).

``usage`` is written in the wire vocabulary of the API the turn is served on, so a
test states exactly the numbers the provider reported:

    Anthropic  {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}
    Responses  {"input_tokens", "input_tokens_details": {"cached_tokens"}, "output_tokens"}
    Chat       {"prompt_tokens", "completion_tokens", "prompt_tokens_details": {"cached_tokens"}}

A turn may carry ``"text"`` and ``"tool_use"`` together (text first). When the script
runs out the server answers with ``exhausted_turn`` (a plain "done." text with zero
usage by default) and counts it in ``exhausted``, so a test can assert it was not
reached. Every request is recorded in ``requests`` (path, headers, JSON body).

Gemini (``…:streamGenerateContent?alt=sse`` / ``…:generateContent``) turns use ``usage`` in Gemini's
``usageMetadata`` vocabulary; a Chat Completions request with ``"stream": true`` is answered as
``chat.completion.chunk`` events (the usage chunk only with ``stream_options.include_usage``).

Event shapes follow the providers' streaming references:
Anthropic https://docs.anthropic.com/en/api/messages-streaming (message_start,
content_block_start/delta/stop, message_delta, message_stop; ``input_json_delta`` for
tool input); OpenAI https://platform.openai.com/docs/api-reference/responses-streaming
(response.created, response.output_item.added/done, response.output_text.delta,
response.completed with ``usage``); Chat Completions object
https://platform.openai.com/docs/api-reference/chat/object.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Turn = dict[str, Any]

DEFAULT_EXHAUSTED: Turn = {"text": "done."}


class ModelServer:
    """A scripted model endpoint in a background thread; use as a context manager."""

    def __init__(self, turns: Sequence[Mapping[str, Any]] | None = None, *, exhausted_turn: Turn | None = None,
                 model: str = "stand-in-model") -> None:
        self._turns: list[Turn] = [copy.deepcopy(dict(t)) for t in (turns or [])]
        self._lock = threading.Lock()
        self.exhausted_turn = exhausted_turn or dict(DEFAULT_EXHAUSTED)
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.exhausted = 0
        self.served = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ script
    def add(self, *turns: Mapping[str, Any]) -> None:
        with self._lock:
            self._turns.extend(copy.deepcopy(dict(t)) for t in turns)

    def next_turn(self, body: Any = None) -> Turn:
        """The next scripted turn. A turn with ``"when": "<text>"`` answers only a request whose JSON
        body contains that text (e.g. a CLI's own title-generation call), whenever it comes; turns
        without ``when`` answer the others in order."""
        text = json.dumps(body) if body is not None else ""
        with self._lock:
            matched = [i for i, t in enumerate(self._turns) if t.get("when") and t["when"] in text]
            plain = [i for i, t in enumerate(self._turns) if not t.get("when")]
            pick = matched[0] if matched else (plain[0] if plain else None)
            if pick is not None:
                turn = self._turns.pop(pick)
                repeat = int(turn.get("repeat", 1))
                if repeat > 1:
                    self._turns.insert(pick, {**turn, "repeat": repeat - 1})
                self.served += 1
                return turn
            self.exhausted += 1
            return copy.deepcopy(self.exhausted_turn)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._turns)

    def record(self, path: str, headers: dict[str, str], body: Any) -> None:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body})

    def bodies(self, path_prefix: str) -> list[Any]:
        with self._lock:
            return [r["body"] for r in self.requests if r["path"].startswith(path_prefix)]


# ---------------------------------------------------------------------- wire formats


def _sse(event: str, data: dict[str, Any] | str) -> bytes:
    """One server-sent event; an empty ``event`` name sends a bare ``data:`` line (OpenAI chat, Gemini)."""
    payload = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


def anthropic_events(turn: Turn, model: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The SSE events of one Anthropic streaming message answering ``turn``."""
    usage = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0, **turn.get("usage", {})}
    start_usage = {**usage, "output_tokens": min(1, usage["output_tokens"])}
    msg_id = f"msg_{uuid.uuid4().hex[:24]}"
    yield "message_start", {"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": start_usage}}
    index = 0
    if turn.get("text"):
        yield "content_block_start", {"type": "content_block_start", "index": index,
                                      "content_block": {"type": "text", "text": ""}}
        yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                      "delta": {"type": "text_delta", "text": turn["text"]}}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
        index += 1
    tool = turn.get("tool_use")
    if tool:
        tool_id = f"toolu_{uuid.uuid4().hex[:24]}"
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": {
            "type": "tool_use", "id": tool_id, "name": tool["name"], "input": {}}}
        yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
            "type": "input_json_delta", "partial_json": json.dumps(tool.get("input", {}))}}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
                            "usage": usage}
    yield "message_stop", {"type": "message_stop"}


def responses_events(turn: Turn, model: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The SSE events of one OpenAI Responses stream answering ``turn``."""
    raw = turn.get("usage", {})
    inp = int(raw.get("input_tokens", 0))
    out = int(raw.get("output_tokens", 0))
    usage = {"input_tokens": inp, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": inp + out, **raw}
    resp_id = f"resp_{uuid.uuid4().hex[:24]}"
    base = {"id": resp_id, "object": "response", "model": model, "output": []}
    yield "response.created", {"type": "response.created", "response": {**base, "status": "in_progress"}}
    items: list[dict[str, Any]] = []
    if turn.get("text"):
        items.append({"type": "message", "id": f"msg_{uuid.uuid4().hex[:16]}", "role": "assistant",
                      "status": "completed",
                      "content": [{"type": "output_text", "text": turn["text"], "annotations": []}]})
    tool = turn.get("tool_use")
    if tool:
        call_id = f"call_{uuid.uuid4().hex[:16]}"
        if "custom_input" in tool:  # freeform tools such as codex's apply_patch
            items.append({"type": "custom_tool_call", "id": f"ctc_{uuid.uuid4().hex[:16]}", "status": "completed",
                          "call_id": call_id, "name": tool["name"], "input": tool["custom_input"]})
        else:
            items.append({"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:16]}", "status": "completed",
                          "call_id": call_id, "name": tool["name"],
                          "arguments": json.dumps(tool.get("input", {}))})
    for i, item in enumerate(items):
        yield "response.output_item.added", {"type": "response.output_item.added", "output_index": i,
                                             "item": {**item, "status": "in_progress"}}
        if item["type"] == "message":
            yield "response.output_text.delta", {"type": "response.output_text.delta", "item_id": item["id"],
                                                 "output_index": i, "content_index": 0,
                                                 "delta": item["content"][0]["text"]}
        yield "response.output_item.done", {"type": "response.output_item.done", "output_index": i, "item": item}
    yield "response.completed", {"type": "response.completed",
                                 "response": {**base, "status": "completed", "output": items, "usage": usage}}


def chat_completion(turn: Turn, model: str) -> dict[str, Any]:
    """A non-streaming Chat Completions object answering ``turn``."""
    raw = turn.get("usage", {})
    prompt = int(raw.get("prompt_tokens", 0))
    completion = int(raw.get("completion_tokens", 0))
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, **raw}
    message: dict[str, Any] = {"role": "assistant", "content": turn.get("text")}
    calls = turn.get("tool_calls") or ([turn["tool_use"]] if turn.get("tool_use") else [])
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{uuid.uuid4().hex[:16]}", "type": "function",
             "function": {"name": c["name"],
                          "arguments": c["raw_arguments"] if "raw_arguments" in c else json.dumps(c.get("input", {}))}}
            for c in calls]
    answer = {"id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion", "created": 0, "model": model,
              "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
              "usage": usage}
    if turn.get("no_usage"):  # some servers omit it
        del answer["usage"]
    return answer


def chat_chunks(turn: Turn, model: str, include_usage: bool) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of one streamed Chat Completions answer.

    The final usage chunk (empty ``choices``) is sent only when the request asked for it
    (``stream_options.include_usage``), as OpenAI does.
    """
    whole = chat_completion(turn, model)
    base = {"id": whole["id"], "object": "chat.completion.chunk", "created": 0, "model": model}
    message = whole["choices"][0]["message"]
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    if message.get("content"):
        yield {**base, "choices": [{"index": 0, "delta": {"content": message["content"]}, "finish_reason": None}]}
    for i, call in enumerate(message.get("tool_calls") or ()):
        yield {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{**call, "index": i}]},
                                    "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": whole["choices"][0]["finish_reason"]}]}
    if include_usage and "usage" in whole:
        yield {**base, "choices": [], "usage": whole["usage"]}


def gemini_chunks(turn: Turn, model: str) -> Iterator[dict[str, Any]]:
    """The ``GenerateContentResponse`` chunks of one streamed Gemini answer (usage on the last one).

    ``usage`` is written as Gemini's ``usageMetadata`` (``promptTokenCount``, ``candidatesTokenCount``,
    ``cachedContentTokenCount``, ``thoughtsTokenCount``); ``totalTokenCount`` is filled in.
    """
    raw = dict(turn.get("usage", {}))
    meta = {"promptTokenCount": 0, "candidatesTokenCount": 0, **raw}
    meta.setdefault("totalTokenCount", int(meta["promptTokenCount"]) + int(meta["candidatesTokenCount"])
                    + int(meta.get("thoughtsTokenCount", 0)))
    parts: list[dict[str, Any]] = []
    if turn.get("text"):
        parts.append({"text": turn["text"]})
    calls = turn.get("tool_calls") or ([turn["tool_use"]] if turn.get("tool_use") else [])
    for call in calls:
        parts.append({"functionCall": {"name": call["name"], "args": call.get("input", {})}})
    first = {"promptTokenCount": meta["promptTokenCount"], "totalTokenCount": meta["promptTokenCount"]}
    yield {"candidates": [{"content": {"parts": parts[:1] or [{"text": ""}], "role": "model"}, "index": 0}],
           "usageMetadata": first, "modelVersion": model}
    yield {"candidates": [{"content": {"parts": parts[1:] or [{"text": ""}], "role": "model"},
                           "finishReason": "STOP", "index": 0}],
           "usageMetadata": meta, "modelVersion": model}


# ---------------------------------------------------------------------- HTTP handler


def _handler_for(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # close after each answer: SSE streams end with the connection

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
            return

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            server.record(self.path, dict(self.headers), None)
            if self.path.split("?")[0].rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": [{"id": server.model, "object": "model"}],
                                 "models": []})
                return
            self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_HEAD(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = raw.decode(errors="replace")
            path = self.path.split("?")[0]
            server.record(self.path, dict(self.headers), body)
            if path.endswith("/messages/count_tokens"):
                self._json(200, {"input_tokens": 1})
                return
            gemini = path.endswith((":generateContent", ":streamGenerateContent"))
            if path.endswith(":countTokens"):
                self._json(200, {"totalTokens": 1})
                return
            if not (path.endswith("/messages") or path.endswith("/responses")
                    or path.endswith("/chat/completions") or gemini):
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            turn = server.next_turn(body)
            if turn.get("delay"):
                time.sleep(float(turn["delay"]))
            if "status" in turn:
                self._error(turn)
                return
            model = body.get("model", server.model) if isinstance(body, dict) else server.model
            if path.endswith("/messages"):
                self._stream(anthropic_events(turn, model))
            elif path.endswith("/responses"):
                self._stream(responses_events(turn, model))
            elif gemini:
                model = path.rsplit("/", 1)[-1].split(":")[0]
                chunks = list(gemini_chunks(turn, model))
                if path.endswith(":generateContent"):
                    self._json(200, chunks[-1])
                else:
                    self._stream(("", c) for c in chunks)
            elif isinstance(body, dict) and body.get("stream"):
                options = body.get("stream_options")
                include = isinstance(options, dict) and options.get("include_usage") is True
                self._stream([*(("", c) for c in chat_chunks(turn, model, include)), ("", "[DONE]")])
            else:
                self._json(200, chat_completion(turn, model))

        def _error(self, turn: Turn) -> None:
            status = int(turn["status"])
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if "retry_after" in turn:
                self.send_header("Retry-After", str(turn["retry_after"]))
            payload = json.dumps({"type": "error", "error": {
                "type": "rate_limit_error" if status == 429 else "api_error",
                "message": turn.get("message", f"stand-in error {status}")}}).encode()
            self.send_header("Content-Length", str(len(payload)))
            try:
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                return

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a test stopped it)
                return

        def _stream(self, events: Iterable[tuple[str, dict[str, Any] | str]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            try:
                for name, data in events:
                    self.wfile.write(_sse(name, data))
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler
