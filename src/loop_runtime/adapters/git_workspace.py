"""``GitWorkspace``: one git worktree per act attempt, recorded the way loop-worktree records it.

Why worktrees: at L2 an agent may change code, but never the user's checkout or the
base branch. Each attempt gets ``.loop-worktrees/<run-id>`` on a new branch
``loop/<run-id>`` from the base commit, listed in ``.loop-worktrees/manifest.json`` so
the ecosystem's ``loop-worktree list/cleanup/gc`` see our attempts (R25). Manifest
updates happen under ``.loop-worktrees/.manifest.mutex`` (stale after 30 s); advisory
locks in ``.loop-worktrees/locks/*.json`` by other owners are honoured, read under the
tool's own ``locks/.mutex``.

The diff is the truth: ``diff`` stages everything in the worktree's own index and
asks git what changed against the base commit; ``finish`` commits exactly the tree that
was checked (files written later, such as test caches, are left out), with ``Loop-Run-Id`` and
``Loop-Pattern`` trailers, and writes the binary-safe patch to
``.loop-runtime/patches/<run-id>.patch``. A rejected attempt is discarded and its
branch deleted; its worktree may be recycled into a small pool
(``.loop-runtime/worktree-pool``) so a repeat attempt costs a ``checkout`` + ``clean``
instead of writing every file of the repository again.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from ..core.control_files import git_component
from ..core.redact import MARK, redact
from ..errors import ConfigError, GitError
from ..formats import worktree_manifest as wm
from ..ports import Clock, Diff, WorkspaceHandle
from .clock import SystemClock
from .git import decode, diff_against, git_ok, run_git, run_git_bytes
from . import locked_files
from .locked_files import atomic_write

__all__ = ["GitWorkspace"]

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
    from .locked_files import FileLocked, exclusive_create_lock

    try:
        with exclusive_create_lock(path, stale_s=stale_s, timeout_s=wait_s, display=str(path)):
            yield
    except FileLocked:
        raise GitError(f"timed out waiting for {path}: another process holds it; "
                       f"delete it if no loop is running") from None


class GitWorkspace:
    """``ports.Workspace`` over git worktrees of the repository at ``root``."""

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

    # ------------------------------------------------------------------ locks

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

    # ------------------------------------------------------------------ prepare

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

    # ------------------------------------------------------------------ pool

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

    # ------------------------------------------------------------------ integrity

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

        from ..core.secrets import added_secrets

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

    # ------------------------------------------------------------------ merge

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

    # ------------------------------------------------------------------ bookkeeping

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


    # ------------------------------------------------------------------ after a human decision

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
