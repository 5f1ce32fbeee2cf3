"""OpenAI-compatible Chat Completions backend: a small tool-using agent loop we run ourselves.

Works against OpenAI and any server speaking ``POST {base_url}/chat/completions`` with
tools (vLLM, llama.cpp server, Ollama). Because we execute the tools, confinement is
ours: file tools go through ``file_tools.resolve_inside`` and ``run_command`` (offered
only at EDIT_WORKTREE) runs ``/bin/sh -c`` with the worktree as cwd, the engine's
scrubbed environment (never our API key), a 60 s timeout and truncated output.

Usage is exact: each response's ``usage`` is added up (``prompt_tokens`` minus
``prompt_tokens_details.cached_tokens`` → input, cached → cache_read,
``completion_tokens`` → output). A response without ``usage`` cannot be billed exactly,
so the run is then charged its full reservation (fail closed), and so is a run stopped
while a request is in flight (its tokens are spent but never reported).

429, 5xx and connection errors are retried with exponential backoff (tenacity,
honouring ``Retry-After``) inside the request's deadline, never past ``max_retries``.
Tool errors go back to the model as tool results; they never end the run.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...errors import AgentNotStarted, GateDenied
from ...ports import AgentRequest, AgentResult, EventSink, Permission, Sandbox, SandboxScope, StopCheck, Usage
from . import file_tools
from .metered import bill, metered, stop_with
from .process import (
    POLL_S,
    Transcript,
    UsageMeter,
    child_env,
    emit,
    fail_closed,
    int_field,
    redact,
    run_shell,
    summarize,
)

if TYPE_CHECKING:
    import httpx

KEY_HINT = "set OPENAI_API_KEY (or LOOP_RUNTIME_OPENAI_API_KEY)"
COMMAND_TIMEOUT_S = 60.0
TOOL_OUTPUT_CHARS = 20_000
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})

BASE_SYSTEM = ("You are a coding agent working inside one repository checkout. Use the tools to inspect and "
               "change files; every path is relative to the repository root. When you are done, answer with "
               "a short summary and no tool call.")


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required, "additionalProperties": False}}}


_PATH = {"type": "string", "description": "path relative to the repository root"}
READ_TOOLS = (
    _tool("read_file", "Read a text file.", {"path": _PATH}, ["path"]),
    _tool("list_files", "List files under a folder (default: the whole repository).", {"path": _PATH}, []),
    _tool("search", "Search file contents with a regular expression; returns path:line: text.",
          {"pattern": {"type": "string"}, "path": _PATH}, ["pattern"]),
)
EDIT_TOOLS = (
    _tool("write_file", "Create or overwrite a file with the given content.",
          {"path": _PATH, "content": {"type": "string"}}, ["path", "content"]),
    _tool("edit_file", "Replace one exact, unique occurrence of old with new in a file.",
          {"path": _PATH, "old": {"type": "string"}, "new": {"type": "string"}}, ["path", "old", "new"]),
    _tool("run_command", "Run a shell command in the repository root (60 s limit), e.g. the tests.",
          {"command": {"type": "string"}}, ["command"]),
)


def tool_schemas(permission: Permission, *, shell: bool = False) -> list[dict[str, Any]]:
    """The tools offered at a permission level: READ_ONLY gets read/list/search only.

    ``run_command`` (a shell, which no path check can confine) only with ``shell``: when the
    backend runs it inside an OS sandbox (``adapters.sandbox``).
    """
    tools = list(READ_TOOLS)
    if permission is Permission.EDIT_WORKTREE:
        tools += [t for t in EDIT_TOOLS if shell or t["function"]["name"] != "run_command"]
    return tools


def chat_usage(raw: Any) -> Usage:
    """Our usage from a Chat Completions ``usage`` (cached tokens are a subset of prompt tokens)."""
    prompt = int_field(raw, "prompt_tokens")
    cached = int_field(raw.get("prompt_tokens_details") if isinstance(raw, Mapping) else None, "cached_tokens")
    return Usage(input=max(0, prompt - cached), output=int_field(raw, "completion_tokens"), cache_read=cached)


def is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Halt(Exception):
    """Stop the loop now (budget, timeout, kill); ``in_flight`` when a request's tokens are unknown."""

    def __init__(self, reason: str, *, in_flight: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.in_flight = in_flight


class _Transient(Exception):
    """A retryable HTTP status; carries the server's Retry-After when given."""

    def __init__(self, status: int, message: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.retry_after = retry_after


class _Fatal(Exception):
    """A non-retryable API failure (bad request, bad key, unparseable answer)."""


@dataclass
class _Loop:
    """State of one agent loop."""

    request: AgentRequest
    meter: UsageMeter
    transcript: Transcript
    on_event: EventSink | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    changed: dict[str, None] = field(default_factory=dict)
    turns: int = 0
    missing_usage: int = 0
    spend_unknown: bool = False  # a response was lost after the request went out
    denials: list[str] = field(default_factory=list)  # calls the sandbox's shims refused


class OpenAIBackend:
    """Drives any OpenAI-compatible chat endpoint as an agent with worktree-confined tools."""

    name = "openai"

    def __init__(self, *, base_url: str, model: str, api_key: str | None = None, max_retries: int = 4,
                 transport: httpx.AsyncBaseTransport | None = None, sandbox: Sandbox | None = None) -> None:
        self.sandbox = sandbox
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key or os.environ.get("LOOP_RUNTIME_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not self.api_key and not is_loopback(self.base_url):
            raise AgentNotStarted(f"no API key for {self.base_url}: {KEY_HINT}")
        self.max_retries = max(0, max_retries)
        self.transport = transport

    @property
    def shell(self) -> bool:
        """``run_command`` is offered only when commands run inside an active sandbox."""
        return self.sandbox is not None and self.sandbox.active

    async def run(self, request: AgentRequest, *, stop: StopCheck | None = None,
                  on_event: EventSink | None = None) -> AgentResult:
        import httpx

        if not os.path.isdir(request.cwd):
            raise AgentNotStarted(f"agent working directory not found: {request.cwd}")
        started = time.monotonic()
        deadline = started + request.timeout_s
        transcript = Transcript(request.transcript_dir, request.role, [self.api_key or ""])
        loop = _Loop(request, UsageMeter(request.token_limit), transcript, on_event)
        system = "\n\n".join(p for p in (BASE_SYSTEM, request.system_prompt) if p)
        loop.messages = [{"role": "system", "content": system}, {"role": "user", "content": request.prompt}]
        emit(on_event, "agent.start", {"backend": "openai", "role": request.role,
                                       "model": request.model or self.model, "session": None})
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        if self.transport is not None:  # an in-process test transport: nothing goes over the network
            try:
                async with httpx.AsyncClient(transport=self.transport, headers=headers,
                                             timeout=httpx.Timeout(request.timeout_s, connect=10.0)) as client:
                    ending = await self._loop(client, loop, deadline, stop, self.base_url)
            finally:
                path = transcript.close()
            return self._finish(loop, ending, path=path, duration=time.monotonic() - started)
        try:
            async with metered(request, self.base_url, secrets=[self.api_key or ""], on_event=on_event) as proxy:
                async with httpx.AsyncClient(headers=headers, trust_env=False,
                                             timeout=httpx.Timeout(request.timeout_s, connect=10.0)) as client:
                    ending = await self._loop(client, loop, deadline, stop_with(proxy, stop), proxy.base_url)
        finally:
            path = transcript.close()
        result = self._finish(loop, ending, path=path, duration=time.monotonic() - started, quiet=True)
        cli_usage = None if loop.missing_usage or loop.spend_unknown else loop.meter.usage
        result = bill(result, proxy, cli_usage, on_event=on_event, backend="openai")
        emit(on_event, "agent.end", {"status": result.status, "stop_reason": result.stop_reason,
                                     "usage": result.usage.as_dict(), "error": result.error})
        return result

    async def _loop(self, client: httpx.AsyncClient, loop: _Loop, deadline: float,
                    stop: StopCheck | None, endpoint: str) -> tuple[str, str | None, str | None]:
        """Model call → tools → model call … ; returns (status, stop_reason, error)."""
        tools = tool_schemas(loop.request.permission, shell=self.shell)
        while True:
            if loop.meter.over():
                return "halted", "budget", _over_reservation(loop.request.token_limit)
            if loop.turns >= loop.request.max_turns:
                return "error", None, f"reached the maximum number of turns ({loop.request.max_turns})"
            body = {"model": loop.request.model or self.model, "messages": loop.messages, "tools": tools,
                    "tool_choice": "auto"}
            try:
                data = await self._call_with_retries(client, body, loop, deadline, stop, endpoint)
            except _Halt as halt:
                loop.spend_unknown = loop.spend_unknown or halt.in_flight
                return "halted", halt.reason, f"stopped ({halt.reason}) during a model call"
            except _Fatal as exc:
                return "error", None, str(exc)
            calls = self._take_response(loop, data)
            if not calls:
                return "ok", None, None
            if loop.meter.over():  # do not run tools whose results we could not afford to send back
                return "halted", "budget", _over_reservation(loop.request.token_limit)
            for call in calls:
                loop.messages.append(await self._run_tool(loop, call, deadline))

    # ------------------------------------------------------------------ HTTP

    async def _call_with_retries(self, client: httpx.AsyncClient, body: dict[str, Any], loop: _Loop,
                                 deadline: float, stop: StopCheck | None, endpoint: str) -> dict[str, Any]:
        import httpx
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_any, wait_exponential
        from tenacity.stop import stop_base

        backoff = wait_exponential(multiplier=0.5, min=0.2, max=20)

        def wait(state: Any) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = getattr(exc, "retry_after", None) or 0.0
            return max(backoff(state), float(hinted))

        class PastDeadline(stop_base):
            """Stop retrying when the next sleep would end past the deadline, or the budget is spent."""

            def __call__(self, state: Any) -> bool:
                upcoming = getattr(state, "upcoming_sleep", 0.0) or 0.0
                return time.monotonic() + upcoming >= deadline or loop.meter.over()

        async def sleep(seconds: float) -> None:
            await self._wait_polling(None, min(seconds, max(0.0, deadline - time.monotonic())), deadline, stop)

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, (_Transient, httpx.TransportError))),
            wait=wait, stop=stop_any(stop_after_attempt(self.max_retries + 1), PastDeadline()), sleep=sleep,
            reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._call_once(client, body, loop, deadline, stop, endpoint)
        except _Transient as exc:
            raise _Fatal(f"{exc} (gave up after retries)") from exc
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Fatal(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            loop.spend_unknown = True
            raise _Fatal(f"connection to {self.base_url} failed mid-request: {exc or type(exc).__name__}") from exc
        raise _Fatal("no attempt was made")  # pragma: no cover - tenacity always attempts once

    async def _call_once(self, client: httpx.AsyncClient, body: dict[str, Any], loop: _Loop,
                         deadline: float, stop: StopCheck | None, endpoint: str) -> dict[str, Any]:
        loop.transcript.write_json({"kind": "request", "turn": loop.turns + 1, "messages": len(body["messages"])})
        task = asyncio.ensure_future(client.post(f"{endpoint}/chat/completions", json=body))
        response = await self._wait_polling(task, None, deadline, stop)
        if response.status_code in RETRY_STATUSES:
            raise _Transient(response.status_code, _error_text(response), _retry_after(response))
        if response.status_code in (401, 403):
            raise _Fatal(f"{self.base_url} rejected the credentials (HTTP {response.status_code}): {KEY_HINT}")
        if response.status_code >= 400:
            raise _Fatal(f"HTTP {response.status_code} from {self.base_url}: {_error_text(response)}")
        try:
            data = response.json()
        except ValueError as exc:
            loop.spend_unknown = True
            raise _Fatal(f"unparseable response from {self.base_url}: {response.text[:200]!r}") from exc
        if not isinstance(data, dict):
            loop.spend_unknown = True
            raise _Fatal(f"unexpected response from {self.base_url}: {str(data)[:200]!r}")
        loop.transcript.write_json({"kind": "response", "turn": loop.turns + 1, "body": data})
        return data

    async def _wait_polling(self, task: asyncio.Future[Any] | None, seconds: float | None, deadline: float,
                            stop: StopCheck | None) -> Any:
        """Await ``task`` (or sleep ``seconds``) while polling ``stop()`` and the deadline."""
        end = deadline if seconds is None else min(deadline, time.monotonic() + seconds)
        try:
            while task is None or not task.done():
                reason = stop() if stop is not None else None
                if reason:
                    raise _Halt(str(reason), in_flight=task is not None)
                now = time.monotonic()
                if now >= end:
                    if task is None and seconds is not None and end < deadline:
                        return None
                    raise _Halt("timeout", in_flight=task is not None)
                if task is None:
                    await asyncio.sleep(min(POLL_S, end - now))
                else:
                    await asyncio.wait([task], timeout=min(POLL_S, end - now))
        except BaseException:
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            raise
        return task.result()

    # ------------------------------------------------------------------ responses and tools

    def _take_response(self, loop: _Loop, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Account the response's usage, record its text, return its tool calls."""
        loop.turns += 1
        if isinstance(data.get("usage"), Mapping):
            loop.meter.observe(f"response-{loop.turns}", chat_usage(data["usage"]))
            emit(loop.on_event, "agent.usage", loop.meter.usage.as_dict())
        else:
            loop.missing_usage += 1
        choices = data.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        raw_message = first.get("message") if isinstance(first, Mapping) else None
        message: Mapping[str, Any] = raw_message if isinstance(raw_message, Mapping) else {}
        content = message.get("content")
        if isinstance(content, str) and content:
            loop.texts.append(content)
            emit(loop.on_event, "agent.text", {"text": content})
        raw_calls = message.get("tool_calls")
        calls = [c for c in raw_calls if isinstance(c, Mapping)] if isinstance(raw_calls, list) else []
        assistant: dict[str, Any] = {"role": "assistant", "content": content if isinstance(content, str) else None}
        if calls:
            assistant["tool_calls"] = [
                {"id": str(c.get("id") or f"call_{loop.turns}_{i}"), "type": "function",
                 "function": {"name": str(_fn(c).get("name") or ""), "arguments": _arguments_text(_fn(c))}}
                for i, c in enumerate(calls)]
        loop.messages.append(assistant)
        return list(assistant.get("tool_calls", []))

    async def _run_tool(self, loop: _Loop, call: dict[str, Any], deadline: float) -> dict[str, Any]:
        name = call["function"]["name"]
        try:
            args = json.loads(call["function"]["arguments"] or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            output = f"error: arguments are not a valid JSON object: {exc}"
        else:
            emit(loop.on_event, "agent.tool", {"name": name, "input": summarize(args)})
            output = await self._dispatch(loop, name, args, deadline)
        output = redact(output[:TOOL_OUTPUT_CHARS], [self.api_key or ""])
        loop.transcript.write_json({"kind": "tool", "name": name, "output": output[:2000]})
        return {"role": "tool", "tool_call_id": call["id"], "content": output}

    async def _dispatch(self, loop: _Loop, name: str, args: dict[str, Any], deadline: float) -> str:
        root = loop.request.cwd
        allowed = {t["function"]["name"] for t in tool_schemas(loop.request.permission, shell=self.shell)}
        if name not in allowed:
            return f"error: tool {name!r} is not available (available: {', '.join(sorted(allowed))})"
        try:
            if name == "read_file":
                return file_tools.read_file(root, _str(args, "path"))
            if name == "list_files":
                return file_tools.list_files(root, _str(args, "path", "."))
            if name == "search":
                return file_tools.search(root, _str(args, "pattern"), _str(args, "path", "."))
            if name == "write_file":
                out = file_tools.write_file(root, _str(args, "path"), _str(args, "content", ""))
            elif name == "edit_file":
                out = file_tools.edit_file(root, _str(args, "path"), _str(args, "old"), _str(args, "new", ""))
            else:
                return await self._command(loop, _str(args, "command"), deadline)
            loop.changed[file_tools.resolve_inside(root, _str(args, "path")).relative_to(
                os.path.realpath(root)).as_posix()] = None
            return out
        except (GateDenied, file_tools.FileToolError, ValueError) as exc:
            return f"error: {exc}"
        except OSError as exc:
            return f"error: {exc.strerror or exc}"

    async def _command(self, loop: _Loop, command: str, deadline: float) -> str:
        """One shell command inside the sandbox (network: ``sandbox_allow_domains`` only — the model
        endpoint is reached by us, never by the command)."""
        assert self.sandbox is not None
        timeout = min(COMMAND_TIMEOUT_S, max(1.0, deadline - time.monotonic()))
        boxed = self.sandbox.prepare(SandboxScope(cwd=loop.request.cwd, writable=True, purpose="agent",
                                                  level=loop.request.level))
        try:
            code, output = await run_shell(command, cwd=loop.request.cwd, env=child_env(loop.request.env, {}),
                                           timeout_s=timeout, max_chars=TOOL_OUTPUT_CHARS, wrap=boxed.wrap)
        finally:
            denials = boxed.denials()
            boxed.close()
        loop.denials.extend(denials)
        for line in denials:
            loop.transcript.write_json({"kind": "sandbox_denied", "detail": line})
        status = f"timed out after {timeout:.0f}s" if code is None else f"exit code {code}"
        return f"{status}\n{output}"

    # ------------------------------------------------------------------ result

    def _finish(self, loop: _Loop, ending: tuple[str, str | None, str | None], *, path: str | None,
                duration: float, quiet: bool = False) -> AgentResult:
        status, reason, error = ending
        usage = loop.meter.usage
        limit = loop.request.token_limit
        notes = [error] if error else []
        if loop.missing_usage:
            usage = fail_closed(usage, limit)
            notes.append(f"{loop.missing_usage} response(s) reported no usage; charged the full reservation")
        elif status != "ok" and reason != "budget" and loop.spend_unknown:
            usage = fail_closed(usage, limit)
            notes.append("a request's usage was lost; charged the full reservation")
        result = AgentResult(text="\n".join(loop.texts), usage=usage, status=status,  # type: ignore[arg-type]
                             turns=loop.turns, duration_s=duration, transcript=path, stop_reason=reason,
                             error=redact("; ".join(notes), [self.api_key or ""]) if notes else None,
                             files_changed=tuple(loop.changed), sandbox_denials=tuple(loop.denials))
        if quiet:
            return result
        emit(loop.on_event, "agent.end", {"status": result.status, "stop_reason": result.stop_reason,
                                          "usage": result.usage.as_dict(), "error": result.error})
        return result


def _fn(call: Mapping[str, Any]) -> Mapping[str, Any]:
    fn = call.get("function")
    return fn if isinstance(fn, Mapping) else {}


def _arguments_text(fn: Mapping[str, Any]) -> str:
    args = fn.get("arguments")
    if isinstance(args, str):
        return args
    return json.dumps(args if args is not None else {})


def _str(args: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = args.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"argument {key!r} must be a string")
    return value


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])[:300]
    except ValueError:
        pass
    return response.text[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


__all__ = ["OpenAIBackend", "chat_usage", "is_loopback", "tool_schemas"]


def _over_reservation(limit: int) -> str:
    return f"stopped: usage reached the reservation of {limit:,} tokens"
