"""What a diff may never contain, whatever the gate and the verifier say.

Why separate from the path gate (``gate.yaml``): the gate is the user's policy and can
be loosened; these rules protect the runtime itself and cannot. An agent's diff is
untrusted output, so every touched path — old and new names of a rename alike — is
checked for escapes (``..``, absolute paths, ``.git``, symlinks leaving the worktree),
for edits to the loop's own control files (an agent must not raise its own budget or
rewrite its gate), and for weakened tests (a deleted or renamed-away test file, a skip
or focus marker added). Any violation escalates the attempt to a human.

Pure: a ``ports.Diff`` in, ``Violation`` values out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..ports import Diff, FileChange
from .control_files import DEFAULT as DEFAULT_CONTROLS
from .control_files import CONTROL_NAMES, RUNTIME_DIRS, ControlSet, git_component
from .skip_markers import SKIP_MARKERS, removed_lines_by_path, scan_change

__all__ = [
    "CONTROL_DIRS",
    "CONTROL_FILES",
    "SKIP_MARKERS",
    "Violation",
    "check_diff",
    "is_test_path",
    "symlink_escapes",
]

CONTROL_FILES: tuple[str, ...] = CONTROL_NAMES
"""The fixed control-file names; the one definition (with folders and the project's state files)
is ``core.control_files``."""

CONTROL_DIRS: tuple[str, ...] = RUNTIME_DIRS
"""Runtime bookkeeping folders: nothing inside them is ever part of a change."""

_TEST_DIRS = frozenset({"tests", "test", "__tests__", "spec", "specs", "testing"})
_TEST_NAME = re.compile(
    r"""(?x)^(?:
        test_.+\.py | .+_test\.py | conftest\.py | .+_test\.go
      | .+\.(?:test|spec)\.[A-Za-z0-9]+ | .+_spec\.rb | .+Test\.(?:java|kt|cs|php) | .+Tests\.(?:java|kt|cs|swift)
    )$"""
)

@dataclass(frozen=True)
class Violation:
    code: str  # dotdot | git-dir | symlink-escape | control-file | test-deleted | test-skipped | test-config
    path: str
    detail: str


def _segments(path: str) -> list[str]:
    return path.replace("\\", "/").split("/")


def is_test_path(path: str) -> bool:
    """A test file by name (``test_*.py``, ``*.spec.ts`` …) or by a test folder on its way."""
    parts = [p for p in _segments(path) if p]
    if not parts:
        return False
    if _TEST_NAME.match(parts[-1]):
        return True
    return any(p.lower() in _TEST_DIRS for p in parts[:-1])


def symlink_escapes(link_path: str, target: str) -> str | None:
    """Why a link at ``link_path`` pointing to ``target`` leaves the worktree (lexically), or None."""
    if not target:
        return "empty symlink target"
    t = target.replace("\\", "/")
    if t.startswith("/") or t.startswith("~") or re.match(r"^[A-Za-z]:", t):
        return f"symlink to absolute path {target!r}"
    stack = [p for p in _segments(link_path)[:-1] if p not in ("", ".")]
    for part in t.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return f"symlink to {target!r} leaves the worktree"
            stack.pop()
        else:
            stack.append(part)
    if stack and stack[0].casefold() == ".git":
        return f"symlink to {target!r} points into .git"
    return None


def _path_violations(path: str, controls: ControlSet) -> list[Violation]:
    out: list[Violation] = []
    norm = path.replace("\\", "/")
    segs = _segments(path)
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in segs:
        out.append(Violation("dotdot", path, "path is absolute or has a '..' segment"))
    dotgit = git_component(path)
    if dotgit is not None:
        out.append(Violation("git-dir", path, f"a path component {dotgit!r} is git's own (.git): "
                                              "a nested repository or gitdir pointer"))
    why = controls.matches(path)
    if why:
        out.append(Violation("control-file", path, why))
    return out


def _symlink_to_control(c: FileChange, controls: ControlSet) -> Violation | None:
    """A symlink whose target (resolved lexically from the link's folder) is a control file or .git."""
    if not c.is_symlink or c.kind == "deleted" or not c.symlink_target:
        return None
    folder = [s for s in _segments(c.path)[:-1] if s not in ("", ".")]
    for part in c.symlink_target.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not folder:
                return None  # leaves the worktree: symlink_escapes reports it
            folder.pop()
        else:
            folder.append(part)
    target = "/".join(folder)
    if not target:
        return None
    if git_component(target) is not None:
        return Violation("git-dir", c.path, f"symlink to {c.symlink_target!r} points into .git")
    why = controls.matches(target)
    return Violation("control-file", c.path, f"symlink to {why}") if why else None


def _same_folder_test(old: str, new: str) -> bool:
    return is_test_path(new) and PurePosixPath(old).parent == PurePosixPath(new).parent


def _change_violations(c: FileChange) -> list[Violation]:
    out: list[Violation] = []
    if "160000" in (c.new_mode, c.old_mode):
        out.append(Violation("git-dir", c.path, "embedded git repository or submodule (gitlink, mode 160000)"))
    if c.is_symlink and c.kind != "deleted":
        why = symlink_escapes(c.path, c.symlink_target or "")
        if why:
            out.append(Violation("symlink-escape", c.path, why))
    removed = c.old_path if c.kind == "renamed" else c.path
    if removed and is_test_path(removed):
        if c.kind == "deleted":
            out.append(Violation("test-deleted", removed, "test file deleted"))
        elif c.kind == "renamed" and not _same_folder_test(removed, c.path):
            # moved out of test naming, or to another folder the test runner may not collect
            out.append(Violation("test-deleted", removed, f"test file renamed away to {c.path}"))
        elif c.kind == "typechange" and c.is_symlink:
            out.append(Violation("test-deleted", removed, "test file replaced by a symlink"))
    return out


def _skip_violations(c: FileChange, removed: Iterable[str] = ()) -> list[Violation]:
    """New skip/focus markers and test-config edits (``core.skip_markers``): added lines only."""
    return [Violation(f.code, f.path, f.detail) for f in scan_change(c, tuple(removed), is_test_path=is_test_path)]


def check_diff(diff: Diff, *, control_files: Iterable[str] = (),
               controls: ControlSet | None = None) -> tuple[Violation, ...]:
    """Every reason this diff must not be committed; empty when none. Order is stable.

    ``controls`` is the project's control set (``core.control_files``); ``control_files``
    adds root-relative paths to it (or to the fixed default set when none is given).
    """
    cset = controls if controls is not None else DEFAULT_CONTROLS
    extra = tuple(control_files)
    if extra:
        cset = cset.with_paths(extra)
    seen: dict[tuple[str, str, str], Violation] = {}
    removed = removed_lines_by_path(diff.patch)
    for change in diff.changes:
        found: list[Violation] = []
        for path in change.paths:
            found.extend(_path_violations(path, cset))
        found.extend(_change_violations(change))
        link = _symlink_to_control(change, cset)
        if link is not None:
            found.append(link)
        found.extend(_skip_violations(change, removed.get(change.path, ())))
        for v in found:
            seen.setdefault((v.code, v.path, v.detail), v)
    return tuple(seen.values())
