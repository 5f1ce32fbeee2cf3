"""Ports: the small seams through which the core reaches the world.

Each port is a ``typing.Protocol`` with one to three methods, and every value that
crosses it is a frozen dataclass, so the core can be driven by real adapters
(``loop_runtime.adapters``) or by the public fakes (``MockBackend``,
``MemoryStateWriter``, ``ManualClock``) with no change. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..formats.test_report import TestReport

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


# --------------------------------------------------------------------------- workspace

ChangeKind = Literal["added", "modified", "deleted", "renamed", "mode", "typechange"]


@dataclass(frozen=True)
class FileChange:
    """One touched path in a diff against the attempt's base commit."""

    path: str
    kind: ChangeKind
    old_path: str | None = None  # for renames
    is_symlink: bool = False
    symlink_target: str | None = None
    is_binary: bool = False
    old_mode: str | None = None
    new_mode: str | None = None
    added_lines: tuple[str, ...] = ()  # text lines added (for skip-marker checks); empty for binary

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path,) if not self.old_path or self.old_path == self.path else (self.old_path, self.path)


@dataclass(frozen=True)
class Diff:
    base_commit: str
    changes: tuple[FileChange, ...]
    patch: str  # binary-safe `git diff --binary` text

    @property
    def touched_paths(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for c in self.changes:
            for p in c.paths:
                seen.setdefault(p, None)
        return tuple(seen)


@dataclass(frozen=True)
class WorkspaceHandle:
    run_id: str
    path: str
    branch: str
    base_branch: str
    base_commit: str


@dataclass(frozen=True)
class TestRun:
    command: str | None  # None: no test command found
    exit_code: int | None
    passed: bool
    output: str  # truncated, secrets redacted
    duration_s: float = 0.0
    timed_out: bool = False
    report: TestReport | None = None  # what ran, per test where known (JUnit XML or summary lines)
    sandbox_denials: tuple[str, ...] = ()  # what the sandbox blocked the test run (redacted), one line each


@runtime_checkable
class Workspace(Protocol):
    """Isolated places where an agent may change code (git worktrees in production)."""

    def prepare(self, run_id: str, pattern: str) -> WorkspaceHandle: ...

    def diff(self, handle: WorkspaceHandle) -> Diff: ...

    def finish(self, handle: WorkspaceHandle, status: str, *, commit_message: str | None = None) -> str | None:
        """Mark the attempt ``rejected``/``escalated``/``merged``/``active``; commit first when a
        message is given. Returns the commit sha when one was made."""
        ...


# --------------------------------------------------------------------------- state files


@runtime_checkable
class StateWriter(Protocol):
    """Reads and writes the ecosystem's human-facing files (STATE.md, run log, ...).

    Paths are relative to the project root. Writes are atomic (temp file + rename) in
    the file adapter; ``MemoryStateWriter`` keeps them in a dict.
    """

    def read(self, path: str) -> str | None: ...

    def write(self, path: str, text: str) -> None: ...

    def update(self, path: str, fn: Callable[[str | None], str | None]) -> str | None:
        """Read-modify-write as one step: ``fn`` gets the text as it is now (``None`` if absent).

        The file adapter holds the file's lock from the read to the atomic replace, so
        concurrent ticks never lose each other's entries. Returns the text now stored.
        (Optional for third-party writers: ``core.files.update_file`` falls back to
        read + write.)
        """
        ...


# --------------------------------------------------------------------------- clock


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC datetime."""
        ...


# --------------------------------------------------------------------------- notifier


@dataclass(frozen=True)
class Notification:
    kind: str  # escalation | budget-80 | budget-100 | kill | daemon-error | daily-summary
    title: str
    body: str
    pattern: str | None = None
    url: str | None = None


@runtime_checkable
class Notifier(Protocol):
    def notify(self, note: Notification) -> None: ...


# --------------------------------------------------------------------------- budget


@dataclass(frozen=True)
class Reservation:
    """Tokens set aside for one agent call before it starts (reserve → settle)."""

    id: int
    amount: int


@dataclass(frozen=True)
class BudgetStatus:
    day: str  # YYYY-MM-DD, UTC
    cap: int | None  # None: unknown (no cost block and no loop-budget.md row)
    spent: int  # settled
    reserved: int  # open reservations

    @property
    def used(self) -> int:
        return self.spent + self.reserved

    @property
    def fraction(self) -> float:
        return 0.0 if not self.cap else self.used / self.cap


@runtime_checkable
class BudgetLedger(Protocol):
    """Where today's spend is kept: ``core.budget.BudgetBreaker`` in memory, or the SQLite store
    shared by every process of a project (``adapters.store.budget.StoreBudget``)."""

    def status(self, now: datetime) -> BudgetStatus: ...

    def reserve(self, amount: int, now: datetime) -> Reservation | None: ...

    def settle(self, reservation: Reservation, actual: int, now: datetime) -> None: ...


# --------------------------------------------------------------------------- verifier tests, guard, journal


@runtime_checkable
class TestRunner(Protocol):
    """Runs the project's own test command inside a worktree."""

    def run(self, worktree: str) -> TestRun: ...


@runtime_checkable
class OutsideGuard(Protocol):
    """Watches the user's checkout and the repository's refs while an agent runs.

    ``snapshot`` before the agent, ``changes`` after; anything reported is restored with
    ``restore`` (where git can) and the attempt escalates.
    """

    def snapshot(self) -> Any: ...

    def changes(self, before: Any) -> tuple[str, ...]: ...

    def restore(self, before: Any) -> tuple[str, ...]: ...


@runtime_checkable
class TickJournal(Protocol):
    """Phase-by-phase record of a tick, so a crash or a budget halt can be recovered or resumed."""

    def begin(self, *, tick_id: str, run_id: str, pattern: str, level: str, backend: str, at: datetime) -> None: ...

    def record(self, tick_id: str, phase: str, data: Mapping[str, Any], at: datetime) -> None: ...

    def finish(self, tick_id: str, *, status: str, outcome: str, tokens: int, summary: Mapping[str, Any],
               at: datetime) -> None: ...

    def escalate(self, *, tick_id: str, run_id: str, pattern: str, item_id: str, title: str, diff: str,
                 context: Mapping[str, Any], at: datetime) -> str: ...

    def event(self, kind: str, payload: Mapping[str, Any], at: datetime, *, pattern: str | None = None,
              tick_id: str | None = None) -> None: ...


# --------------------------------------------------------------------------- publishing (GitHub)


@runtime_checkable
class ChangePublisher(Protocol):
    """Pushes an accepted change to its ``loop/*`` branch and opens a pull request (``adapters.github``).

    ``publish`` takes a ``core.github_pr.PublishRequest`` and returns a ``Published``; a refused
    merge raises ``errors.GithubRefused`` (the tick escalates).
    """

    def publish(self, request: Any) -> Any: ...

    def comment(self, number: int, body: str) -> str | None: ...


# --------------------------------------------------------------------------- tick hooks
# What ``TickDeps`` once took as bare callables, as named ports: a tick reaches each through a
# ``core.effects.PortCall`` (``observer.observe``, ``stop.check`` …) like any other adapter.
# ``core.hooks`` wraps a plain callable into each, so ``TickDeps(observe=lambda: …)`` still works.


@runtime_checkable
class Observer(Protocol):
    """Discovery: what the loop sees now (probe output, open issues …), redacted; raises
    ``errors.DiscoveryUnavailable`` when it could not look (the tick is then report-only)."""

    def observe(self) -> str: ...


@runtime_checkable
class StopSignal(Protocol):
    """Polled before every agent call and by a backend while it runs: a reason (``kill``) to stop, else None."""

    def check(self) -> str | None: ...


@runtime_checkable
class RemotePause(Protocol):
    """The issue tracker's kill input (R12): ``(label, source)`` of open issues/PRs with a pause label."""

    def labels(self) -> Sequence[tuple[str, str]]: ...


@runtime_checkable
class IssueLease(Protocol):
    """issue-pr-repair (R32): the lock label on an item's issue, taken for one tick and released after."""

    def take(self, item_id: str) -> bool:
        """Take the lock; True when taken (and ``release`` is then owed), False when there is none to take."""
        ...

    def release(self, item_id: str) -> None: ...


@runtime_checkable
class PromotionCheck(Protocol):
    """L3: is the accepted change merge-ready by ``promotion.yaml``?"""

    def ready(self, diff: Diff) -> bool: ...


@runtime_checkable
class EventStream(Protocol):
    """Progress events (``kind``, payload) for live views (the dashboard, the CLI's progress line)."""

    def emit(self, kind: str, payload: Mapping[str, Any]) -> None: ...
