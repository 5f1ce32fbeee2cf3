"""What a snapshot holds (``FileState``, ``OutsideSnapshot``), how one file is read into it, and how
one is written back or set aside in the quarantine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RUNTIME_DIRS = (".loop-worktrees", ".loop-runtime")
QUARANTINE = ".loop-runtime/quarantine"
KEEP_BYTES = 1 << 20  # files up to 1 MiB are kept in memory so they can be put back
KEEP_TOTAL = 64 << 20
HASH_BYTES = 32 << 20  # above this, the stat signature alone decides
WALK_LIMIT = 200_000
NO_LOCKS = {"GIT_OPTIONAL_LOCKS": "0"}
"""Reads only: ``git status`` must not refresh (write) the user's index while an agent may run."""


@dataclass(frozen=True)
class FileState:
    """A file as the snapshot saw it. ``data`` is kept for small files so they can be restored."""

    kind: str  # file | link | dir | missing
    sig: tuple[int, ...] = ()
    digest: str | None = None
    data: bytes | None = None
    target: str | None = None

    def same_as(self, other: FileState) -> bool:
        if self.kind != other.kind:
            return False
        if self.kind == "link":
            return self.target == other.target
        if self.kind != "file" or self.sig == other.sig:
            return True
        mode_same = self.sig[-1:] == other.sig[-1:]
        return mode_same and self.digest is not None and self.digest == other.digest


@dataclass(frozen=True)
class OutsideSnapshot:
    root: str
    head: str | None
    head_ref: str | None  # refs/heads/<branch>, None when detached
    refs: Mapping[str, str]
    status: Mapping[str, str]  # path -> porcelain v2 record without the path ("?" / "!" for untracked / ignored)
    files: Mapping[str, FileState]  # every path in status
    ignored_trees: Mapping[str, Mapping[str, tuple[int, ...]]] = field(default_factory=dict)
    meta: Mapping[str, bytes | None] = field(default_factory=dict)  # git config / hooks, by path in the git dir
    index: str | None = None  # digest of the index entries (mode, blob, stage, flags, path): no stat noise
    index_data: bytes | None = None  # the index file itself, to put back
    # files the runtime writes while agents run (state files, run log, ledger, kill switches, runtime
    # data): path -> (what is there, the digest of the runtime's last recorded write of it)
    spine: Mapping[str, tuple[FileState, frozenset[str]]] = field(default_factory=dict)


def _read_state(path: Path, budget: list[int]) -> FileState:
    try:
        st = os.lstat(path)
    except OSError:
        return FileState("missing")
    if stat.S_ISLNK(st.st_mode):
        return FileState("link", target=os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return FileState("dir")
    sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, stat.S_IMODE(st.st_mode))
    if st.st_size > HASH_BYTES:
        return FileState("file", sig)
    try:
        data = path.read_bytes()
    except OSError:
        return FileState("file", sig)
    keep = st.st_size <= KEEP_BYTES and budget[0] >= st.st_size
    if keep:
        budget[0] -= st.st_size
    return FileState("file", sig, hashlib.sha256(data).hexdigest(), data if keep else None)


def _walk(base: Path) -> dict[str, tuple[int, ...]]:
    """Stat signatures of every entry under an ignored folder (bounded)."""
    out: dict[str, tuple[int, ...]] = {}
    stack = [base]
    while stack and len(out) < WALK_LIMIT:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            rel = os.path.relpath(entry.path, base).replace(os.sep, "/")
            out[rel] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return out


class _Quarantine:
    """``.loop-runtime/quarantine/<ts>/``: where the agent's files go instead of being deleted."""

    def __init__(self, root: Path) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.dir = root / QUARANTINE / f"{stamp}-{uuid.uuid4().hex[:6]}"

    def _dest(self, rel: str) -> Path:
        dest = self.dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    def move(self, src: Path, rel: str) -> None:
        shutil.move(str(src), str(self._dest(rel)))

    def copy(self, src: Path, rel: str) -> None:
        if src.is_symlink() or src.is_file():
            shutil.copy2(str(src), str(self._dest(rel)), follow_symlinks=False)


def _write_back(target: Path, state: FileState) -> bool:
    if target.is_symlink() or target.exists():
        if target.is_dir() and not target.is_symlink():
            return False
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    if state.kind == "link" and state.target is not None:
        os.symlink(state.target, target)
        return True
    if state.kind != "file" or state.data is None:
        return False
    tmp = target.with_name(f".{target.name}.loop-restore")
    tmp.write_bytes(state.data)
    os.chmod(tmp, state.sig[-1])
    os.replace(tmp, target)
    return True
