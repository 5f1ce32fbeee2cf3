"""Refs and ``HEAD``: every ref's target, the symbolic ``HEAD`` — compared and reset.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import GitError
from ..git import run_git
from .files import NO_LOCKS as _NO_LOCKS
from .files import OutsideSnapshot


def _maybe(args: list[str], root: Path) -> str | None:
    try:
        return run_git(args, root, env=_NO_LOCKS) or None
    except GitError:
        return None


def _short(sha: str | None) -> str:
    return sha[:10] if sha else "(none)"


def _ref_changes(before: OutsideSnapshot, after: OutsideSnapshot, allowed: frozenset[str]) -> list[str]:
    out: list[str] = []
    if before.head_ref != after.head_ref:
        out.append(f"HEAD switched from {before.head_ref or 'detached'} to {after.head_ref or 'detached'}")
    elif before.head_ref is None and before.head != after.head:
        out.append(f"detached HEAD moved {_short(before.head)} → {_short(after.head)}")
    for name in sorted(set(before.refs) | set(after.refs)):
        if name in allowed:
            continue
        old, new = before.refs.get(name), after.refs.get(name)
        if old == new:
            continue
        if old is None:
            out.append(f"ref {name} created at {_short(new)}")
        elif new is None:
            out.append(f"ref {name} deleted (was {_short(old)})")
        else:
            out.append(f"ref {name} moved {_short(old)} → {_short(new)}")
    return out


def _restore_refs(root: Path, before: OutsideSnapshot, after: OutsideSnapshot, allowed: frozenset[str]) -> list[str]:
    done: list[str] = []
    for name in sorted(set(before.refs) | set(after.refs)):
        old, new = before.refs.get(name), after.refs.get(name)
        if name in allowed or old == new:
            continue
        if old is None:
            run_git(["update-ref", "-d", name], root)
            done.append(f"deleted ref {name}")
        else:
            run_git(["update-ref", name, old], root)
            done.append(f"reset ref {name} to {_short(old)}")
    if before.head_ref and before.head_ref != after.head_ref:
        run_git(["symbolic-ref", "HEAD", before.head_ref], root)
        done.append(f"HEAD back on {before.head_ref}")
    elif before.head_ref is None and before.head and before.head != after.head:
        run_git(["update-ref", "--no-deref", "HEAD", before.head], root)
        done.append(f"detached HEAD back at {_short(before.head)}")
    return done
