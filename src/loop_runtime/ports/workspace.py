"""Worktrees, diffs, the verifier's tests, the outside-change guard and the tick journal.

Part of ``loop_runtime.ports`` (every name is importable from there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..formats.test_report import TestReport

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


