"""Codex CLI backend: ``codex exec --json -C <worktree> -s read-only|workspace-write``.

``codex exec`` never asks for approvals; the sandbox is the permission boundary
(``read-only`` for L0/L1 roles, ``workspace-write`` for the L2+ implementer — checked
with the real CLI: a shell write in ``read-only`` fails with "Read-only file system").
``workspace-write`` also makes ``/tmp`` and ``$TMPDIR`` writable by default (the real CLI
wrote a patch to /tmp), so we exclude both: the worktree is the only writable root.
There is no system-prompt flag, so ``request.system_prompt`` goes in as the config
override ``developer_instructions`` and there is no max-turns flag (one exec = one turn;
the wall-clock deadline and the token ceiling bound it). ``--skip-git-repo-check`` is
passed because loop-runtime, not the agent, chooses the working directory.

MCP (checked with the real CLI 0.169 via ``codex mcp list --json``): codex reads MCP
servers from ``$CODEX_HOME/config.toml`` only (never ``.mcp.json``), and a ``-c`` override
is merged into that table (``-c mcp_servers={}`` removes nothing). So each server the
project lists for the level is added with ``-c mcp_servers.<name>={...}``, and every
server of the user's config that is not listed is switched off with
``-c mcp_servers.<name>.enabled=false``: the agent sees exactly the listed ones.

Usage: ``turn.completed.usage`` is the thread's *cumulative* total, and OpenAI
semantics make ``cached_input_tokens`` (and ``cache_write_input_tokens``, Codex's
``input_tokens_details.cache_write_tokens``) subsets of ``input_tokens``:

    Usage(input = input_tokens - cached - cache_write, cache_write = cache_write_input_tokens,
          cache_read = cached_input_tokens, output = output_tokens)

so ``Usage.total == input_tokens + output_tokens`` (reasoning is inside output_tokens).
``turn.failed`` and fatal ``error`` events carry no usage: such a run is charged its
full reservation (fail closed). An ``item.completed`` of type ``error`` is a warning.

Metering (issue 15): codex's model calls go through the per-run metering proxy. A custom
provider in the user's ``config.toml`` keeps every setting but gets ``-c
model_providers.<id>.base_url=<proxy>`` (its own ``base_url`` becomes the proxy's upstream);
the built-in OpenAI provider — which ``codex exec`` will not redirect by ``OPENAI_BASE_URL`` —
is replaced by an equivalent custom provider (``loop_runtime_metered``, Responses API, same key
variable) whose upstream is ``OPENAI_BASE_URL``, else ``base_url``, else api.openai.com. The
proxy's count is the bill; ``turn.completed`` is the cross-check. With a ChatGPT login
(``auth.json``, no key variable) the replacement provider has ``requires_openai_auth`` and the
upstream is ChatGPT's codex backend (not exercised offline: it needs a real login).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import AgentNotStarted
from ...ports import AgentRequest, AgentResult, EventSink, Permission, Usage
from ..metering_proxy import MeteringProxy
from .boxed import BoxedCommand
from .jsonl_cli import Launch, UserLoginCliBackend, budget_halt
from .metered import MeteredRun
from .process import ProcessOutcome, UsageMeter, emit, fail_closed, inside_root, int_field, last_line

INSTALL_HINT = "install it with npm i -g @openai/codex"
CREDENTIAL_HINT = "codex CLI has no credentials: set OPENAI_API_KEY (or CODEX_API_KEY), or run `codex login`"
CREDENTIAL_VARS = ("OPENAI_API_KEY", "CODEX_API_KEY")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
CHATGPT_BASE_URL = "https://chatgpt.com/backend-api/codex"  # where codex sends a ChatGPT-login session
METERED_PROVIDER = "loop_runtime_metered"


WORKTREE_ONLY = ("-c", "sandbox_workspace_write.exclude_slash_tmp=true",
                 "-c", "sandbox_workspace_write.exclude_tmpdir_env_var=true")


def sandbox_flag(permission: Permission) -> str:
    return "workspace-write" if permission is Permission.EDIT_WORKTREE else "read-only"


def sandbox_flags(permission: Permission) -> tuple[str, ...]:
    """``-s <mode>``, plus the overrides that keep ``workspace-write`` to the worktree alone."""
    extra = WORKTREE_ONLY if permission is Permission.EDIT_WORKTREE else ()
    return ("-s", sandbox_flag(permission), *extra)


def toml_string(text: str) -> str:
    """A TOML basic string (for ``-c key=value``): JSON escapes minus the ones TOML lacks."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{toml_string(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return toml_string(str(value))


