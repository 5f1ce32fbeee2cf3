"""After the verdict: ``merge`` an attempt into the base branch (L3), or ``apply_held`` an escalated
change a human approved.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ...core.redact import MARK, redact
from ...errors import ConfigError, GitError
from ...formats import worktree_manifest as wm
from ...ports import WorkspaceHandle
from ..git import decode, git_ok, run_git, run_git_bytes
from .base import _RUN_ID, PATCH_DIR, WorkspaceBase

__all__ = ["Merge"]


class Merge(WorkspaceBase):
    """Merging attempts and re-creating approved held changes."""

    def merge(self, handle: WorkspaceHandle) -> str:
        """Merge ``loop/<run-id>`` into the base branch in the main checkout (L3, on the engine's word)."""
        root = self.root
        dirty = run_git_bytes(["status", "--porcelain", "-z", "--untracked-files=no"], root,
                              env={"GIT_OPTIONAL_LOCKS": "0"})
        entries = [decode(e)[3:] for e in dirty.split(b"\0") if len(e) > 3]
        if any(path not in self.own_files for path in entries):
            raise GitError(f"main checkout has uncommitted changes; not merging {handle.branch}")
        try:
            head = run_git(["symbolic-ref", "-q", "HEAD"], root)
        except GitError:
            head = ""
        if head != f"refs/heads/{handle.base_branch}":
            raise GitError(f"main checkout is on {head or 'a detached HEAD'}, not {handle.base_branch}; "
                           f"not merging {handle.branch}")
        if not self._branch_exists(handle.branch):
            raise GitError(f"branch {handle.branch} not found; nothing to merge")
        try:
            run_git(["merge", "-q", "--ff", "--no-edit", "-m", f"Merge {handle.branch} (loop-runtime)",
                     handle.branch], root, env=self._identity())
        except GitError:
            git_ok(["merge", "--abort"], root)
            raise
        self.mark(handle.run_id, "merged")
        return run_git(["rev-parse", "HEAD"], root)

    # ------------------------------------------------------------------ approve later

    def _tree_with_patch(self, base_commit: str, patch: str) -> str:
        with tempfile.TemporaryDirectory(prefix="loop-runtime-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            run_git(["read-tree", base_commit], self.root, env=env)
            if patch.strip():
                run_git(["apply", "--cached", "--binary"], self.root, input=patch, env=env)
            return run_git(["write-tree"], self.root, env=env)

    def apply_held(self, run_id: str, patch: str, pattern: str, message: str) -> WorkspaceHandle:
        """Re-create (or reuse) an escalated attempt's worktree with its stored patch, and commit it.

        ``patch`` may be the redacted copy a human reviewed; the exact patch written at
        escalation (``.loop-runtime/patches/<run-id>.patch``) or a worktree that still holds
        the change is then used instead — never a ``[REDACTED]`` placeholder.
        """
        if not _RUN_ID.match(run_id) or ".." in run_id:
            raise ConfigError("", "run_id", run_id)
        self._ensure_excluded()
        entry = self._read_manifest().get(run_id)
        if entry is not None and entry.base_commit:
            base_branch, base_commit = entry.base_branch, entry.base_commit
        else:
            base_branch, base_commit = self._resolve_base()
        rel, branch = self._rel(run_id), f"loop/{run_id}"
        wt = self.root / rel
        patch = self._unredacted(run_id, patch)
        if wt.resolve() in self._worktrees():
            run_git(["add", "-A"], wt)
            current = run_git(["write-tree"], wt)
            if self._holds(wt, base_commit, current, patch):
                target = current
            else:
                target = self._reapply(run_id, wt, patch, reset=base_commit)
        else:
            git_ok(["worktree", "prune"], self.root)
            if wt.exists():
                raise GitError(f"{rel} exists but is not a git worktree; remove it to approve {run_id}")
            if MARK in patch:
                self._reapply(run_id, wt, patch)  # refuses before touching anything
            # detached: the branch (maybe holding the escalated commit) moves only when we commit
            run_git(["worktree", "add", "-q", "--detach", rel, base_commit], self.root)
            try:
                target = self._reapply(run_id, wt, patch)
            except GitError:
                git_ok(["worktree", "remove", "--force", "--force", str(wt)], self.root)
                raise
        new = wm.WorktreeEntry(id=run_id, path=rel, branch=branch, base_branch=base_branch, pattern=pattern,
                               created_at=entry.created_at if entry else wm.format_timestamp(self.clock.now()),
                               status="active", base_commit=base_commit, extra=entry.extra if entry else {})
        with self._locked():
            self._write_manifest(wm.upsert(self._read_manifest(), new))
        handle = WorkspaceHandle(run_id=run_id, path=str(wt), branch=branch, base_branch=base_branch,
                                 base_commit=base_commit)
        self._checked[run_id] = target
        self._commit(handle, message)
        return handle

    def _unredacted(self, run_id: str, patch: str) -> str:
        try:
            stored = decode((self.root / PATCH_DIR / f"{run_id}.patch").read_bytes())
        except OSError:
            return patch
        return stored if stored != patch and redact(stored) == patch else patch

    def _holds(self, wt: Path, base_commit: str, tree: str, patch: str) -> bool:
        """Does ``tree`` (the worktree as it is) hold exactly the held change?"""
        if MARK not in patch:
            return tree == self._tree_with_patch(base_commit, patch)
        current = self._patch_between(wt, base_commit, tree)
        return patch in (current, redact(current))

    def _reapply(self, run_id: str, wt: Path, patch: str, reset: str | None = None) -> str:
        if MARK in patch:
            raise GitError(f"the held patch of {run_id} is redacted and no exact copy is left; "
                           "re-run the attempt rather than commit a placeholder")
        if reset is not None:
            run_git(["checkout", "-q", "-f", "--detach", reset], wt)
            run_git(["clean", "-q", "-ffdx"], wt)
        self._apply(wt, patch)
        return run_git(["write-tree"], wt)

    def _apply(self, wt: Path, patch: str) -> None:
        if patch.strip():
            run_git(["apply", "--index", "--binary", "--whitespace=nowarn"], wt, input=patch)
