"""What every part of ``GitWorkspace`` shares: its settings, the repository root, the manifest and
its mutex, the base branch, the list of worktrees — and the module's constants and helpers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ...errors import ConfigError, GitError
from ...formats import worktree_manifest as wm
from ...ports import Clock
from .. import locked_files
from ..clock import SystemClock
from ..git import decode, git_ok, run_git, run_git_bytes
from ..locked_files import atomic_write

POOL_DIR = ".loop-runtime/worktree-pool"
BASE_DIR = ".loop-runtime/base-checkouts"
PATCH_DIR = ".loop-runtime/patches"
MUTEX = f"{wm.MANIFEST_DIR}/.manifest.mutex"
LOCKS_DIR = f"{wm.MANIFEST_DIR}/locks"
LOCKS_MUTEX = f"{LOCKS_DIR}/.mutex"
MUTEX_STALE_S = 30.0
MUTEX_WAIT_S = 15.0
EXCLUDES = (f"{wm.MANIFEST_DIR}/", ".loop-runtime/")
STATUSES = (*wm.VALID_STATUSES, "fix-proposed")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
# per-worktree state that makes a recycled worktree unsafe to hand out again
_DIRTY_GIT_STATE = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "BISECT_LOG", "rebase-merge", "rebase-apply",
                    "sequencer", "config.worktree", "info/sparse-checkout")
_FALLBACK_IDENT = {"GIT_AUTHOR_NAME": "loop-runtime", "GIT_AUTHOR_EMAIL": "loop-runtime@localhost",
                   "GIT_COMMITTER_NAME": "loop-runtime", "GIT_COMMITTER_EMAIL": "loop-runtime@localhost"}


_atomic_write = atomic_write  # the one atomic writer (temp + fsync + rename, mode kept)


def _clear_index_flags(wt: Path) -> list[str]:
    """Clear assume-unchanged and skip-worktree flags in a worktree's index; returns the flagged paths."""
    records = [rec for rec in decode(run_git_bytes(["ls-files", "-v", "-z"], wt)).split("\0") if rec]
    assumed = [rec[2:] for rec in records if rec[0].islower()]
    skipped = [rec[2:] for rec in records if rec[0] in "Ss"]
    # one flag option per call: update-index applies only the last of --no-assume-unchanged/--no-skip-worktree
    for option, paths in (("--no-assume-unchanged", assumed), ("--no-skip-worktree", skipped)):
        if paths:
            run_git(["update-index", option, "-z", "--stdin"], wt, input="".join(f"{p}\0" for p in paths))
    return sorted(set(assumed) | set(skipped))


@contextmanager
def _mutex(path: Path, *, stale_s: float = MUTEX_STALE_S, wait_s: float = MUTEX_WAIT_S) -> Iterator[None]:
    """An exclusive-create mutex file, as loop-worktree uses; older than ``stale_s`` means its owner died."""
    from ..locked_files import FileLocked, exclusive_create_lock

    try:
        with exclusive_create_lock(path, stale_s=stale_s, timeout_s=wait_s, display=str(path)):
            yield
    except FileLocked:
        raise GitError(f"timed out waiting for {path}: another process holds it; "
                       f"delete it if no loop is running") from None



