"""The worktree pool (``.loop-runtime/worktree-pool``): a discarded attempt's worktree is recycled so
a repeat attempt costs a ``checkout`` + ``clean`` instead of writing every file again.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from ...errors import GitError
from ..git import git_ok, run_git
from .base import _DIRTY_GIT_STATE, POOL_DIR, WorkspaceBase, _clear_index_flags

__all__ = ["Pool"]


class Pool(WorkspaceBase):
    """Taking, resetting, warming and refilling pooled worktrees."""

    def _pool_slots(self) -> list[Path]:
        pool = (self.root / POOL_DIR).resolve()
        return sorted(p for p, attrs in self._worktrees().items()
                      if p.parent == pool and "prunable" not in attrs and "locked" not in attrs)

    @staticmethod
    def _worktree_gitdir(wt: Path) -> Path:
        """A linked worktree's private git dir, read from its ``.git`` file (no subprocess)."""
        try:
            text = (wt / ".git").read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise GitError(f"{wt} is not a linked worktree: {exc}") from None
        if not text.startswith("gitdir:"):
            raise GitError(f"{wt}/.git is not a gitdir file")
        return (wt / text[len("gitdir:"):].strip()).resolve()

    def _slot_is_clean(self, slot: Path) -> bool:
        gitdir = self._worktree_gitdir(slot)
        return not any((gitdir / name).exists() for name in _DIRTY_GIT_STATE)

    def _take_from_pool(self, dest: Path) -> bool:
        """Move a pooled worktree to ``dest`` (cheap: a rename). False when the pool is empty."""
        if self.pool_size <= 0:
            return False
        for slot in self._pool_slots():
            try:
                if self._slot_is_clean(slot):
                    run_git(["worktree", "move", str(slot), str(dest)], self.root)
                    return True
            except GitError:
                pass
            git_ok(["worktree", "remove", "--force", "--force", str(slot)], self.root)
        return False

    def _reset_pooled(self, wt: Path, branch: str, base_commit: str) -> None:
        """Nothing of an earlier attempt may survive: flags, tracked edits, untracked and ignored files."""
        flagged = _clear_index_flags(wt)
        head = (self._worktree_gitdir(wt) / "HEAD").read_text(encoding="utf-8").strip()
        if head == base_commit and not flagged:
            # Recycled at this very commit: switch branch without rewriting 10,000 files, then prove
            # the index is the base tree and the files are the index; anything else gets a full reset.
            run_git(["checkout", "-q", "-b", branch], wt)
            pristine = git_ok(["diff-index", "--cached", "--quiet", base_commit, "--"], wt) and git_ok(
                ["diff-files", "--quiet"], wt)
            if not pristine:
                run_git(["checkout", "-q", "-f", "-B", branch, base_commit], wt)
        else:
            run_git(["checkout", "-q", "-f", "-b", branch, base_commit], wt)
        run_git(["clean", "-q", "-ffdx"], wt)

    def warm_pool(self) -> int:
        """Pre-create pooled worktrees up to ``pool_size`` so even first attempts are cheap."""
        _, base_commit = self._resolve_base()
        self._ensure_excluded()
        made = 0
        with self._locked():
            for _ in range(self.pool_size - len(self._pool_slots())):
                slot = self.root / POOL_DIR / f"slot-{uuid.uuid4().hex[:8]}"
                slot.parent.mkdir(parents=True, exist_ok=True)
                run_git(["worktree", "add", "-q", "--detach", str(slot), base_commit], self.root)
                made += 1
        return made

    def _recycle(self, wt: Path, base_commit: str) -> bool:
        if self.pool_size <= 0 or len(self._pool_slots()) >= self.pool_size:
            return False
        try:
            if not self._slot_is_clean(wt):
                return False
            run_git(["checkout", "-q", "-f", "--detach", base_commit], wt)
            run_git(["clean", "-q", "-ffdx"], wt)
            slot = self.root / POOL_DIR / f"slot-{uuid.uuid4().hex[:8]}"
            slot.parent.mkdir(parents=True, exist_ok=True)
            run_git(["worktree", "move", str(wt), str(slot)], self.root)
            return True
        except GitError:
            return False
