"""The outside-change guard: nothing outside an attempt's worktree may change while an agent runs.

Why: permission flags confine an agent's *edit tools*, not a shell it was given, nor a
buggy CLI. So the runtime checks the result instead. Before every agent run it takes
an ``OutsideSnapshot`` of the user's main checkout — ``git status`` (tracked changes,
untracked and ignored files), the content of every dirty, untracked or ignored file,
stat signatures inside ignored folders, ``HEAD`` (symbolic ref and target), every ref, the
index (by entry, so a stat refresh is no change), the git config, hooks, ``info/``,
``modules/`` and every linked worktree's links under ``worktrees/`` — and compares a second
snapshot after the run (every agent run and every test run). Any difference halts the tick.
Git metadata is read before any git command runs, and a changed config or hook is put back
first: ``core.fsmonitor``, a filter or a hook set by an agent must not run as the runtime.

``restore`` puts back what git can: refs and ``HEAD`` are reset, tracked files are
checked out from the previous ``HEAD`` (or rewritten from the saved content of a file
the user had been editing), new files are *moved* into
``.loop-runtime/quarantine/<ts>/`` rather than deleted, and any file about to be
overwritten is copied there first — a user editing during the run loses nothing.

The runtime's own folders (``.loop-worktrees``, ``.loop-runtime``) are not watched, and
the branches of recorded attempts (``refs/heads/loop/<id>``) may move: they live inside
the worktrees' world.

The guard lives by concern: ``files`` (what a snapshot holds; reading, writing back, quarantine),
``gitdir`` (config, hooks, worktree links, the index), ``refs`` (refs and ``HEAD``), ``checkout``
(the files ``git status`` sees), ``spine`` (the runtime's own files), ``snapshot`` (``snapshot``,
``compare``, ``restore`` over all of them) and ``gitguard`` (the port adapter).
"""

from __future__ import annotations

from .files import QUARANTINE, RUNTIME_DIRS, FileState, OutsideSnapshot
from .gitguard import GitGuard
from .snapshot import compare, restore, snapshot
from .spine import RUNTIME_DATA, spine_patterns

__all__ = ["QUARANTINE", "RUNTIME_DATA", "RUNTIME_DIRS", "FileState", "GitGuard", "OutsideSnapshot", "compare",
           "restore", "snapshot", "spine_patterns"]
