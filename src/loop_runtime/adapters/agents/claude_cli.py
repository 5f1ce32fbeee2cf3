"""Claude Code CLI backend: ``claude -p --output-format stream-json --verbose`` in the worktree.

One ``claude`` process per agent call (a fresh session each time, so the implementer is
never its own verifier and the result's cumulative totals are per-call totals). The
worktree is the process cwd (the CLI has no ``--cwd``), stdin is ``/dev/null`` and the
prompt is the last argv element after ``--``.

Permissions (checked against the real CLI 2.1.332, see tests/test_realcli_claude.py):
``--permission-mode dontAsk`` denies every tool not pre-approved; ``Read(./**)`` and
``Edit(./**)`` confine reads and edits to the cwd, symlinks resolved (bare ``Write``/``Edit``
would allow writing anywhere on disk). Glob and Grep are NOT granted by name: a bare
``Glob``/``Grep`` grant lets Grep print ``/etc/passwd``; the ``Read(./**)`` rule already
covers both, inside the cwd only. Bash — which no rule can confine — is always disallowed.

MCP (checked against the same real CLI): without flags the CLI loads the project's
``.mcp.json`` (and the user's own servers) by itself, so every run gets
``--strict-mcp-config --mcp-config <file>``, the file generated in the tick's private
transcript folder (mode 0600, removed after the run) and holding only the servers the
project lists for the level (``AgentRequest.mcp_servers``) — an empty ``mcpServers``
when none are listed, so the agent sees no MCP server at all. Claude defers MCP tools
behind ToolSearch; ``dontAsk`` denies them unless allowed, so each listed server is also
allowed as ``mcp__<server>`` in ``--allowedTools`` (and only then).

Usage: the final ``result`` message is authoritative. Its snake_case ``usage`` is the
sum over the run's API calls; ``modelUsage`` is per model and also counts helper calls
on other models, so when its sum is larger it wins (we bill the larger of the two —
never under-count). Error subtypes (``error_max_turns``, ``error_during_execution``,
``is_error`` with ``api_error_status``) carry usage too and are billed. Live usage for
the hard limit comes from ``assistant`` messages (per message id) and, with partial
messages, ``stream_event`` ``message_start``/``message_delta`` — not exact, but the best
signal while the run is in flight.

Metering (issue 15): ``ANTHROPIC_BASE_URL`` in the child is the per-run metering proxy
(``adapters/metering_proxy``), which forwards to the real API (the caller's
``ANTHROPIC_BASE_URL``, else ``base_url``, else api.anthropic.com), reads every call's usage
off the wire, refuses the next call once the reservation is spent and stops the group. The
proxy's count is the bill; the ``result`` above is the cross-check (``metered.bill``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...errors import AgentNotStarted, BackendError
from ...ports import AgentRequest, AgentResult, EventSink, Permission, Sandbox, SandboxScope, Usage
from ..metering_proxy import MeteringProxy
from .boxed import BoxedCommand, agent_scope
from .jsonl_cli import Launch, UserLoginCliBackend, budget_halt
from .metered import MeteredRun
from .process import ProcessOutcome, UsageMeter, emit, fail_closed, inside_root, int_field, larger, last_line
from .process import redact, summarize

INSTALL_HINT = "install Claude Code (npm i -g @anthropic-ai/claude-code) or pip install 'loop-runtime[claude]'"
SET_HINT = "set ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`)"
CREDENTIAL_HINT = f"claude CLI has no credentials: {SET_HINT}"
REJECTED_HINT = f"claude CLI credentials were rejected (HTTP 401/403): {SET_HINT}"
DEFAULT_BASE_URL = "https://api.anthropic.com"
CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
PROVIDER_SWITCHES = ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY")
PROVIDER_HOSTS = {"CLAUDE_CODE_USE_BEDROCK": "*.amazonaws.com", "CLAUDE_CODE_USE_VERTEX": "*.googleapis.com",
                  "CLAUDE_CODE_USE_FOUNDRY": "*.azure.com"}
"""Under the sandbox, the model endpoint of each cloud provider the CLI may be switched to."""

READ_ONLY_FLAGS = ("--permission-mode", "dontAsk",
                   "--allowedTools", "Read(./**)",
                   "--disallowedTools", "Bash,Write,Edit,NotebookEdit,WebFetch,WebSearch")
EDIT_WORKTREE_FLAGS = ("--permission-mode", "dontAsk",
                       "--allowedTools", "Read(./**),Edit(./**)",
                       "--disallowedTools", "Bash,WebFetch,WebSearch")
# Under an OS sandbox (adapters.sandbox) the implementer gets a shell, to run the tests: the sandbox,
# not a permission rule, confines what the shell can write and reach. The verifier's shell can write
# nothing but its private temp folder, so it may run read-only commands (the tests, git log).
SANDBOXED_EDIT_FLAGS = ("--permission-mode", "dontAsk",
                        "--allowedTools", "Read(./**),Edit(./**),Bash",
                        "--disallowedTools", "WebFetch,WebSearch")
SANDBOXED_VERIFIER_FLAGS = ("--permission-mode", "dontAsk",
                            "--allowedTools", "Read(./**),Bash",
                            "--disallowedTools", "Write,Edit,NotebookEdit,WebFetch,WebSearch")
AUTH_FAILED = "auth-failed"  # internal stop reason: the provider rejected the credentials
EDIT_TOOLS = {"Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path", "NotebookEdit": "notebook_path"}


def permission_flags(permission: Permission, mcp_servers: Iterable[str] = (), *, sandboxed: bool = False,
                     role: str = "implementer") -> tuple[str, ...]:
    """The CLI flags for one permission level (never a bare ``Write``/``Edit`` grant).

    ``Bash`` only when ``sandboxed``: for the EDIT_WORKTREE implementer and the verifier.
    ``mcp_servers``: the listed servers whose tools are allowed (``mcp__<server>``), none by default.
    """
    if sandboxed and permission is Permission.EDIT_WORKTREE:
        flags = SANDBOXED_EDIT_FLAGS
    elif sandboxed and role == "verifier":
        flags = SANDBOXED_VERIFIER_FLAGS
    elif permission is Permission.EDIT_WORKTREE:
        flags = EDIT_WORKTREE_FLAGS
    else:
        flags = READ_ONLY_FLAGS
    extra = [f"mcp__{name}" for name in mcp_servers]
    if not extra:
        return flags
    i = flags.index("--allowedTools") + 1
    return (*flags[:i], ",".join([flags[i], *extra]), *flags[i + 1:])


def write_mcp_config(request: AgentRequest, *, private: bool = False) -> Path:
    """The generated ``--mcp-config`` file: only ``request.mcp_servers`` (possibly none), mode 0600.

    It lives in the tick's transcript folder (private to the tick), else — or when ``private``
    (a sandboxed CLI cannot read the runtime's own folders) — a private temp folder.
    """
    import json
    import tempfile

    use_transcripts = bool(request.transcript_dir) and not private
    folder = Path(request.transcript_dir) if use_transcripts else Path(tempfile.mkdtemp(prefix="loop-mcp-"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"mcp-{request.role}-", suffix=".json", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: 0600, a fresh name
            json.dump({"mcpServers": {k: dict(v) for k, v in request.mcp_servers.items()}}, f)
    except OSError as exc:
        raise BackendError(f"cannot write the MCP config in {folder}: {exc.strerror or exc}") from exc
    return Path(name)


def find_claude(binary: str | None = None) -> str:
    """An explicit binary, else ``claude`` on PATH, else the CLI bundled in the claude-agent-sdk wheel."""
    if binary:
        found = shutil.which(binary)
        if found is None:
            raise AgentNotStarted(f"claude CLI not found at {binary!r}: {INSTALL_HINT}")
        return found
    found = shutil.which("claude")
    if found:
        return found
    bundled = _bundled_claude()
    if bundled is None:
        raise AgentNotStarted(f"claude CLI not found: {INSTALL_HINT}")
    return bundled


def _bundled_claude() -> str | None:
    from ...optional import find

    folder = find("claude_agent_sdk")  # locates the wheel without importing it
    if folder is None:
        return None
    candidate = Path(folder) / "_bundled" / "claude"
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def credentials_known_missing(env: Mapping[str, str]) -> bool:
    """True only when it is certain the CLI cannot authenticate (cheap checks, no network).

    Any credential variable or cloud-provider switch, a login file under the config dir,
    an ``apiKeyHelper`` setting, or macOS (logins live in the keychain) count as "maybe".
    """
    if any(env.get(k) for k in (*CREDENTIAL_VARS, *PROVIDER_SWITCHES)):
        return False
    home = env.get("HOME")
    if sys.platform == "darwin" or not home:
        return False
    config = Path(env.get("CLAUDE_CONFIG_DIR") or Path(home) / ".claude")
    if (config / ".credentials.json").is_file():
        return False
    for path, needles in ((config / "settings.json", ("apiKeyHelper",)),
                          (Path(home) / ".claude.json", ("primaryApiKey", "oauthAccount"))):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if any(n in text for n in needles):
            return False
    return True


def anthropic_usage(raw: Any) -> Usage:
    """Usage from an Anthropic ``usage`` object (the three input fields are disjoint)."""
    return Usage(input=int_field(raw, "input_tokens"), output=int_field(raw, "output_tokens"),
                 cache_write=int_field(raw, "cache_creation_input_tokens"),
                 cache_read=int_field(raw, "cache_read_input_tokens"))


def result_usage(result: Mapping[str, Any]) -> Usage:
    """The billed usage of a ``result`` message: the larger of ``usage`` and the ``modelUsage`` sum."""
    usage = anthropic_usage(result.get("usage"))
    per_model = result.get("modelUsage")
    costs: list[float] = []
    if isinstance(per_model, Mapping):
        summed = Usage()
        for entry in per_model.values():
            summed = summed + Usage(input=int_field(entry, "inputTokens"), output=int_field(entry, "outputTokens"),
                                    cache_write=int_field(entry, "cacheCreationInputTokens"),
                                    cache_read=int_field(entry, "cacheReadInputTokens"))
            if isinstance(entry, Mapping) and isinstance(entry.get("costUSD"), (int, float)):
                costs.append(float(entry["costUSD"]))
        usage = larger(usage, summed)
    cost = result.get("total_cost_usd")
    if isinstance(cost, bool) or not isinstance(cost, (int, float)):
        cost = sum(costs) if costs else None
    return replace(usage, cost_usd=None if cost is None else float(cost))


def result_error(result: Mapping[str, Any]) -> str | None:
    """A one-line error for an error result, or None for a clean success."""
    subtype = str(result.get("subtype") or "unknown")
    if subtype == "success" and not result.get("is_error"):
        return None
    errors = result.get("errors")
    parts = [str(e) for e in errors if e] if isinstance(errors, list) else []
    if not parts and isinstance(result.get("result"), str) and result["result"].strip():
        parts.append(result["result"].strip())
    status = result.get("api_error_status")
    prefix = f"{subtype} (API status {status})" if status else subtype
    return f"{prefix}: {'; '.join(parts)}" if parts else prefix


def _not_logged_in(result: Mapping[str, Any], usage: Usage) -> bool:
    text = str(result.get("result") or "")
    return bool(result.get("is_error")) and usage.total == 0 and (
        "Not logged in" in text or result.get("api_error_status") == 401 or "Invalid API key" in text)


@dataclass
class _Run:
    """Parse state of one run's event stream."""

    request: AgentRequest
    meter: UsageMeter
    on_event: EventSink | None
    root: str
    texts: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    message_ids: set[str] = field(default_factory=set)
    edits: dict[str, str] = field(default_factory=dict)  # tool_use id -> path
    changed: dict[str, None] = field(default_factory=dict)
    stream_id: str | None = None
    stream_usage: dict[str, Any] = field(default_factory=dict)

    def handle(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        grew = False
        if kind == "result":
            self.result = event
            return None
        if kind == "system" and event.get("subtype") == "init":
            emit(self.on_event, "agent.start", {"backend": "claude", "role": self.request.role,
                                                "model": event.get("model"), "session": event.get("session_id")})
        elif kind == "system" and event.get("subtype") == "api_retry":
            emit(self.on_event, "agent.warning", {"message": f"API retry {event.get('attempt')}: "
                                                  f"{event.get('error')} ({event.get('error_status')})"})
            if event.get("error") == "authentication_failed" or event.get("error_status") in (401, 403):
                return AUTH_FAILED  # the CLI would retry a rejected key for minutes
        elif kind == "assistant":
            grew = self._assistant(event.get("message"))
        elif kind == "user":
            self._tool_results(event.get("message"))
        elif kind == "stream_event":
            grew = self._stream(event.get("event"))
        if grew:
            emit(self.on_event, "agent.usage", self.meter.usage.as_dict())
            if self.meter.over():
                return "budget"
        return None

    def _assistant(self, message: Any) -> bool:
        if not isinstance(message, Mapping):
            return False
        msg_id = str(message.get("id") or f"anon-{len(self.message_ids)}")
        self.message_ids.add(msg_id)
        for block in message.get("content") or ():
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                self.texts.append(block["text"])
                emit(self.on_event, "agent.text", {"text": block["text"]})
            elif block.get("type") == "tool_use":
                raw_input = block.get("input")
                tool_input: Mapping[str, Any] = raw_input if isinstance(raw_input, Mapping) else {}
                emit(self.on_event, "agent.tool", {"name": block.get("name"), "input": summarize(tool_input)})
                key = EDIT_TOOLS.get(str(block.get("name")))
                if key and isinstance(tool_input.get(key), str):
                    self.edits[str(block.get("id"))] = tool_input[key]
        return self.meter.observe(msg_id, anthropic_usage(message.get("usage")))

    def _tool_results(self, message: Any) -> None:
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), list):
            return
        for block in message["content"]:
            if not isinstance(block, Mapping) or block.get("type") != "tool_result":
                continue
            path = self.edits.pop(str(block.get("tool_use_id")), None)
            if path is not None and not block.get("is_error"):
                rel = inside_root(self.root, path)
                if rel is not None:
                    self.changed[rel] = None

    def _stream(self, raw: Any) -> bool:
        if not isinstance(raw, Mapping):
            return False
        if raw.get("type") == "message_start" and isinstance(raw.get("message"), Mapping):
            self.stream_id = str(raw["message"].get("id") or "stream")
            self.stream_usage = dict(raw["message"].get("usage") or {})
        elif raw.get("type") == "message_delta" and isinstance(raw.get("usage"), Mapping) and self.stream_id:
            self.stream_usage.update({k: v for k, v in raw["usage"].items() if v is not None})
        else:
            return False
        return self.meter.observe(self.stream_id or "stream", anthropic_usage(self.stream_usage))


