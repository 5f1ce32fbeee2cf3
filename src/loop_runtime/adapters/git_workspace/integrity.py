"""Integrity of an attempt's worktree: still linked to its own admin dir and to this repository, no
nested ``.git`` — so the runtime's own git commands in it can never act on the user's checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
import uuid
from pathlib import Path

from ...core.control_files import git_component
from ...errors import GitError
from ...ports import WorkspaceHandle
from ..git import decode
from .base import WorkspaceBase, _atomic_write

__all__ = ["Integrity"]


class Integrity(WorkspaceBase):
    """Checking and repairing a worktree's git links; quarantining what an agent planted."""

    def _remember_link(self, run_id: str, wt: Path) -> None:
        """Record the worktree's ``.git`` file and admin dir as git made them (before any agent ran)."""
        try:
            self._links[run_id] = ((wt / ".git").read_bytes(), self._worktree_gitdir(wt))
        except (OSError, GitError):
            self._links.pop(run_id, None)

    def _admin_dir(self, handle: WorkspaceHandle) -> Path | None:
        """The worktree's private git dir: as recorded at ``prepare``, else found by git's back-link."""
        known = self._links.get(handle.run_id)
        if known is not None:
            return known[1]
        want = os.path.realpath(Path(handle.path) / ".git")
        base = self.common_dir / "worktrees"
        try:
            admins = sorted(base.iterdir())
        except OSError:
            return None
        for admin in admins:
            try:
                link = (admin / "gitdir").read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if os.path.realpath(admin / link) == want:
                return admin.resolve()
        return None

    def _check_link(self, handle: WorkspaceHandle, *, repair: bool = False) -> list[str]:
        """Is the worktree still linked to its own admin dir, and that to this repository?

        Why: the runtime runs ``git add``/``commit-tree``/``update-ref``/``checkout`` inside the
        worktree. An agent that rewrites the worktree's ``.git`` file (``gitdir: ../../.git``),
        replaces it by a folder or symlink, or rewrites the admin dir's ``commondir``,
        ``gitdir`` or ``HEAD`` would make those commands act on the user's checkout. With
        ``repair`` the links are put back as git made them (the agent's ``.git`` entry is moved
        to ``.loop-runtime/quarantine``) so that the attempt can still be held for review.
        """
        wt = Path(handle.path)
        problems: list[str] = []
        admin = self._admin_dir(handle)
        if admin is None:
            return [f"{handle.path}: no git admin dir links back to this worktree"]
        dotgit = wt / ".git"
        expected = self._links.get(handle.run_id, (f"gitdir: {admin}\n".encode(), admin))[0]
        try:
            st = os.lstat(dotgit)
            data = dotgit.read_bytes() if stat.S_ISREG(st.st_mode) else None
        except OSError:
            st, data = None, None
        if data is None:
            kind = "missing" if st is None else ("a symlink" if stat.S_ISLNK(st.st_mode) else "not a file")
            problems.append(f"the worktree's .git is {kind}")
        elif data != expected and not self._points_to(wt, data, admin):
            problems.append(f"the worktree's .git file was rewritten ({decode(data[:120]).strip()!r})")
        want = {
            "commondir": lambda t: os.path.realpath(admin / t) == os.path.realpath(self.common_dir),
            "gitdir": lambda t: os.path.realpath(admin / t) == os.path.realpath(dotgit),
            "HEAD": lambda t: t == f"ref: refs/heads/{handle.branch}" or re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", t),
        }
        for name, ok in want.items():
            try:
                text = (admin / name).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                text = None
            if text is None or not ok(text):
                problems.append(f"git worktree metadata {name} was changed ({(text or '(missing)')[:80]!r})")
        for extra in ("config.worktree", "commondir.lock"):
            if (admin / extra).exists():
                problems.append(f"git worktree metadata {extra} was added")
        if problems and repair:
            self._repair_link(handle, admin, expected)
        return problems

    @staticmethod
    def _points_to(wt: Path, data: bytes, admin: Path) -> bool:
        lines = decode(data).splitlines()
        if len(lines) != 1 or not lines[0].startswith("gitdir:"):
            return False
        return os.path.realpath(wt / lines[0][len("gitdir:"):].strip()) == os.path.realpath(admin)

    def _quarantine(self, handle: WorkspaceHandle, src: Path, rel: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = self.root / ".loop-runtime" / "quarantine" / f"{stamp}-{handle.run_id}" / rel
        if dest.exists() or dest.is_symlink():
            dest = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:6]}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dest))

    def _repair_link(self, handle: WorkspaceHandle, admin: Path, expected: bytes) -> None:
        wt = Path(handle.path)
        dotgit = wt / ".git"
        if dotgit.is_symlink() or dotgit.exists():
            if dotgit.is_symlink() or not dotgit.is_file():
                self._quarantine(handle, dotgit, "worktree.git")
        _atomic_write(dotgit, expected)
        rel_common = os.path.relpath(self.common_dir, admin)
        fixes = {"commondir": f"{rel_common}\n", "gitdir": f"{dotgit}\n", "HEAD": f"ref: refs/heads/{handle.branch}\n"}
        for name, text in fixes.items():
            _atomic_write(admin / name, text.encode("utf-8"))
        for extra in ("config.worktree", "commondir.lock"):
            if (admin / extra).exists():
                self._quarantine(handle, admin / extra, f"admin-{extra}")

    def _safe(self, handle: WorkspaceHandle) -> Path:
        """The worktree path, after proving git commands run there act on this worktree only."""
        problems = self._check_link(handle)
        if problems:
            raise GitError(f"worktree {handle.run_id} was tampered with, not running git in it: "
                           + "; ".join(problems))
        return Path(handle.path)

    def nested_git(self, handle: WorkspaceHandle) -> list[str]:
        """Every entry below the worktree that a filesystem could resolve to ``.git``: nested
        repositories, gitdir pointer files, ``.git`` symlinks — tracked, untracked or ignored
        (``git add -A`` skips a nested repository's content, so the diff alone cannot see them)."""
        root = Path(handle.path)
        found: list[str] = []
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                name = entry.name
                rel = os.path.relpath(entry.path, root).replace(os.sep, "/")
                if rel == ".git":
                    continue  # the worktree's own link, checked by _check_link
                if (not name.isascii() or "git" in name.lower()) and git_component(name) is not None:
                    found.append(rel)
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                except OSError:
                    continue
        return sorted(found)

    def integrity(self, handle: WorkspaceHandle) -> tuple[str, ...]:
        """Why the worktree can no longer be trusted as made (empty when it can).

        The worktree's links are repaired and nested ``.git`` entries moved to
        ``.loop-runtime/quarantine`` so the runtime's own later git commands (holding the
        attempt for review, discarding it) stay inside the worktree.
        """
        if not Path(handle.path).is_dir():
            return ()
        problems = self._check_link(handle, repair=True)
        for rel in self.nested_git(handle):
            problems.append(f"nested git entry {rel} (a repository or gitdir pointer inside the worktree)")
            try:
                self._quarantine(handle, Path(handle.path) / rel, f"nested/{rel}")
            except OSError:
                pass
        return tuple(problems)