class WorkspaceBase:
    """The state and basics each concern of ``GitWorkspace`` builds on."""

    mutex_wait_s = MUTEX_WAIT_S  # how long to wait for another process's manifest mutex

    def __init__(self, root: Path | str, *, base_branch: str | None = None, pool_size: int = 0,
                 clock: Clock | None = None, own_files: Sequence[str] = (), secrets: Sequence[str] = ()) -> None:
        if pool_size < 0:
            raise ConfigError("", "pool_size", pool_size)
        self._given_root = Path(root)
        self.base_branch = base_branch
        self.pool_size = pool_size
        self.clock: Clock = clock or SystemClock()
        self._root: Path | None = None
        self._common: Path | None = None
        self._checked: dict[str, str] = {}  # run id -> tree sha that diff() showed
        self._ident: dict[str, str] | None = None
        self.secrets = tuple(secrets)  # exact values a commit message must not carry
        self._links: dict[str, tuple[bytes, Path]] = {}  # run id -> (its .git file, its admin dir) as made
        # the loop's own bookkeeping (state file, run log, ledger) is rewritten every tick in the
        # main checkout; a merge that does not touch them may proceed while they are modified
        self.own_files = frozenset(own_files)

    # ------------------------------------------------------------------ basics

    @property
    def root(self) -> Path:
        if self._root is None:
            try:
                top = run_git(["rev-parse", "--show-toplevel"], self._given_root)
            except GitError as exc:
                if "not a git repository" not in str(exc).lower():
                    raise  # git could not run or failed otherwise: say that, not "not a repository"
                raise GitError(f"not a git repository: {self._given_root} (worktrees need git)") from None
            self._root = Path(top).resolve()
        return self._root

    def _rel(self, run_id: str) -> str:
        return f"{wm.MANIFEST_DIR}/{run_id}"

    def _identity(self) -> dict[str, str]:
        """Commit as the user when git knows who that is, else as ``loop-runtime``."""
        if self._ident is None:
            known = git_ok(["var", "GIT_AUTHOR_IDENT"], self.root) and git_ok(["var", "GIT_COMMITTER_IDENT"], self.root)
            self._ident = {} if known else dict(_FALLBACK_IDENT)
        return self._ident

    def _read_manifest(self) -> wm.Manifest:
        path = self.root / wm.MANIFEST_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return wm.Manifest()
        except OSError as exc:
            raise GitError(f"cannot read {wm.MANIFEST_FILE}: {exc}") from None
        return wm.parse_manifest(text, file=wm.MANIFEST_FILE)

    def _write_manifest(self, m: wm.Manifest) -> None:
        data = wm.render_manifest(m).encode("utf-8")
        with locked_files.recording(self.root, self.root / wm.MANIFEST_FILE, data):  # under the pool's mutex
            _atomic_write(self.root / wm.MANIFEST_FILE, data)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with _mutex(self.root / MUTEX, wait_s=self.mutex_wait_s):
            yield

    @property
    def common_dir(self) -> Path:
        if self._common is None:
            self._common = Path(run_git(["rev-parse", "--path-format=absolute", "--git-common-dir"], self.root))
        return self._common

    def _ensure_excluded(self) -> None:
        """Keep our folders out of ``git status`` via ``info/exclude``: the user's .gitignore is theirs."""
        exclude = self.common_dir / "info" / "exclude"

        def add(old: str | None) -> str | None:
            text = old or ""
            have = {ln.strip().lstrip("/").rstrip("/") for ln in text.splitlines()}
            missing = [p for p in EXCLUDES if p.rstrip("/") not in have]
            if not missing:
                return None
            sep = "" if not text or text.endswith("\n") else "\n"
            return text + sep + "".join(f"/{p}\n" for p in missing)

        if exclude.exists():  # cheap check first: every attempt calls this
            text = exclude.read_text(encoding="utf-8")
            have = {ln.strip().lstrip("/").rstrip("/") for ln in text.splitlines()}
            if all(p.rstrip("/") in have for p in EXCLUDES):
                return
        locked_files.update(self.root, exclude, add)

    def _resolve_base(self) -> tuple[str, str]:
        branch = self.base_branch
        if branch is None:
            try:
                branch = run_git(["symbolic-ref", "-q", "--short", "HEAD"], self.root) or "main"
            except GitError:
                branch = "main"
        for rev in (f"refs/heads/{branch}^{{commit}}", f"{branch}^{{commit}}"):
            try:
                return branch, run_git(["rev-parse", "--verify", "-q", rev], self.root)
            except GitError:
                continue
        raise GitError(f"base branch {branch!r} not found in {self.root}")

    def _branch_exists(self, branch: str) -> bool:
        return git_ok(["show-ref", "--verify", "-q", f"refs/heads/{branch}"], self.root)

    def _worktrees(self) -> dict[Path, dict[str, str]]:
        """``git worktree list --porcelain -z``: resolved path -> attributes (branch, detached, prunable...)."""
        out: dict[Path, dict[str, str]] = {}
        current: dict[str, str] = {}
        for field in decode(run_git_bytes(["worktree", "list", "--porcelain", "-z"], self.root)).split("\0"):
            if not field:
                if current.get("worktree"):
                    out[Path(os.path.realpath(current["worktree"]))] = current
                current = {}
                continue
            key, _, value = field.partition(" ")
            current[key] = value
        return out