#: .mcp.json keys → codex's ``mcp_servers`` keys (the ones both understand)
_MCP_KEYS = {"command": "command", "args": "args", "env": "env", "cwd": "cwd", "url": "url", "headers": "http_headers"}


def _user_config(codex_home: str | None) -> dict[str, Any]:
    """``$CODEX_HOME/config.toml`` as a table; empty when absent or unreadable (codex reports a broken one)."""
    if not codex_home:
        return {}
    import tomllib

    try:
        return tomllib.loads((Path(codex_home) / "config.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def user_mcp_servers(codex_home: str | None) -> tuple[str, ...]:
    """The MCP server names in ``$CODEX_HOME/config.toml`` (none when it is absent or unreadable)."""
    servers = _user_config(codex_home).get("mcp_servers")
    return tuple(servers) if isinstance(servers, dict) else ()


def mcp_overrides(servers: Mapping[str, Mapping[str, Any]], user_servers: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``-c`` overrides giving codex exactly ``servers``: each added, every other user server disabled."""
    out: list[str] = []
    for name, spec in servers.items():
        table = {_MCP_KEYS[k]: v for k, v in spec.items() if k in _MCP_KEYS}
        out += ["-c", f"mcp_servers.{name}={_toml_value(table)}"]
    for name in user_servers:
        if name not in servers:
            out += ["-c", f"mcp_servers.{name}.enabled=false"]
    return tuple(out)


def codex_usage(raw: Any) -> Usage:
    """Our usage from a ``turn.completed.usage`` object (cached and cache-write are subsets of input)."""
    inp = int_field(raw, "input_tokens")
    cached = int_field(raw, "cached_input_tokens")
    written = int_field(raw, "cache_write_input_tokens")
    # If a provider reports cached > input the breakdown wins: we over-count rather than under-count.
    return Usage(input=max(0, inp - cached - written), output=int_field(raw, "output_tokens"),
                 cache_write=written, cache_read=cached)


def user_provider(codex_home: str | None) -> tuple[str | None, Mapping[str, Any]]:
    """The provider the user's ``config.toml`` selects (id, its table), or (None, {}) for the built-in one."""
    data = _user_config(codex_home)
    name = data.get("model_provider")
    providers = data.get("model_providers")
    table = providers.get(name) if isinstance(providers, dict) and isinstance(name, str) else None
    if isinstance(table, dict) and isinstance(table.get("base_url"), str):
        return name, table
    return None, {}


def codex_home_of(env: Mapping[str, str]) -> str | None:
    """Where codex keeps its login and config: ``$CODEX_HOME``, else ``~/.codex`` (None without a HOME)."""
    return env.get("CODEX_HOME") or (str(Path(env["HOME"]) / ".codex") if env.get("HOME") else None)


def uses_chatgpt_login(env: Mapping[str, str]) -> bool:
    """No API key variable, but a ``codex login`` in the Codex home: codex talks to ChatGPT's backend."""
    if any(env.get(k) for k in CREDENTIAL_VARS):
        return False
    home = codex_home_of(env)
    return home is not None and (Path(home) / "auth.json").is_file()


def provider_overrides(proxy_url: str, provider: str | None, env: Mapping[str, str]) -> tuple[str, ...]:
    """``-c`` overrides sending codex's model calls to the metering proxy.

    A custom provider of the user's keeps every setting but its ``base_url``; the built-in
    OpenAI provider (which ignores ``OPENAI_BASE_URL`` in ``codex exec``) is replaced by an
    equivalent custom one reading the same key variable.
    """
    if provider is not None:
        return ("-c", f"model_providers.{provider}.base_url={toml_string(proxy_url)}")
    table: dict[str, Any] = {"name": "OpenAI (metered by loop-runtime)", "base_url": proxy_url,
                             "wire_api": "responses"}
    if uses_chatgpt_login(env):
        table["requires_openai_auth"] = True  # codex sends its ChatGPT login tokens, the proxy passes them on
    else:
        table["env_key"] = "OPENAI_API_KEY" if env.get("OPENAI_API_KEY") or not env.get("CODEX_API_KEY") \
            else "CODEX_API_KEY"
    return ("-c", f"model_providers.{METERED_PROVIDER}={_toml_value(table)}", "-c",
            f"model_provider={toml_string(METERED_PROVIDER)}")


def find_codex(binary: str | None = None) -> str:
    found = shutil.which(binary or "codex")
    if found is None:
        where = f" at {binary!r}" if binary else ""
        raise AgentNotStarted(f"codex CLI not found{where}: {INSTALL_HINT}")
    return found


def credentials_known_missing(env: Mapping[str, str]) -> bool:
    """True only when no key variable is set and the Codex home has neither a login nor a config."""
    if any(env.get(k) for k in CREDENTIAL_VARS):
        return False
    home = codex_home_of(env)
    if home is None:
        return False
    # A config.toml may select a provider that needs no key (a local server): we cannot know cheaply.
    return not ((Path(home) / "auth.json").is_file() or (Path(home) / "config.toml").is_file())


@dataclass
class _Run:
    """Parse state of one ``codex exec --json`` stream."""

    request: AgentRequest
    meter: UsageMeter
    on_event: EventSink | None
    texts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    changed: dict[str, None] = field(default_factory=dict)
    completed: int = 0
    reported: Usage | None = None
    failed: str | None = None
    last_error: str | None = None

    def handle(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        if kind == "thread.started":
            emit(self.on_event, "agent.start", {"backend": "codex", "role": self.request.role,
                                                "model": self.request.model, "session": event.get("thread_id")})
        elif kind in ("item.started", "item.completed") and isinstance(event.get("item"), Mapping):
            self._item(kind, event["item"])
        elif kind == "turn.completed":
            self.completed += 1
            self.failed = None
            self.reported = codex_usage(event.get("usage"))
            if self.meter.cumulative(self.reported):
                emit(self.on_event, "agent.usage", self.meter.usage.as_dict())
            # A turn is finished when it reports: nothing is in flight, so no look-ahead here.
            if self.meter.over(predict=False):
                return "budget"
        elif kind == "turn.failed":
            error = event.get("error")
            message = error.get("message") if isinstance(error, Mapping) else None
            self.failed = str(message or self.last_error or "turn failed")
        elif kind == "error":
            self.last_error = str(event.get("message") or "error")
            emit(self.on_event, "agent.warning", {"message": self.last_error})
        return None

    def _item(self, kind: str, item: Mapping[str, Any]) -> None:
        itype = item.get("type")
        if kind == "item.completed" and itype == "agent_message" and isinstance(item.get("text"), str):
            self.texts.append(item["text"])
            emit(self.on_event, "agent.text", {"text": item["text"]})
        elif kind == "item.completed" and itype == "error":
            self.warnings.append(str(item.get("message") or ""))
            emit(self.on_event, "agent.warning", {"message": item.get("message")})
        elif kind == "item.started" and itype in ("command_execution", "mcp_tool_call", "web_search"):
            emit(self.on_event, "agent.tool", {"name": itype, "input": {
                k: item.get(k) for k in ("command", "server", "tool", "arguments", "query") if k in item}})
        elif kind == "item.completed" and itype == "file_change":
            emit(self.on_event, "agent.tool", {"name": "file_change", "input": {"changes": item.get("changes")}})
            if item.get("status") != "failed" and isinstance(item.get("changes"), list):
                for change in item["changes"]:
                    path = change.get("path") if isinstance(change, Mapping) else None
                    rel = inside_root(self.request.cwd, path) if isinstance(path, str) else None
                    if rel is not None:
                        self.changed[rel] = None


class CodexCliBackend(UserLoginCliBackend):
    """Runs one agent role through ``codex exec`` with usage from ``turn.completed``."""

    name = "codex"
    credential_vars = CREDENTIAL_VARS
    credential_hint = CREDENTIAL_HINT

    def __init__(self, *, binary: str | None = None, model: str | None = None,
                 env: Mapping[str, str] | None = None, codex_home: str | None = None,
                 base_url: str | None = None) -> None:
        self.binary = find_codex(binary)
        self.model = model
        source = os.environ if env is None else env
        self.credentials = {k: v for k, v in source.items() if k.startswith("OPENAI_") or k in CREDENTIAL_VARS}
        # The built-in provider's upstream for the metering proxy (a custom provider brings its own).
        explicit = self.credentials.pop("OPENAI_BASE_URL", None) or base_url
        self.explicit_upstream = explicit is not None
        self.upstream = explicit or DEFAULT_BASE_URL
        if codex_home is not None:
            self.credentials["CODEX_HOME"] = codex_home
        elif source.get("CODEX_HOME"):
            self.credentials["CODEX_HOME"] = source["CODEX_HOME"]

    def argv(self, request: AgentRequest, user_servers: tuple[str, ...] = (),
             provider: tuple[str, ...] = ()) -> list[str]:
        """The exact command line for ``request`` (prompt last, after ``--``).

        ``user_servers``: MCP servers in the user's codex config, disabled unless the level lists them.
        ``provider``: the ``-c`` overrides pointing codex at the metering proxy.
        """
        argv = [self.binary, "exec", "--json", "--skip-git-repo-check", "-C", request.cwd,
                *sandbox_flags(request.permission), *mcp_overrides(request.mcp_servers, user_servers), *provider]
        model = request.model or self.model
        if model:
            argv += ["-m", model]
        if request.system_prompt:
            argv += ["-c", f"developer_instructions={toml_string(request.system_prompt)}"]
        return [*argv, "--", request.prompt]

    def credentials_known_missing(self, env: Mapping[str, str]) -> bool:
        return credentials_known_missing(env)

    def new_state(self, request: AgentRequest, on_event: EventSink | None) -> _Run:
        return _Run(request, UsageMeter(request.token_limit), on_event)

    def launch(self, request: AgentRequest, env: dict[str, str], box: BoxedCommand) -> Launch:
        home = codex_home_of(env)
        provider, table = user_provider(home)
        upstream = str(table["base_url"]) if provider is not None else (
            CHATGPT_BASE_URL if uses_chatgpt_login(env) and not self.explicit_upstream else self.upstream)

        def command(proxy: MeteringProxy) -> tuple[list[str], dict[str, str]]:
            overrides = provider_overrides(proxy.base_url, provider, env)
            return self.argv(request, user_mcp_servers(home), overrides), env

        return Launch(upstream, command)

    def result(self, request: AgentRequest, state: _Run, run: MeteredRun) -> AgentResult:
        return _result(request, state, run.outcome, last_line(run.outcome.stderr_tail, run.secrets))

    def cli_usage(self, state: _Run) -> Usage | None:
        return state.reported if state.failed is None else None


def _result(request: AgentRequest, state: _Run, outcome: ProcessOutcome, stderr: str) -> AgentResult:
    """Status and billed usage from what the stream reported and how the process ended."""
    halted, returncode, garbage = outcome.halted, outcome.returncode, outcome.garbage
    text = "\n".join(state.texts)
    changed = tuple(state.changed)
    limit = request.token_limit
    charged = f"no usage reported; charged the full reservation of {limit:,} tokens"
    if halted == "budget":
        return budget_halt(text, state.meter.usage, state.completed, changed, limit)
    if state.reported is not None and state.failed is None:
        ok = returncode == 0 or halted is not None  # killed after its turn completed: the usage is final
        return AgentResult(text=text, usage=state.reported, status="ok" if ok else "error",
                           turns=state.completed, files_changed=changed,
                           error=None if ok else f"codex exited with code {returncode}: "
                                                 f"{state.last_error or stderr or 'no detail'}")
    usage = fail_closed(state.meter.usage, limit)
    if halted is not None:
        return AgentResult(text=text, usage=usage, status="halted", turns=state.completed, stop_reason=halted,
                           files_changed=changed, error=f"stopped ({halted}) before the turn completed; {charged}")
    if state.failed is not None:
        reason = state.failed
    else:
        detail = state.last_error or stderr or (f"{garbage} unparseable output line(s)" if garbage else "no output")
        reason = f"codex exited with code {returncode} without completing the turn ({detail})"
    return AgentResult(text=text, usage=usage, status="error", turns=state.completed, files_changed=changed,
                       error=f"{reason}; {charged}")


__all__ = ["CodexCliBackend", "codex_usage", "find_codex", "sandbox_flag", "sandbox_flags", "toml_string"]
