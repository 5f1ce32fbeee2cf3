"""The git dir's metadata: what can redirect git or run code (config, hooks, ``info/``, alternates,
``modules/``, every linked worktree's links) and the index — read before any git command runs,
and put back first.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from ...errors import GitError
from ..git import run_git, run_git_bytes
from .files import KEEP_TOTAL, RUNTIME_DIRS, OutsideSnapshot, _Quarantine
from .files import NO_LOCKS as _NO_LOCKS

_META_FILES = ("config", "config.worktree", "objects/info/alternates", "shallow", "commondir")
_WT_META = ("commondir", "gitdir", "config.worktree", "locked")  # per linked worktree, .git/worktrees/<id>/
_MODULE_FILES = frozenset({"config", "HEAD", "commondir", "gitdir", "config.worktree"})
META_LIMIT = 5_000


_BULK = frozenset({"objects", "logs", "refs", "rr-cache", "lfs"})  # large and not code-running


def _files_under(base: Path, limit: int) -> list[Path]:
    out: list[Path] = []
    stack = [base]
    while stack and len(out) < limit:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if e.name not in _BULK:
                    stack.append(Path(e.path))
            else:
                out.append(Path(e.path))
    return out


_LOOP_ADMIN = re.compile(r"^worktrees/([^/]*(?:-a\d+|slot-[0-9a-f]{8,}\d*))/")
_IN_RUNTIME = b"(a loop worktree inside the runtime's folders)"
_LOOP_MARK = "(loop worktree)"


def _skip_meta(name: str, before: OutsideSnapshot, after: OutsideSnapshot) -> bool:
    """Attempts' worktrees of any loop come and go while an agent runs; only their links count."""
    if name.endswith("/" + _LOOP_MARK):
        return True
    if not name.startswith("worktrees/"):
        return False
    mark = name.split("/", 2)[0] + "/" + name.split("/", 2)[1] + "/" + _LOOP_MARK
    loop = mark in before.meta or mark in after.meta
    return loop and (name not in before.meta or name not in after.meta)


def _points_into_runtime(git_dir: Path, admin: Path) -> bool:
    try:
        link = (admin / "gitdir").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    joined = os.path.normpath(os.path.join(admin, link))  # not resolving the link's last part: an
    target = os.path.join(os.path.realpath(os.path.dirname(joined)), os.path.basename(joined))  # agent's symlink
    top = os.path.realpath(git_dir.parent)
    return any(target.startswith(os.path.join(top, d) + os.sep) for d in RUNTIME_DIRS)


def _meta(git_dir: Path) -> dict[str, bytes | None]:
    """What in the git dir can redirect or run code: config, hooks, ``info/`` (attributes,
    excludes, grafts, sparse-checkout), alternates, submodules' git dirs (``modules/``), and
    every linked worktree's links (``worktrees/<id>/commondir``, ``gitdir`` …)."""
    names = list(_META_FILES)
    for sub in ("hooks", "info"):
        names += [p.relative_to(git_dir).as_posix() for p in _files_under(git_dir / sub, META_LIMIT)
                  if not (sub == "hooks" and p.name.endswith(".sample"))]
    modules = git_dir / "modules"
    if modules.is_dir():
        names += [p.relative_to(git_dir).as_posix() for p in _files_under(modules, META_LIMIT)
                  if p.name in _MODULE_FILES or "hooks" in p.relative_to(modules).parts[:-1]
                  or p.parent.name == "info"]
    out: dict[str, bytes | None] = {}
    worktrees = git_dir / "worktrees"
    if worktrees.is_dir():
        for admin in sorted(worktrees.iterdir()):
            key = f"worktrees/{admin.name}/"
            inside = _points_into_runtime(git_dir, admin)
            if inside or _LOOP_ADMIN.match(key):  # an attempt's worktree: its HEAD moves, the pool moves it
                names += [key + n for n in _WT_META]
                out[key + _LOOP_MARK] = b"1"
                if inside:
                    out[key + "gitdir"] = _IN_RUNTIME
            else:
                names += [key + n for n in (*_WT_META, "HEAD")]
    for name in names:
        if name in out:
            continue
        try:
            out[name] = (git_dir / name).read_bytes()
        except OSError:
            out[name] = None
    return out


def _git_dir(root: Path) -> Path:
    return Path(run_git(["rev-parse", "--path-format=absolute", "--git-common-dir"], root))


def _index(root: Path, git_dir: Path) -> tuple[str | None, bytes | None]:
    """The index by its entries (not its stat cache, which any ``git status`` refreshes) and its bytes."""
    try:
        entries = run_git_bytes(["ls-files", "-s", "-v", "-z"], root, env=_NO_LOCKS)
    except GitError:
        return None, None
    try:
        path = git_dir / "index"
        data = path.read_bytes() if path.stat().st_size <= KEEP_TOTAL else None
    except OSError:
        data = None
    return hashlib.sha256(entries).hexdigest(), data


def _restore_meta(git_dir: Path, before: OutsideSnapshot, after: OutsideSnapshot, q: _Quarantine) -> list[str]:
    done: list[str] = []
    for name in sorted(set(before.meta) | set(after.meta)):
        old, new = before.meta.get(name), after.meta.get(name)
        if old == new or _skip_meta(name, before, after):
            continue
        if old == _IN_RUNTIME:
            done.append(f"NOT restored git {name}: an attempt's worktree link (its loop repairs it)")
            continue
        target = git_dir / name
        try:
            if old is None:
                if target.is_symlink() or target.exists():
                    q.move(target, f".git/{name}")
                done.append(f"quarantined git {name}")
            else:
                if target.is_symlink() or target.is_file():
                    q.copy(target, f".git/{name}")
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    target.unlink()
                elif target.is_dir():
                    q.move(target, f".git/{name}")
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.loop-restore")
                tmp.write_bytes(old)
                os.replace(tmp, target)
                done.append(f"restored git {name}")
        except OSError as exc:
            done.append(f"NOT restored git {name}: {exc}")
    return done


def _restore_git_index(git_dir: Path, before: OutsideSnapshot, after: OutsideSnapshot) -> list[str]:
    if before.index == after.index:
        return []
    if before.index_data is None:
        return ["NOT restored the git index: too large to keep a copy"]
    tmp = git_dir / f".index.{uuid.uuid4().hex[:6]}.loop-restore"
    tmp.write_bytes(before.index_data)
    os.replace(tmp, git_dir / "index")
    return ["restored the git index"]