SANDBOXED_ENV = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
"""Defaults for a sandboxed CLI (the user's env wins): its telemetry, error reports and update checks
would only be refused by the sandbox's allowlist — each refusal a reported violation, escalating a
tick whose agent did nothing wrong."""


class ClaudeCliBackend(UserLoginCliBackend):
    """Runs one agent role through the Claude Code CLI with exact usage from its result."""

    name = "claude"
    credential_vars = CREDENTIAL_VARS
    credential_hint = CREDENTIAL_HINT

    def __init__(self, *, binary: str | None = None, model: str | None = None,
                 env: Mapping[str, str] | None = None, sandbox: Sandbox | None = None,
                 base_url: str | None = None) -> None:
        self.binary = find_claude(binary)
        self.model = model
        source = os.environ if env is None else env
        self.credentials = {k: v for k, v in source.items()
                            if k.startswith("ANTHROPIC_") or k in (*CREDENTIAL_VARS, *PROVIDER_SWITCHES)}
        # The real API the metering proxy forwards to: the CLI's own variable, else the config, else official.
        self.upstream = self.credentials.pop("ANTHROPIC_BASE_URL", None) or base_url or DEFAULT_BASE_URL
        self.sandbox = sandbox

    def scope(self, request: AgentRequest, endpoint: str | None = None) -> SandboxScope:
        """What the CLI may touch: its cwd (writable at EDIT_WORKTREE) and its model endpoint.

        ``endpoint`` is the URL the CLI is given — the metering proxy's, on loopback — so the
        agent's network allowlist is the proxy alone (plus a cloud provider it was switched to).
        """
        extra: tuple[str, ...] = ()
        if self.upstream == DEFAULT_BASE_URL:
            extra += ("console.anthropic.com",)  # OAuth token refresh of a logged-in CLI
        extra += tuple(host for switch, host in PROVIDER_HOSTS.items() if self.credentials.get(switch))
        return agent_scope(request, endpoint or self.upstream, "api.anthropic.com", extra_hosts=extra)

    def argv(self, request: AgentRequest, mcp_config: str | None = None) -> list[str]:
        """The exact command line for ``request`` (prompt last, after ``--``).

        ``mcp_config``: the generated MCP config file (``write_mcp_config``); always strict, so
        the project's ``.mcp.json`` and the user's servers are never loaded implicitly.
        """
        argv = [self.binary, "-p", "--output-format", "stream-json", "--verbose",
                "--max-turns", str(max(1, request.max_turns))]
        model = request.model or self.model
        if model:
            argv += ["--model", model]
        if request.system_prompt:
            argv += ["--append-system-prompt", request.system_prompt]
        if mcp_config:
            argv += ["--mcp-config", mcp_config]
        argv += ["--strict-mcp-config",
                 *permission_flags(request.permission, request.mcp_servers, sandboxed=self.sandboxed,
                                   role=request.role),
                 "--", request.prompt]
        return argv

    def credentials_known_missing(self, env: Mapping[str, str]) -> bool:
        return credentials_known_missing(env)

    def run_env(self, env: dict[str, str]) -> dict[str, str]:
        return {**SANDBOXED_ENV, **env} if self.sandboxed else env

    def new_state(self, request: AgentRequest, on_event: EventSink | None) -> _Run:
        return _Run(request, UsageMeter(request.token_limit), on_event, request.cwd)

    def launch(self, request: AgentRequest, env: dict[str, str], box: BoxedCommand) -> Launch:
        mcp_config = write_mcp_config(request, private=self.sandboxed)
        own_folder = self.sandboxed or not request.transcript_dir

        def command(proxy: MeteringProxy) -> tuple[list[str], dict[str, str]]:
            # Under the sandbox the agent's network allowlist is the metering proxy alone.
            return box.wrap(self.scope(request, proxy.base_url), self.argv(request, str(mcp_config)),
                            {**env, "ANTHROPIC_BASE_URL": proxy.base_url})

        def cleanup() -> None:
            mcp_config.unlink(missing_ok=True)  # it may hold the servers' env (tokens): not left on disk
            if own_folder:
                shutil.rmtree(mcp_config.parent, ignore_errors=True)  # our own private temp folder

        return Launch(self.upstream, command, cleanup)

    def result(self, request: AgentRequest, state: _Run, run: MeteredRun) -> AgentResult:
        if run.outcome.halted == AUTH_FAILED and state.result is None:
            raise BackendError(REJECTED_HINT)
        return self._result(request, state, run.outcome, list(run.secrets))

    def cli_usage(self, state: _Run) -> Usage | None:
        return result_usage(state.result) if state.result is not None else None

    def _result(self, request: AgentRequest, state: _Run, outcome: ProcessOutcome,
                secrets: list[str]) -> AgentResult:
        halted, returncode, garbage = outcome.halted, outcome.returncode, outcome.garbage
        changed = tuple(state.changed)
        turns = len(state.message_ids)
        if state.result is not None:
            usage = result_usage(state.result)
            if _not_logged_in(state.result, usage):
                raise BackendError(CREDENTIAL_HINT)
            error = result_error(state.result)
            error = redact(error, secrets) if error else None
            text = state.result.get("result")
            return AgentResult(
                text=text if isinstance(text, str) else "\n".join(state.texts), usage=usage,
                status="error" if error else "ok", turns=int_field(state.result, "num_turns") or turns,
                error=error, files_changed=changed)
        text = "\n".join(state.texts)
        if halted == "budget":
            return budget_halt(text, state.meter.usage, turns, changed, request.token_limit)
        usage = fail_closed(state.meter.usage, request.token_limit)
        if halted is not None:
            return AgentResult(text=text, usage=usage, status="halted", turns=turns, stop_reason=halted,
                               files_changed=changed, error=f"stopped ({halted}) before a result; "
                               f"charged the full reservation of {request.token_limit:,} tokens")
        detail = (last_line(outcome.stderr_tail, secrets)
                  or (f"{garbage} unparseable output line(s)" if garbage else "no output"))
        return AgentResult(text=text, usage=usage, status="error", turns=turns, files_changed=changed,
                           error=f"claude exited with code {returncode} without a result ({detail}); "
                                 f"charged the full reservation of {request.token_limit:,} tokens")


__all__ = ["ClaudeCliBackend", "anthropic_usage", "find_claude", "permission_flags", "result_usage"]
