"""The outside-change guard: nothing outside an attempt's worktree may change while an agent runs.

Why: permission flags confine an agent's *edit tools*, not a shell it was given, nor a
buggy CLI. So the runtime checks the result instead. Before every agent run it takes
an ``OutsideSnapshot`` of the user's main checkout — ``git status`` (tracked changes,
untracked and ignored files), the content of every dirty, untracked or ignored file,
stat signatures inside ignored folders, ``HEAD`` (symbolic ref and target), every ref, the
index (by entry, so a stat refresh is no change), the git config, hooks, ``info/``,
``modules/`` and every linked worktree's links under ``worktrees/`` — and compares a second
snapshot after the run (every agent run and every test run). Any difference halts the tick.
Git metadata is read before any git command runs, and a changed config or hook is put back
first: ``core.fsmonitor``, a filter or a hook set by an agent must not run as the runtime.

``restore`` puts back what git can: refs and ``HEAD`` are reset, tracked files are
checked out from the previous ``HEAD`` (or rewritten from the saved content of a file
the user had been editing), new files are *moved* into
``.loop-runtime/quarantine/<ts>/`` rather than deleted, and any file about to be
overwritten is copied there first — a user editing during the run loses nothing.

The runtime's own folders (``.loop-worktrees``, ``.loop-runtime``) are not watched, and
the branches of recorded attempts (``refs/heads/loop/<id>``) may move: they live inside
the worktrees' world.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from ..errors import GitError, LoopError
from ..formats.worktree_manifest import MANIFEST_FILE, parse_manifest
from .git import decode, run_git, run_git_bytes

__all__ = ["FileState", "GitGuard", "OutsideSnapshot", "compare", "restore", "snapshot"]

RUNTIME_DIRS = (".loop-worktrees", ".loop-runtime")
QUARANTINE = ".loop-runtime/quarantine"
KEEP_BYTES = 1 << 20  # files up to 1 MiB are kept in memory so they can be put back
KEEP_TOTAL = 64 << 20
HASH_BYTES = 32 << 20  # above this, the stat signature alone decides
WALK_LIMIT = 200_000
_META_FILES = ("config", "config.worktree", "objects/info/alternates", "shallow", "commondir")
_WT_META = ("commondir", "gitdir", "config.worktree", "locked")  # per linked worktree, .git/worktrees/<id>/
_MODULE_FILES = frozenset({"config", "HEAD", "commondir", "gitdir", "config.worktree"})
META_LIMIT = 5_000
_NO_LOCKS = {"GIT_OPTIONAL_LOCKS": "0"}


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


# --------------------------------------------------------------------------- capture


def _maybe(args: list[str], root: Path) -> str | None:
    try:
        return run_git(args, root, env=_NO_LOCKS) or None
    except GitError:
        return None


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


def _parse_status(data: bytes) -> dict[str, str]:
    tokens = decode(data).split("\0")
    status: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        rec = tokens[i]
        i += 1
        if not rec:
            continue
        kind = rec[0]
        if kind in "?!":
            status[rec[2:]] = kind
        elif kind == "1":
            head, path = rec.split(" ", 8)[:8], rec.split(" ", 8)[8]
            status[path] = " ".join(head)
        elif kind == "2":
            parts = rec.split(" ", 9)
            status[parts[9]] = " ".join(parts[:9]) + " <- " + tokens[i]
            i += 1  # the original path
        elif kind == "u":
            parts = rec.split(" ", 10)
            status[parts[10]] = " ".join(parts[:10])
    return status


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


RUNTIME_DATA = (".loop-runtime/test-baselines/*.json", ".loop-runtime/promotion-evidence.json",
                ".loop-worktrees/manifest.json")
"""Runtime data in the main checkout that decides what the runtime does next: a forged base-test
baseline, promotion evidence or worktree manifest is an outside change like an edited state file."""


def spine_patterns(ignore: Iterable[str]) -> tuple[str, ...]:
    """The ignored paths that are *files the runtime writes* (not another process's temp files or
    loop-context's folder): still watched, by content against the runtime's write records."""
    from .locked_files import TEMP_MARK

    keep = [p for p in ignore if TEMP_MARK not in p and not p.startswith(".loop-context")]
    return (*keep, *RUNTIME_DATA)


def _spine(root: Path, patterns: Iterable[str]) -> dict[str, tuple[FileState, frozenset[str]]]:
    """Each file with the digests the runtime's write record allowed while it was read (another
    process's runtime write in flight must not look like an agent's)."""
    from .locked_files import written_digests

    paths: set[str] = set()
    for pat in patterns:
        if any(ch in pat for ch in "*?["):
            paths.update(p.relative_to(root).as_posix() for p in root.glob(pat))
        else:
            paths.add(pat)
    budget = [KEEP_TOTAL]
    out: dict[str, tuple[FileState, frozenset[str]]] = {}
    for p in sorted(paths):
        out[p] = written_digests(root, root / p, lambda p=p: _read_state(root / p, budget))
    return out


def _spine_changes(before: OutsideSnapshot, after: OutsideSnapshot) -> list[str]:
    """A watched runtime file whose content is neither what it was nor what the runtime last wrote."""
    return [line for _, line in _spine_changed(before, after)]


def _spine_changed(before: OutsideSnapshot, after: OutsideSnapshot) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for path in sorted(set(before.spine) | set(after.spine)):
        b_state = before.spine.get(path, (FileState("missing"), frozenset()))[0]
        a_state, recorded = after.spine.get(path, (FileState("missing"), frozenset()))
        if b_state.same_as(a_state) or (b_state.kind == a_state.kind == "missing"):
            continue
        if a_state.kind == "missing" and "deleted" in recorded:
            continue
        if a_state.kind == "file" and a_state.digest is not None and a_state.digest in recorded:
            continue
        what = ("deleted" if a_state.kind == "missing" else "created" if b_state.kind == "missing"
                else "rewritten")
        out.append((path, f"runtime file {path} {what} outside the runtime"))
    return out


def _restore_spine(root: Path, before: OutsideSnapshot, after: OutsideSnapshot, q: _Quarantine) -> list[str]:
    """Back to the runtime's last recorded write, else to the content before the run. A kill switch
    that appeared stays (pausing is the safe direction); it was reported."""
    from ..core.control_files import KILL_SWITCH_GLOB
    from .locked_files import written_copy

    done: list[str] = []
    flagged = {path for path, _ in _spine_changed(before, after)}
    for path in sorted(flagged):
        target = root / path
        b_state = before.spine.get(path, (FileState("missing"), frozenset()))[0]
        try:
            if b_state.kind == "missing" and fnmatch.fnmatchcase(path, KILL_SWITCH_GLOB):
                done.append(f"kept the new kill switch {path}")
                continue
            if target.is_symlink() or target.is_file():
                q.copy(target, path)
            last = written_copy(root, target)
            if last is not None:
                state = FileState("file", (len(last), 0, 0, 0, b_state.sig[-1] if b_state.sig else 0o644), None, last)
                _write_back(target, state)
                done.append(f"restored {path} to the runtime's last write")
            elif b_state.kind == "missing":
                if target.is_symlink() or target.exists():
                    q.move(target, path)
                done.append(f"quarantined {path}")
            elif _write_back(target, b_state):
                done.append(f"restored {path}")
            else:
                done.append(f"NOT restored {path}")
        except OSError as exc:
            done.append(f"NOT restored {path}: {exc}")
    return done


def snapshot(root: Path, *, ignore: Iterable[str] = (), meta: Mapping[str, bytes | None] | None = None,
             git_dir: Path | None = None, watch: Iterable[str] = ()) -> OutsideSnapshot:
    """Everything the guard watches in the main checkout at ``root``.

    ``ignore`` holds ``fnmatch`` patterns of paths the runtime itself writes while agents
    run (every loop's state file, the run log, the ledger, the kill-switch files): other
    loops and a human pressing kill change them legitimately.
    """
    root = Path(root)
    git_dir = git_dir or _git_dir(root)
    meta = dict(meta) if meta is not None else _meta(git_dir)  # read before any git command runs
    patterns = tuple(ignore)
    excludes = [f":(exclude){d}" for d in RUNTIME_DIRS]
    raw = run_git_bytes(["status", "--porcelain=v2", "-z", "--untracked-files=all", "--ignored=matching",
                         "--no-renames", "--", ".", *excludes], root, env=_NO_LOCKS)
    status = {p: s for p, s in _parse_status(raw).items()  # git lists an ignored runtime folder itself
              if p.rstrip("/").split("/", 1)[0] not in RUNTIME_DIRS
              and not any(fnmatch.fnmatchcase(p.rstrip("/"), pat) for pat in patterns)}
    budget = [KEEP_TOTAL]
    files = {p: _read_state(root / p, budget) for p in sorted(status)}
    trees = {p: _walk(root / p) for p, st in files.items() if st.kind == "dir" and status[p] in "?!"}
    refs: dict[str, str] = {}
    for line in run_git(["for-each-ref", "--format=%(refname)%00%(objectname)"], root, env=_NO_LOCKS).splitlines():
        name, _, sha = line.partition("\0")
        refs[name] = sha
    index, index_data = _index(root, git_dir)
    return OutsideSnapshot(
        root=str(root), head=_maybe(["rev-parse", "-q", "--verify", "HEAD^{commit}"], root),
        head_ref=_maybe(["symbolic-ref", "-q", "HEAD"], root), refs=refs, status=status, files=files,
        ignored_trees=trees, meta=meta, index=index, index_data=index_data, spine=_spine(root, watch),
    )


# --------------------------------------------------------------------------- compare


def _short(sha: str | None) -> str:
    return sha[:10] if sha else "(none)"


def _ref_changes(before: OutsideSnapshot, after: OutsideSnapshot, allowed: frozenset[str]) -> list[str]:
    out: list[str] = []
    if before.head_ref != after.head_ref:
        out.append(f"HEAD switched from {before.head_ref or 'detached'} to {after.head_ref or 'detached'}")
    elif before.head_ref is None and before.head != after.head:
        out.append(f"detached HEAD moved {_short(before.head)} → {_short(after.head)}")
    for name in sorted(set(before.refs) | set(after.refs)):
        if name in allowed:
            continue
        old, new = before.refs.get(name), after.refs.get(name)
        if old == new:
            continue
        if old is None:
            out.append(f"ref {name} created at {_short(new)}")
        elif new is None:
            out.append(f"ref {name} deleted (was {_short(old)})")
        else:
            out.append(f"ref {name} moved {_short(old)} → {_short(new)}")
    return out


def _describe_file(path: str, before: OutsideSnapshot, after: OutsideSnapshot) -> str | None:
    b_rec, a_rec = before.status.get(path), after.status.get(path)
    b_state = before.files.get(path, FileState("missing"))
    a_state = after.files.get(path, FileState("missing"))
    if b_rec == a_rec and b_state.same_as(a_state):
        return None
    if b_rec is None:
        what = {"?": "new untracked", "!": "new ignored"}.get(a_rec or "", "changed tracked")
        if a_rec not in ("?", "!") and a_state.kind == "missing":
            what = "deleted tracked"
        return f"{what} file {path}"
    if a_rec is None:
        return f"{'deleted' if b_rec in '?!' else 'reverted'} file {path}"
    if b_rec != a_rec:
        return f"git status of {path} changed"
    return f"modified file {path}"


def _tree_changes(before: OutsideSnapshot, after: OutsideSnapshot) -> list[str]:
    out: list[str] = []
    for folder, old in before.ignored_trees.items():
        new = after.ignored_trees.get(folder)
        if new is None:
            continue
        added = sorted(set(new) - set(old))
        gone = sorted(set(old) - set(new))
        changed = sorted(p for p in set(old) & set(new) if old[p] != new[p] and old[p][0] != stat.S_IFDIR)
        for label, items in (("new", added), ("deleted", gone), ("changed", changed)):
            if items:
                shown = ", ".join(items[:3]) + (" …" if len(items) > 3 else "")
                out.append(f"{len(items)} {label} file(s) in ignored folder {folder}: {shown}")
    return out


def compare(before: OutsideSnapshot, after: OutsideSnapshot, *, allowed_refs: Iterable[str] = ()) -> tuple[str, ...]:
    """Human-readable differences between two snapshots; empty when nothing outside changed."""
    allowed_refs = frozenset(allowed_refs)
    out = _ref_changes(before, after, allowed_refs)
    files = [line for path in sorted(set(before.status) | set(after.status))
             if (line := _describe_file(path, before, after))]
    out.extend(files)
    out.extend(_tree_changes(before, after))
    out.extend(_spine_changes(before, after))
    merged_in = before.head_ref is not None and before.head_ref in allowed_refs
    if before.index != after.index and not merged_in and not files and not out:
        # staged changes show as file changes above; this is what status cannot show (flags, HEAD-equal entries)
        out.append("git index changed (entries staged, removed or flagged)")
    for name in sorted(set(before.meta) | set(after.meta)):
        if _skip_meta(name, before, after):
            continue
        if before.meta.get(name) != after.meta.get(name):
            out.append(f"git {name} changed" if before.meta.get(name) is not None else f"git {name} added")
    return tuple(out)


# --------------------------------------------------------------------------- restore


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


def _restore_refs(root: Path, before: OutsideSnapshot, after: OutsideSnapshot, allowed: frozenset[str]) -> list[str]:
    done: list[str] = []
    for name in sorted(set(before.refs) | set(after.refs)):
        old, new = before.refs.get(name), after.refs.get(name)
        if name in allowed or old == new:
            continue
        if old is None:
            run_git(["update-ref", "-d", name], root)
            done.append(f"deleted ref {name}")
        else:
            run_git(["update-ref", name, old], root)
            done.append(f"reset ref {name} to {_short(old)}")
    if before.head_ref and before.head_ref != after.head_ref:
        run_git(["symbolic-ref", "HEAD", before.head_ref], root)
        done.append(f"HEAD back on {before.head_ref}")
    elif before.head_ref is None and before.head and before.head != after.head:
        run_git(["update-ref", "--no-deref", "HEAD", before.head], root)
        done.append(f"detached HEAD back at {_short(before.head)}")
    return done


def _in_commit(root: Path, commit: str | None, path: str) -> bool:
    if commit is None:
        return False
    try:
        run_git(["cat-file", "-e", f"{commit}:{path}"], root)
        return True
    except GitError:
        return False


def _restore_clean(root: Path, before: OutsideSnapshot, path: str, q: _Quarantine) -> str:
    """A path that was clean (or absent) before: back to the previous HEAD's content."""
    target = root / path
    if _in_commit(root, before.head, path):
        q.copy(target, path)
        run_git(["--literal-pathspecs", "checkout", before.head or "HEAD", "--", path], root)
        return f"checked out {path} from {_short(before.head)}"
    run_git(["--literal-pathspecs", "rm", "--cached", "-q", "--ignore-unmatch", "--", path], root)
    if target.is_symlink() or target.exists():
        q.move(target, path)
        return f"quarantined {path}"
    return f"unstaged {path}"


def _restore_index(root: Path, rec: str, path: str) -> None:
    """Put back a dirty path's index entry from its porcelain v2 record (``mI`` and ``hI``)."""
    fields = rec.split(" ")
    if fields[0] not in "12" or len(fields) < 8:
        return
    m_index, h_index = fields[4], fields[7]
    if set(h_index) == {"0"} or m_index == "000000":
        run_git(["update-index", "--force-remove", "--", path], root)
    else:
        run_git(["update-index", "--add", "--cacheinfo", f"{m_index},{h_index},{path}"], root)


def _restore_path(root: Path, before: OutsideSnapshot, after: OutsideSnapshot, path: str, q: _Quarantine) -> str:
    b_rec = before.status.get(path)
    if b_rec is None:
        return _restore_clean(root, before, path, q)
    b_state = before.files.get(path, FileState("missing"))
    target = root / path
    if b_rec not in "?!" and after.status.get(path) != b_rec:
        _restore_index(root, b_rec, path)
    if b_state.same_as(after.files.get(path, FileState("missing"))):
        return f"restored the index entry of {path}"
    if b_state.kind == "missing":
        q.move(target, path)
        return f"quarantined {path}"
    if b_state.kind == "file" and b_state.data is None:
        return f"NOT restored {path}: too large to keep a copy"
    if target.is_symlink() or target.is_file():
        q.copy(target, path)
    if _write_back(target, b_state):
        return f"restored {path}"
    return f"NOT restored {path}"


def _restore_trees(root: Path, before: OutsideSnapshot, after: OutsideSnapshot, q: _Quarantine) -> list[str]:
    done: list[str] = []
    for folder, old in before.ignored_trees.items():
        new = after.ignored_trees.get(folder, {})
        for rel in sorted(set(new) - set(old), key=len):
            src = root / folder / rel
            if (src.is_symlink() or src.exists()) and not any(rel.startswith(d + "/") for d in done):
                q.move(src, f"{folder.rstrip('/')}/{rel}")
                done.append(rel)
    return [f"quarantined {len(done)} new file(s) in ignored folders"] if done else []


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


def _restore_index(git_dir: Path, before: OutsideSnapshot, after: OutsideSnapshot) -> list[str]:
    if before.index == after.index:
        return []
    if before.index_data is None:
        return ["NOT restored the git index: too large to keep a copy"]
    tmp = git_dir / f".index.{uuid.uuid4().hex[:6]}.loop-restore"
    tmp.write_bytes(before.index_data)
    os.replace(tmp, git_dir / "index")
    return ["restored the git index"]


def restore(root: Path, before: OutsideSnapshot, after: OutsideSnapshot, *,
            allowed_refs: Iterable[str] = (), ignore: Iterable[str] = (), watch: Iterable[str] = ()) -> tuple[str, ...]:
    """Undo what changed between ``before`` and ``after`` where git can; returns what was done.

    Whatever is still different afterwards is reported as ``NOT restored: …``.
    """
    root = Path(root)
    allowed = frozenset(allowed_refs)
    q = _Quarantine(root)
    git_dir = _git_dir(root)
    done = _restore_meta(git_dir, before, after, q)  # first: config and hooks can run code
    done += _restore_refs(root, before, after, allowed)
    if not (before.head_ref is not None and before.head_ref in allowed):
        done += _restore_index(git_dir, before, after)
    done += _restore_spine(root, before, after, q)
    if done:  # with HEAD back, files the agent committed show up as changes again
        after = snapshot(root, ignore=ignore, watch=watch)
    for path in sorted(set(before.status) | set(after.status)):
        if _describe_file(path, before, after) is None:
            continue
        try:
            done.append(_restore_path(root, before, after, path, q))
        except (GitError, OSError) as exc:
            done.append(f"NOT restored {path}: {exc}")
    done += _restore_trees(root, before, after, q)
    left = compare(before, snapshot(root, ignore=ignore, watch=watch), allowed_refs=allowed)
    done += [f"NOT restored: {line}" for line in left]
    return tuple(done)


# --------------------------------------------------------------------------- port adapter


class GitGuard:
    """``ports.OutsideGuard`` for the main checkout at ``root``.

    The branches of attempts listed in the worktree manifest may move: an agent committing
    inside its own worktree moves ``refs/heads/loop/<id>``, and another loop's engine
    creates, commits and deletes its attempts' branches meanwhile. Any other ref, file or
    git setting that changes is reported.
    """

    def __init__(self, root: Path | str, *, ignore: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.ignore = tuple(ignore)
        self.watch = spine_patterns(self.ignore)
        self._early: list[str] = []  # git metadata already put back by ``changes``
        self._git_dir: Path | None = None

    def _manifest(self) -> list[Any]:
        try:
            text = (self.root / MANIFEST_FILE).read_text(encoding="utf-8")
            return list(parse_manifest(text, file=str(self.root / MANIFEST_FILE)).worktrees)
        except (OSError, LoopError):
            return []

    def _allowed_refs(self, before: OutsideSnapshot | None = None,
                      after: OutsideSnapshot | None = None) -> frozenset[str]:
        entries = self._manifest()
        allowed = {f"refs/heads/{e.branch}" for e in entries}
        if before is not None and after is not None:
            allowed |= self._loop_merges(entries, before, after)
        return frozenset(allowed)

    def _loop_merges(self, entries: list[Any], before: OutsideSnapshot, after: OutsideSnapshot) -> set[str]:
        """Base-branch moves made by another loop's L3 merge of a ``merged`` attempt (not an agent)."""
        tips = {before.refs.get(f"refs/heads/{e.branch}") or after.refs.get(f"refs/heads/{e.branch}")
                for e in entries if e.status == "merged"}
        tips.discard(None)
        moved: set[str] = set()
        for name, new in after.refs.items():
            if not tips or not name.startswith("refs/heads/") or before.refs.get(name) in (None, new):
                continue
            parents = (_maybe(["rev-list", "--parents", "-n", "1", new], self.root) or "").split()
            if new in tips or any(p in tips for p in parents[2:]):  # fast-forward, or a merge commit of the tip
                moved.add(name)
        return moved

    @property
    def git_dir(self) -> Path:
        if self._git_dir is None:
            self._git_dir = _git_dir(self.root)
        return self._git_dir

    def _watch(self, before: OutsideSnapshot) -> tuple[str, ...]:
        """The watched patterns plus every file seen before (a deleted one no longer matches a glob)."""
        return (*self.watch, *(p for p in before.spine if p not in self.watch))

    def snapshot(self) -> OutsideSnapshot:
        return snapshot(self.root, ignore=self.ignore, git_dir=self.git_dir, watch=self.watch)

    def changes(self, before: OutsideSnapshot) -> tuple[str, ...]:
        """What changed since ``before``. A changed git config, hook or worktree link is put
        back *before* the runtime runs git again (``core.fsmonitor``, a filter or a hook
        would otherwise run the agent's code as the runtime) and is still reported."""
        git_dir = self.git_dir
        meta = _meta(git_dir)
        if meta != before.meta:
            changed = OutsideSnapshot(root=before.root, head=before.head, head_ref=before.head_ref, refs=before.refs,
                                      status=before.status, files=before.files, meta=meta, spine=before.spine)
            self._early = _restore_meta(git_dir, before, changed, _Quarantine(self.root))
        after = snapshot(self.root, ignore=self.ignore, meta=meta, git_dir=git_dir, watch=self._watch(before))
        return compare(before, after, allowed_refs=self._allowed_refs(before, after))

    def restore(self, before: OutsideSnapshot) -> tuple[str, ...]:
        early, self._early = list(getattr(self, "_early", [])), []
        watch = self._watch(before)
        after = snapshot(self.root, ignore=self.ignore, watch=watch)
        return tuple(early) + restore(self.root, before, after, allowed_refs=self._allowed_refs(before, after),
                                      ignore=self.ignore, watch=watch)
