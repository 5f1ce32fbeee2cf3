"""The manifest's records of attempts and the advisory path locks of other owners.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ...errors import ConfigError
from ...formats import worktree_manifest as wm
from ...ports import WorkspaceHandle
from ..git import git_ok, run_git
from .base import _RUN_ID, LOCKS_DIR, LOCKS_MUTEX, PATCH_DIR, STATUSES, WorkspaceBase, _mutex

__all__ = ["Bookkeeping"]


class Bookkeeping(WorkspaceBase):
    """Manifest entries (attach, mark, recover, remove) and ``loop-worktree`` locks."""

    def _lock_files(self) -> list[wm.LockFile]:
        folder = self.root / LOCKS_DIR
        if not folder.is_dir():
            return []
        locks: list[wm.LockFile] = []
        with _mutex(self.root / LOCKS_MUTEX, wait_s=5.0):
            for path in sorted(folder.glob("*.json")):
                if path.name.endswith(".wait.json"):
                    continue
                try:
                    text = path.read_text(encoding="utf-8")
                except OSError:
                    continue
                locks.append(wm.parse_lock(text, file=f"{LOCKS_DIR}/{path.name}"))
        return locks

    def foreign_locks(self, paths: Sequence[str], owners: Sequence[str]) -> list[str]:
        """Why ``paths`` may not be touched: non-expired locks of other owners that overlap them."""
        now = self.clock.now()
        blocked: list[str] = []
        for lock in self._lock_files():
            if lock.owner in owners or wm.is_expired(lock, now):
                continue
            for p in paths:
                clash = next((lp for lp in lock.paths if wm.paths_overlap(p, lp)), None)
                if clash is not None:
                    until = f", expires {lock.expires_at}" if lock.expires_at else ""
                    blocked.append(f'path "{p}" is locked by owner "{lock.owner}" as "{clash}" '
                                   f"(locked at {lock.locked_at}{until})")
        return blocked

    def attach(self, run_id: str) -> WorkspaceHandle | None:
        """The handle of an attempt's existing ``active`` worktree (resuming a halted tick), else None."""
        entry = self._read_manifest().get(run_id)
        if entry is None or entry.status != "active" or not entry.base_commit:
            return None
        path = (self.root / entry.path).resolve()
        if path not in self._worktrees():
            return None
        return WorkspaceHandle(run_id=run_id, path=str(path), branch=entry.branch, base_branch=entry.base_branch,
                               base_commit=entry.base_commit)

    def mark(self, run_id: str, status: str) -> None:
        """Set a manifest entry's status (``fix-proposed`` is recorded as loop-worktree's ``active``)."""
        if status not in STATUSES:
            raise ConfigError(wm.MANIFEST_FILE, "status", status, valid=STATUSES)
        with self._locked():
            m = self._read_manifest()
            self._write_manifest(wm.set_status(m, run_id, "active" if status == "fix-proposed" else status))

    def recover_stale(self, older_than_s: float, live_run_ids: set[str]) -> list[str]:
        """``active`` attempts whose run died: worktree removed, branch kept if it has commits, marked ``stale``."""
        now = self.clock.now()
        stale: list[wm.WorktreeEntry] = []
        for e in self._read_manifest().worktrees:
            born = wm.parse_timestamp(e.created_at)
            old_enough = born is None or (now - born).total_seconds() >= older_than_s
            if e.status == "active" and e.id not in live_run_ids and old_enough:
                stale.append(e)
        registered = self._worktrees()
        for e in stale:
            wt = (self.root / e.path).resolve()
            if wt in registered:
                run_git(["worktree", "remove", "--force", "--force", str(wt)], self.root)
            self._checked.pop(e.id, None)
            if self._branch_exists(e.branch) and e.base_commit and git_ok(["cat-file", "-e", e.base_commit], self.root):
                ahead = run_git(["rev-list", "--count", f"{e.base_commit}..refs/heads/{e.branch}"], self.root)
                if ahead == "0":
                    run_git(["branch", "-D", e.branch], self.root)
        git_ok(["worktree", "prune"], self.root)
        with self._locked():
            m = self._read_manifest()
            for e in stale:
                current = m.get(e.id)
                if current is not None and current.status == "active":
                    m = wm.upsert(m, replace(current, status="stale"))
            self._write_manifest(m)
        return [e.id for e in stale]


    def handle_for(self, run_id: str) -> WorkspaceHandle | None:
        """The handle of any recorded attempt (whatever its status), for merging an approved change later."""
        entry = self._read_manifest().get(run_id)
        if entry is None:
            return None
        return WorkspaceHandle(run_id=run_id, path=str(self.root / entry.path), branch=entry.branch,
                               base_branch=entry.base_branch, base_commit=entry.base_commit or "")

    def remove(self, run_id: str, *, keep_branch: bool = False, status: str = "rejected") -> dict[str, object]:
        """A decided attempt is done: remove its worktree and held patch; delete its branch unless kept.

        Returns what was removed (``worktree``, ``branch``, ``patch``) so the caller can say so.
        """
        if not _RUN_ID.match(run_id) or ".." in run_id:
            raise ConfigError("", "run_id", run_id)
        entry = self._read_manifest().get(run_id)
        wt = (self.root / (entry.path if entry is not None else self._rel(run_id))).resolve()
        branch = entry.branch if entry is not None else f"loop/{run_id}"
        done: dict[str, object] = {"worktree": None, "branch": None, "patch": None, "branchKept": None}
        self._checked.pop(run_id, None)
        if wt in self._worktrees():
            run_git(["worktree", "remove", "--force", "--force", str(wt)], self.root)
            done["worktree"] = str(wt.relative_to(self.root)) if wt.is_relative_to(self.root) else str(wt)
        git_ok(["worktree", "prune"], self.root)
        if self._branch_exists(branch):
            if keep_branch:
                done["branchKept"] = branch
            else:
                run_git(["branch", "-D", branch], self.root)
                done["branch"] = branch
        patch = self.root / PATCH_DIR / f"{run_id}.patch"
        if not keep_branch and patch.exists():
            patch.unlink()
            done["patch"] = f"{PATCH_DIR}/{run_id}.patch"
        if entry is not None:
            self.mark(run_id, status)
        return done
