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
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..errors import LoopError

LOCK_DIR = ".loop-runtime/locks"
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
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
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
            old: str | None = path.read_text("utf-8")
        except FileNotFoundError:
            old = None
        except UnicodeDecodeError:
            from ..errors import ConfigError

            raise ConfigError(_display(Path(root), path), "encoding", None, message="not UTF-8 text") from None
        new = fn(old)
        if new is None or new == old:
            return old
        atomic_write(path, new)
        return new


def write(root: Path, path: Path, text: str | bytes, *, timeout_s: float | None = None) -> None:
    """A whole-file replacement under the same lock (no read needed, but never interleaved)."""
    with locked(root, path, timeout_s=timeout_s):
        atomic_write(Path(path), text)
