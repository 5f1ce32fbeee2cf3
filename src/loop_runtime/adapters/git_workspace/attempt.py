"""One attempt's life: ``prepare`` a worktree, ``diff`` it, ``finish`` it (commit, hold, discard),
and the clean base checkout its tests are compared against.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ...core.redact import redact
from ...errors import ConfigError, GitError
from ...formats import worktree_manifest as wm
from ...ports import Diff, WorkspaceHandle
from ..git import decode, diff_against, git_ok, run_git, run_git_bytes
from .base import _RUN_ID, BASE_DIR, PATCH_DIR, STATUSES, WorkspaceBase, _atomic_write, _clear_index_flags

__all__ = ["Attempt"]


class Attempt(WorkspaceBase):
    """Preparing, diffing, committing and discarding attempts."""

    def prepare(self, run_id: str, pattern: str, *, paths: Sequence[str] | None = None) -> WorkspaceHandle:
        """A fresh worktree for one attempt. ``paths``: globs it may touch (default: anything)."""
        if not _RUN_ID.match(run_id) or ".." in run_id or run_id.endswith((".lock", ".")):
            raise ConfigError("", "run_id", run_id)
        self._ensure_excluded()
        base_branch, base_commit = self._resolve_base()
        rel, branch = self._rel(run_id), f"loop/{run_id}"
        dest = self.root / rel
        with self._locked():
            manifest = self._read_manifest()
            old = manifest.get(run_id)
            if old is not None and old.status == "active":
                raise GitError(f'run id "{run_id}" already has an active worktree at {old.path}')
            blocked = self.foreign_locks(tuple(paths or ("**",)), (pattern, run_id))
            if blocked:
                raise GitError("; ".join(blocked) + " — not starting an attempt on locked paths")
            if self._branch_exists(branch):
                raise GitError(f"branch {branch} already exists; choose a new run id or delete the branch")
            if dest.exists() or dest.is_symlink():
                raise GitError(f"{rel} already exists on disk; run `loop-worktree gc` or remove it")
            pooled = self._take_from_pool(dest)
            entry = wm.WorktreeEntry(id=run_id, path=rel, branch=branch, base_branch=base_branch, pattern=pattern,
                                     created_at=wm.format_timestamp(self.clock.now()), status="active",
                                     base_commit=base_commit)
            self._write_manifest(wm.upsert(manifest, entry))
        try:
            if pooled:
                self._reset_pooled(dest, branch, base_commit)
            else:
                run_git(["worktree", "add", "-q", "-b", branch, rel, base_commit], self.root)
        except GitError:
            self._undo_prepare(run_id, old, dest, branch)
            raise
        self._checked.pop(run_id, None)
        self._remember_link(run_id, dest)
        return WorkspaceHandle(run_id=run_id, path=str(dest), branch=branch, base_branch=base_branch,
                               base_commit=base_commit)

    def _undo_prepare(self, run_id: str, old: wm.WorktreeEntry | None, dest: Path, branch: str) -> None:
        if dest.exists():
            git_ok(["worktree", "remove", "--force", str(dest)], self.root)
        git_ok(["worktree", "prune"], self.root)
        if self._branch_exists(branch):
            git_ok(["branch", "-D", branch], self.root)
        with self._locked():
            m = self._read_manifest()
            self._write_manifest(wm.upsert(m, old) if old is not None else wm.remove(m, [run_id]))

    @contextmanager
    def base_checkout(self, commit: str) -> Iterator[str]:
        """A clean detached worktree at ``commit`` for the ``with`` block, then removed.

        Why: the base commit's tests must run on exactly the committed tree — never in the
        user's checkout (their edits, their caches) and never in an attempt's worktree. It
        is not an attempt, so it is not in the manifest and has no branch.
        """
        if not re.fullmatch(r"[0-9a-fA-F]{7,64}", commit):
            raise ConfigError("", "base_commit", commit)
        self._ensure_excluded()
        dest = self.root / BASE_DIR / f"{commit[:12]}-{uuid.uuid4().hex[:8]}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        run_git(["worktree", "add", "-q", "--detach", str(dest), commit], self.root)
        try:
            yield str(dest)
        finally:
            if not git_ok(["worktree", "remove", "--force", "--force", str(dest)], self.root):
                import shutil

                shutil.rmtree(dest, ignore_errors=True)
                git_ok(["worktree", "prune"], self.root)

    # ------------------------------------------------------------------ diff

    def diff(self, handle: WorkspaceHandle) -> Diff:
        """What the attempt changed against its base commit, staged in the worktree's own index."""
        wt = self._safe(handle)
        _clear_index_flags(wt)  # an assume-unchanged/skip-worktree flag would hide an edit from `add -A`
        run_git(["add", "-A"], wt)
        self._checked[handle.run_id] = run_git(["write-tree"], wt)
        return diff_against(wt, handle.base_commit)

    def discard_side_effects(self, handle: WorkspaceHandle) -> None:
        """Put the worktree back to the tree ``diff()`` checked, after the tests ran in it.

        Test runs leave artefacts (``__pycache__``, coverage files, rewritten snapshots); they
        are not part of the reviewed change and must not reach the commit. Tracked files
        are restored from the worktree's index (which holds the checked tree) and files the
        index does not know are removed; ignored files are left alone (git never commits them).
        """
        if handle.run_id not in self._checked:
            return
        wt = self._safe(handle)
        changed = run_git_bytes(["diff-files", "--name-only", "-z"], wt)  # stat check: rewrite only these
        if changed.strip(b"\0"):
            run_git_bytes(["checkout-index", "-f", "-z", "--stdin"], wt, input=changed)
        run_git(["clean", "-fdq"], wt)

    # ------------------------------------------------------------------ finish

    def finish(self, handle: WorkspaceHandle, status: str, *, commit_message: str | None = None) -> str | None:
        """Record the attempt's outcome; commit first when a message is given (never for ``rejected``)."""
        if status not in STATUSES:
            raise ConfigError(wm.MANIFEST_FILE, "status", status, valid=STATUSES)
        sha = None
        if status == "rejected":
            try:
                self._discard(handle)
            finally:
                self.mark(handle.run_id, "rejected")
            return None
        if commit_message is not None:
            sha = self._commit(handle, commit_message)
        elif status == "escalated" and Path(handle.path).is_dir():
            self._check_link(handle, repair=True)  # never run git in a worktree that points elsewhere
            patch = self._patch_between(Path(handle.path), handle.base_commit, self._tree_of(handle))
            if self._adds_secret(patch):  # escalated for another reason first: still no verbatim copy here
                self.withhold(handle)
            else:  # what the human will be asked to approve
                _atomic_write(self.root / PATCH_DIR / f"{handle.run_id}.patch",
                              patch.encode("utf-8", "surrogateescape"))
        self.mark(handle.run_id, status)
        return sha

    def _adds_secret(self, patch: str) -> bool:
        """Does an added line of ``patch`` carry a credential (the ``secret-in-diff`` detector)?"""
        from types import SimpleNamespace

        from ...core.secrets import added_secrets

        files: dict[str, list[str]] = {}
        current: list[str] = []
        for ln in patch.splitlines():
            if ln.startswith("+++ "):
                current = files.setdefault(ln[4:].removeprefix("b/"), [])
            elif ln.startswith("+"):
                current.append(ln[1:])
        changes = [SimpleNamespace(path=p, added_lines=tuple(lines), is_binary=False) for p, lines in files.items()]
        return bool(added_secrets(changes, self.secrets))

    def withhold(self, handle: WorkspaceHandle) -> None:
        """An escalation whose diff adds a secret (``secret-in-diff``): the store's held diff must be the
        only verbatim record, so no patch file is written, the worktree's content is removed and the
        attempt's branch deleted. ``apply_held`` re-creates the change from the store's diff on approval."""
        (self.root / PATCH_DIR / f"{handle.run_id}.patch").unlink(missing_ok=True)
        self._discard(handle)

    def _tree_of(self, handle: WorkspaceHandle) -> str:
        """The checked tree of the attempt, or (no diff yet) the worktree as it stands."""
        tree = self._checked.get(handle.run_id)
        if tree is None:
            wt = self._safe(handle)
            run_git(["add", "-A"], wt)
            tree = run_git(["write-tree"], wt)
        return tree

    def _discard(self, handle: WorkspaceHandle) -> None:
        wt = Path(handle.path)
        self._checked.pop(handle.run_id, None)
        if wt.resolve() in self._worktrees():
            self._check_link(handle, repair=True)  # a recycled worktree runs checkout/clean in itself
            with self._locked():
                recycled = self._recycle(wt, handle.base_commit)
            if not recycled:
                run_git(["worktree", "remove", "--force", "--force", str(wt)], self.root)
        git_ok(["worktree", "prune"], self.root)
        if self._branch_exists(handle.branch):
            run_git(["branch", "-D", handle.branch], self.root)

    def _pattern_of(self, run_id: str) -> str:
        entry = self._read_manifest().get(run_id)
        return entry.pattern if entry is not None else "unknown"

    def _commit(self, handle: WorkspaceHandle, message: str) -> str | None:
        """Commit the tree ``diff`` showed — not whatever the worktree holds now (test caches, a
        verifier's stray edit): what was checked is exactly what lands on the branch."""
        wt = self._safe(handle)
        tree = self._tree_of(handle)  # no diff() in this process: commit the worktree as it is
        if tree == run_git(["rev-parse", f"{handle.base_commit}^{{tree}}"], wt):
            return None  # nothing to commit
        text = (f"{redact(message, extra_secrets=self.secrets).rstrip()}\n\nLoop-Run-Id: {handle.run_id}\n"
                f"Loop-Pattern: {self._pattern_of(handle.run_id)}\n")
        sha = run_git(["commit-tree", tree, "-p", handle.base_commit, "-F", "-"], wt, input=text,
                      env=self._identity())
        run_git(["update-ref", "-m", "loop-runtime: attempt commit", f"refs/heads/{handle.branch}", sha], wt)
        run_git(["symbolic-ref", "HEAD", f"refs/heads/{handle.branch}"], wt)
        run_git(["reset", "-q"], wt)  # index = the commit; later edits stay as unstaged changes
        self._write_patch(handle, sha)
        return sha

    def _patch_between(self, wt: Path, base: str, rev: str) -> str:
        """The binary-safe patch from ``base`` to a commit or tree, in ``Diff.patch``'s format."""
        return decode(run_git_bytes(["diff-tree", "-p", "-M", "--binary", "--no-ext-diff", "--no-textconv",
                                     "--src-prefix=a/", "--dst-prefix=b/", base, rev], wt))

    def _write_patch(self, handle: WorkspaceHandle, rev: str) -> None:
        """``.loop-runtime/patches/<run-id>.patch``: the exact change, kept for review and approval."""
        patch = self._patch_between(Path(handle.path), handle.base_commit, rev)
        _atomic_write(self.root / PATCH_DIR / f"{handle.run_id}.patch", patch.encode("utf-8", "surrogateescape"))
