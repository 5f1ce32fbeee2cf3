"""The one way loop-runtime rewrites a shared file: lock, read, compute, atomically replace.

Why: six patterns ticked at once on one project each read ``loop-run-log.md``, appended
their entry and wrote the file back; the last writer won and runs/day undercounted. A lock
around the *write* alone does not help — the read must happen inside the lock, so the API
is ``update(path, fn)`` where ``fn`` maps the text as it is *now* to the new text.

* The lock is a ``filelock`` lock file under ``.loop-runtime/locks/`` (git-ignored by
  ``.loop-runtime/.gitignore``), one per target file, never next to the user's file.
* Where the ecosystem has its own convention it is honoured as well: loop-context guards
  ``.loop-context/daily-spend.<pattern>.json`` with an exclusive-create
  ``.loop-context/.daily-spend.<pattern>.lock`` that is stale after 30 s.
* The replacement is a temp file in the same folder, fsynced, then ``os.replace`` — a crash
  never leaves half a file — keeping the mode of the file it replaces.
* Waiting longer than the timeout is a ``FileLocked`` error of one line naming the file.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..errors import LoopError

LOCK_DIR = ".loop-runtime/locks"
WRITTEN_DIR = ".loop-runtime/written"
"""Per file the runtime writes, a record of what it last wrote (digest + a copy), kept under the
file's own lock: the outside-change guard tells a runtime write (any loop's) from an agent's by it."""
DELETED = "deleted"
KEEP_COPY_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 30.0
ECOSYSTEM_STALE_S = 30.0  # loop-context: a lock file older than this belongs to a dead process
TEMP_MARK = ".loop-runtime-"  # temp files are `.<name>.loop-runtime-<random>.tmp` (see temp_pattern)
_DAILY_SPEND = re.compile(r"^\.loop-context/daily-spend\.(?P<pattern>[^/]+)\.json$")


class FileLocked(LoopError):
    """Another process held a file's lock for longer than we may wait."""

    exit_code = 1

    def __init__(self, file: str, waited_s: float) -> None:
        self.file = file
        self.waited_s = waited_s
        super().__init__(f"{file}: locked by another process for {round(waited_s, 1):g}s; try again later "
                         f"(or remove a stale lock under {LOCK_DIR}/ if no loop-runtime is running)")


