"""Run ids unique across processes: the last id issued for a project, shared through a locked file.

``core.run_ids`` makes ids strictly increasing within a process. Two processes on one
project (``start`` running ci-sweeper while a human types ``run daily-triage``, or two
loops ticking at the same moment) write the same run log, so they must not issue the
same id either. Each allocation takes an exclusive ``flock`` on
``.loop-runtime/last-run-id``, reads the last id, issues the next one and writes it back
before releasing the lock: the read-compare-write is atomic across processes.

The file holds one id and nothing else; it is runtime-private (never a user's file), so
an in-place rewrite under the lock is safe, and a damaged file only costs uniqueness
against the damaged value (it is ignored and rewritten). It is created with the user's
umask, like every file the runtime creates.
"""

from __future__ import annotations

import fcntl
import os
from datetime import datetime
from pathlib import Path

from ..core.run_ids import PROCESS_SEQUENCE
from ..errors import StoreError

FILE = Path(".loop-runtime") / "last-run-id"
RECORD = 64  # bytes: an id (24 characters) and padding


def allocate_run_id(root: Path, now: datetime) -> str:
    """The next run id for the project at ``root``: later than any id any process issued there."""
    path = Path(root) / FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides the mode
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the run-id file: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last = os.read(fd, 200).decode("ascii", "replace").strip() or None
        run_id = PROCESS_SEQUENCE.next(now, at_least_after=last)
        # a fixed-width record rewritten in place: truncating to zero first would make the
        # filesystem flush the file on close (ext4's replace heuristics), ~10 ms a tick
        os.pwrite(fd, f"{run_id}\n".ljust(RECORD, " ").encode("ascii"), 0)
        return run_id
    except OSError as exc:
        raise StoreError(f"{path}: cannot allocate a run id: {exc.strerror}") from None
    finally:
        os.close(fd)  # closing releases the lock
