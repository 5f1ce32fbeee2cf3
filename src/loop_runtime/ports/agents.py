"""Agent backends and the sandbox they run in: the request, the result, the usage billed.

Part of ``loop_runtime.ports`` (every name is importable from there).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


# --------------------------------------------------------------------------- agents

Role = Literal["triage", "implementer", "verifier"]


class Permission(enum.StrEnum):
    """What an agent may do. Adapters map this onto each CLI's own flags.

    READ_ONLY: read files inside the working directory only (L0/L1, triage, verifier).
    EDIT_WORKTREE: read and edit files inside the working directory only (L2+ implementer).
    """

    READ_ONLY = "read-only"
    EDIT_WORKTREE = "edit-worktree"


@dataclass(frozen=True)
class Usage:
    """Exact token usage as the backend reported it.

    Budget tokens are ``input + cache_write + cache_read + output``: every token the
    provider processed counts against the cap, cached or not, because that is what a
    team's quota sees. The breakdown is kept for reporting.
    """

    input: int = 0
    output: int = 0
    cache_write: int = 0
    cache_read: int = 0
    cost_usd: float | None = None

    @property
    def total(self) -> int:
        return self.input + self.cache_write + self.cache_read + self.output

    def __add__(self, other: Usage) -> Usage:
        cost: float | None
        if self.cost_usd is None and other.cost_usd is None:
            cost = None
        else:
            cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return Usage(
            self.input + other.input,
            self.output + other.output,
            self.cache_write + other.cache_write,
            self.cache_read + other.cache_read,
            cost,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "output": self.output,
            "cache_write": self.cache_write,
            "cache_read": self.cache_read,
            "total": self.total,
            "cost_usd": self.cost_usd,
        }


@dataclass(frozen=True)
class AgentRequest:
    """One agent run: one role, one prompt, one working directory, one token ceiling."""

    role: Role
    prompt: str
    cwd: str
    permission: Permission
    token_limit: int
    system_prompt: str = ""
    max_turns: int = 30
    timeout_s: float = 900.0
    model: str | None = None
    transcript_dir: str | None = None  # where the adapter writes the raw transcript
    env: Mapping[str, str] = field(default_factory=dict)  # scrubbed environment for the process
    #: MCP servers (name → .mcp.json definition) the agent may use; empty → the backend gives it none
    mcp_servers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: the tick's effective autonomy level (None: the sandbox's configured one); the sandbox's git/gh
    #: shims never grant more than it
    level: str | None = None


AgentStatus = Literal["ok", "error", "halted"]


@dataclass(frozen=True)
class AgentResult:
    """What an agent run returned.

    ``status`` is ``halted`` when the runtime stopped it (``stop_reason`` one of
    ``budget``, ``timeout``, ``kill``), ``error`` when the agent or provider failed.
    ``usage`` is always what must be settled, including for errors (fail closed:
    an adapter that cannot learn the usage reports the full ``token_limit``).
    """

    text: str
    usage: Usage
    status: AgentStatus = "ok"
    turns: int = 0
    duration_s: float = 0.0
    transcript: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    files_changed: tuple[str, ...] = ()
    sandbox_denials: tuple[str, ...] = ()  # what the sandbox blocked and its git/gh shims refused, one line each


READ_ONLY_WRITE = "blocked (read-only worktree): "
"""Prefix of a denial that is a read-only agent's write inside its own worktree (a verifier's
``pytest`` making caches): reported, but no escape attempt — every other denial is one."""


StopCheck = Callable[[], "str | None"]
"""Polled by a backend while it runs: returns a reason (``kill``) to stop now, else None."""

EventSink = Callable[[str, Mapping[str, Any]], None]
"""Receives progress events (``kind``, payload) while a backend runs."""


@runtime_checkable
class AgentBackend(Protocol):
    """Runs one agent role. The implementer is never its own verifier: every call is a fresh session."""

    name: str

    async def run(
        self,
        request: AgentRequest,
        *,
        stop: StopCheck | None = None,
        on_event: EventSink | None = None,
    ) -> AgentResult: ...


# --------------------------------------------------------------------------- sandbox


@dataclass(frozen=True)
class SandboxScope:
    """What one sandboxed process may touch.

    ``cwd`` is its working directory (a worktree, or the project root for triage);
    ``writable`` lets it write there (the L2+ implementer, a test run); ``hosts`` are the
    extra network destinations it needs (its model endpoint); ``shims`` puts the
    level-gated ``git``/``gh`` first on its PATH; ``proxy_hosts`` are hosts that must be
    reached through the sandbox's proxy even when ``NO_PROXY`` would skip it (a model
    stand-in on 127.0.0.1). ``extra_writable`` are folders outside ``cwd`` it must write
    (a test run's private JUnit report folder), granted read and write.
    """

    cwd: str
    writable: bool
    purpose: str = "agent"  # agent | tests | tool
    hosts: tuple[str, ...] = ()
    shims: bool = True
    proxy_hosts: tuple[str, ...] = ()
    extra_writable: tuple[str, ...] = ()
    level: str | None = None  # the effective level of the agent's tick: the shims take the lower of this and the sandbox's


@runtime_checkable
class SandboxedProcess(Protocol):
    """One prepared sandbox: wrap the argv and env, run, then read what it denied and close."""

    def wrap(self, argv: list[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]: ...

    def denials(self) -> tuple[str, ...]: ...

    def close(self) -> None: ...


@runtime_checkable
class Sandbox(Protocol):
    """Confines agent processes and test runs (``adapters.sandbox``): OS sandbox or none."""

    name: str  # "srt" or "none"
    active: bool
    reason: str  # why it is off, or what it is

    def prepare(self, scope: SandboxScope) -> SandboxedProcess: ...