def lock_timeout_s() -> float:
    """``LOOP_RUNTIME_LOCK_TIMEOUT_S`` (seconds), else 30 s; a bad value is named as such."""
    raw = os.environ.get("LOOP_RUNTIME_LOCK_TIMEOUT_S", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (0 < value < 86400):
        from ..errors import ConfigError

        raise ConfigError("environment", "LOOP_RUNTIME_LOCK_TIMEOUT_S", raw,
                          message=f"LOOP_RUNTIME_LOCK_TIMEOUT_S invalid: {raw!r} (seconds, > 0)")
    return value


# --------------------------------------------------------------------------- atomic replace


def temp_pattern(rel: str) -> str:
    """The fnmatch pattern of ``rel``'s temp files: the outside-change guard must not mistake another
    process's half-second temp file for an agent's write."""
    folder, _, name = rel.rpartition("/")
    return f"{folder + '/' if folder else ''}.{name}{TEMP_MARK}*.tmp"


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data``: temp file in the same folder + fsync + ``os.replace``.

    The file keeps its permission bits (a new file gets the umask's default, not
    ``mkstemp``'s 0600). Text is written as UTF-8 with newlines untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        from .fsmode import new_file_mode

        mode = new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:  # name the user's file, not our temp file (`STATE.md: Is a directory`)
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- locks


def _display(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def lock_file_for(root: Path, path: Path) -> Path:
    """``.loop-runtime/locks/<name>.<hash>.lock``: one per target, readable, never in the user's tree."""
    key = hashlib.sha1(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", path.name)[:60] or "file"
    return root / LOCK_DIR / f"{safe}.{key}.lock"


def _ensure_lock_dir(root: Path) -> Path:
    folder = root / LOCK_DIR
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
    ignore = root / ".loop-runtime" / ".gitignore"
    if not ignore.exists():
        try:
            fd = os.open(ignore, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("*\n")
    return folder


@contextmanager
def exclusive_create_lock(path: Path, *, stale_s: float, timeout_s: float, display: str) -> Iterator[None]:
    """The ecosystem's lock: create ``path`` exclusively; a lock older than ``stale_s`` is broken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # umask decides
        except FileExistsError:
            try:
                if time.time() - path.stat().st_mtime > stale_s:
                    path.unlink(missing_ok=True)
                    continue
            except FileNotFoundError:
                continue
            waited = time.monotonic() - start
            if waited > timeout_s:
                raise FileLocked(display, waited) from None
            time.sleep(0.01 + random.random() * 0.04)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


@contextmanager
def locked(root: Path, path: Path, *, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the lock(s) of ``path`` (a file under ``root``) for the body."""
    from filelock import FileLock, Timeout

    root, path = Path(root), Path(path)
    path = path.parent.resolve() / path.name if not path.is_symlink() else path.resolve()
    timeout = lock_timeout_s() if timeout_s is None else timeout_s
    display = _display(root, path)
    _ensure_lock_dir(root)
    lock = FileLock(str(lock_file_for(root, path)), timeout=timeout)
    with ExitStack() as stack:
        try:
            stack.enter_context(lock)
        except Timeout:
            raise FileLocked(display, timeout) from None
        m = _DAILY_SPEND.match(display)
        if m is not None:  # loop-context's own convention for its daily-spend file
            stack.enter_context(exclusive_create_lock(
                root / ".loop-context" / f".daily-spend.{m['pattern']}.lock", stale_s=ECOSYSTEM_STALE_S,
                timeout_s=timeout, display=display))
        yield


# --------------------------------------------------------------------------- runtime-write records


def _record_base(root: Path, path: Path) -> Path:
    key = hashlib.sha1(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", path.name)[:60] or "file"
    return Path(root) / WRITTEN_DIR / f"{safe}.{key}"


def _canonical(path: Path) -> Path:
    path = Path(path)
    return path.resolve() if path.is_symlink() else path.parent.resolve() / path.name


def _record_path(root: Path, path: Path) -> Path:
    base = _record_base(root, _canonical(path))
    return base.with_name(base.name + ".rec")


def _quick_replace(path: Path, data: bytes) -> None:
    """Temp file + rename without fsync: a record only has to be right while the runtime runs (a crash
    loses at most a record, and the guard compares within one agent run), and the fsync per record was
    most of a spine write's cost."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_COPY = b"copy\n"
_HEADER_BYTES = 4096


def _read_record(record: Path, *, with_copy: bool = False) -> tuple[tuple[str, ...], int, bytes | None]:
    """(acceptable digests, generation, the runtime's last written content when asked and kept).

    The first digest is the runtime's last write; an ``also`` one is the content being replaced while a
    write is in flight. One file per watched path holds the header lines and, after a ``copy`` line, the
    content itself: one replace per record instead of two."""
    try:
        with open(record, "rb") as fh:
            raw = fh.read() if with_copy else fh.read(_HEADER_BYTES)
    except OSError:
        return (), 0, None
    head, sep, data = raw.partition(b"\n" + _COPY)
    if not sep and raw.startswith(_COPY):
        head, data, sep = b"", raw[len(_COPY):], _COPY
    digests: list[str] = []
    gen = 0
    for line in head.decode("ascii", "replace").split("\n"):
        if line.startswith("gen "):
            gen = int(line[4:]) if line[4:].isdigit() else 0
        elif line.startswith("also "):
            digests.append(line[5:])
        elif line:
            digests.append(line)
    return tuple(digests), gen, (data if sep and with_copy else None)


def _write_record(record: Path, digests: tuple[str, ...], gen: int, copy: bytes | None) -> None:
    record.parent.mkdir(parents=True, exist_ok=True)
    body = "".join([digests[0] + "\n", *(f"also {d}\n" for d in digests[1:]), f"gen {gen}\n"]).encode("ascii")
    _quick_replace(record, body + (_COPY + copy if copy is not None else b""))


def _digest(data: bytes | None) -> str:
    return DELETED if data is None else hashlib.sha256(data).hexdigest()


@contextmanager
def recording(root: Path, path: Path, data: bytes | None) -> Iterator[None]:
    """Announce a runtime write, let the body make it, then settle the record (call under the lock
    that serialises writers of ``path``; ``data`` None: the body deletes the file).

    Why announce first: the outside-change guard of *another* process reads the file and then its
    record. Had the record followed the write, a read between the two would see new content with the
    old record and call a runtime write an agent's. While a write is in flight both the old and the
    new content are acceptable, and the generation lets a reader tell that the record moved under it
    (``written_digests``). The kept copy (for ``written_copy``) is the new content from the start."""
    record = _record_path(root, path)
    prev, gen, prev_copy = _read_record(record, with_copy=True)
    new = _digest(data)
    copy = data if data is not None and len(data) <= KEEP_COPY_BYTES else None
    _write_record(record, (new, *prev[:1]) if prev and prev[0] != new else (new,), gen + 1, copy)
    try:
        yield
    except BaseException:
        if prev:  # the write did not happen (it is atomic): the record is as it was
            _write_record(record, prev[:1], gen + 2, prev_copy)
        else:
            record.unlink(missing_ok=True)
        raise
    _write_record(record, (new,), gen + 2, copy)


def record_written(root: Path, path: Path, data: bytes | None) -> None:
    """Record (under the file's lock) that the runtime left ``path`` holding ``data`` (``None``:
    deleted) — for a write already made; prefer ``recording`` around the write."""
    with recording(root, path, data):
        pass


def written_digest(root: Path, path: Path) -> str | None:
    """The digest the runtime last recorded for ``path`` (``DELETED`` after a runtime delete), or None."""
    digests = _read_record(_record_path(root, path))[0]
    return digests[0] if digests else None


def written_digests(root: Path, path: Path, read: Callable[[], Any]) -> tuple[Any, frozenset[str]]:
    """``read()`` of ``path`` together with every digest the runtime's record allowed *while* it read.

    A seqlock: the record is read before and after; when its generation moved, a writer was at
    work and the read is repeated (a few times, then both records' digests are accepted)."""
    record = _record_path(root, path)
    for _ in range(20):
        first, gen1, _ = _read_record(record)
        value = read()
        second, gen2, _ = _read_record(record)
        if gen1 == gen2 and first == second:
            return value, frozenset(first)
        time.sleep(0.002)
    return value, frozenset(first) | frozenset(second)


def written_copy(root: Path, path: Path) -> bytes | None:
    """The runtime's last written content of ``path`` when it still matches the recorded digest."""
    digests, _, data = _read_record(_record_path(root, path), with_copy=True)
    return data if data is not None and digests and hashlib.sha256(data).hexdigest() == digests[0] else None


def remove(root: Path, path: Path, *, timeout_s: float | None = None) -> bool:
    """Delete ``path`` under its lock and record the delete (a human's ``resume`` of a kill switch)."""
    path = _canonical(path)
    with locked(root, path, timeout_s=timeout_s):
        with recording(root, path, None):
            try:
                path.unlink()
            except FileNotFoundError:
                return False
        return True


def update(root: Path, path: Path, fn: Callable[[str | None], str | None], *,
           timeout_s: float | None = None) -> str | None:
    """Read ``path`` *inside* its lock, write ``fn(old)`` atomically; returns the text now on disk.

    ``old`` is ``None`` when the file does not exist. ``fn`` returning ``None`` or the
    same text writes nothing. ``fn`` may raise: nothing is written then.
    """
    path = Path(path)
    # one file, one lock, one target: a symlinked STATE.md and its target share the lock, and the
    # target (not the link) is what gets replaced — as FileStateWriter does
    path = path.resolve() if path.is_symlink() else path.parent.resolve() / path.name
    with locked(root, path, timeout_s=timeout_s):
        try:
            old: str | None = path.read_bytes().decode("utf-8")  # newlines as they are: CRLF stays CRLF
        except FileNotFoundError:
            old = None
        except UnicodeDecodeError as e:
            from ..errors import not_utf8

            raise not_utf8(_display(Path(root), path), e) from None
        new = fn(old)
        if new is None or new == old:
            return old
        data = new.encode("utf-8")
        with recording(root, path, data):
            atomic_write(path, data)
        return new


def write(root: Path, path: Path, text: str | bytes, *, timeout_s: float | None = None) -> None:
    """A whole-file replacement under the same lock (no read needed, but never interleaved)."""
    path = _canonical(path)
    with locked(root, path, timeout_s=timeout_s):
        data = text.encode("utf-8") if isinstance(text, str) else text
        with recording(root, path, data):
            atomic_write(path, data)
