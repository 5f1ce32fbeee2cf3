"""The run store: ``.loop-runtime/runtime.db``, SQLite in WAL mode, shared by processes.

The ecosystem files (STATE.md, the run log) are the human-facing spine; this database
is the runtime's own memory: ticks and their phase journal, events for the dashboard,
budget reservations and settlements, escalations with their held diffs, leases and
next-due times. (A "run" is a tick's ``run_id``, the ISO timestamp the run log uses;
runs have no table of their own.)

Concurrency model — why it is safe for several processes on one project:

* **Leases.** A pattern is ticked by one process at a time: ``acquire_lease`` takes a
  row in ``leases`` only if it is free, expired or already ours, inside
  ``BEGIN IMMEDIATE`` (SQLite's write lock), so two processes cannot both see it free.
  Leases expire, so a crashed process blocks its pattern for at most one TTL.
* **Budget.** ``reserve`` reads today's spend and inserts the reservation in one
  ``BEGIN IMMEDIATE`` transaction: the check and the write are atomic across
  processes, so concurrent reservers can never together pass the cap.
* **Escalations.** ``resolve_escalation`` checks ``open`` and updates in one
  immediate transaction: a second approve fails instead of applying twice.

Within one process the single connection is shared between threads behind a lock.
Every ``sqlite3.Error`` (and ``OSError`` around the file) becomes ``StoreError``.

No secret at rest: every free-text and JSON column is redacted here, at the one seam
every writer goes through (``core.secrets``: credential shapes, secret-named keys, and
the exact values of the project's ``.env*`` files and secret-named environment
variables). The one exception is an escalation's held ``diff``: it must stay byte-exact
to apply later, and a diff that adds a secret is escalated as ``secret-in-diff`` instead.

The SQL lives by concern, one mixin per protocol of ``ports.store`` (``leases``, ``ticks``,
``events``, ``ledger``, ``escalations``, ``schedule``; ``retention`` for ``prune``), all over
``base.StoreBase`` (the lock, the transactions, the redaction seam). ``RunStore`` here opens the
connection, runs the migrations and composes them.
"""

from __future__ import annotations

import _thread  # threading's own locks, without importing threading (read commands' start-up)
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from ...errors import StoreError
from .escalations import Escalations
from .events import Events
from .leases import Leases
from .ledger import Ledger
from .retention import Retention
from .schedule import Schedule
from .schema import (
    BUSY_TIMEOUT_S,
    EscalationRecord,
    PhaseRecord,
    TickRecord,
    ensure_gitignore,
    migrate,
    retry_busy,
)
from .ticks import Ticks

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "EscalationRecord",
    "EventRecord",
    "PhaseRecord",
    "Reservation",
    "RunStore",
    "TickRecord",
    "TopupRecord",
    "ensure_gitignore",
]

STORE_DIR = ".loop-runtime"
DB_NAME = "runtime.db"

# --------------------------------------------------------------------------- the store


class RunStore(Leases, Ticks, Events, Ledger, Escalations, Schedule, Retention):
    """The SQLite run store. One connection per instance; safe across threads and processes."""

    def __init__(self, path: Path, *, secrets: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self._secrets = None if secrets is None else tuple(secrets)
        self._lock = _thread.RLock()
        self._conn: sqlite3.Connection | None = None
        with self._guard("open"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            try:
                self.schema_version = retry_busy(lambda: self._configure(conn))
            except BaseException:
                conn.close()
                raise
            self._conn = conn

    def _configure(self, conn: sqlite3.Connection) -> int:
        """WAL, busy timeout, foreign keys, then migrations; returns the schema version."""
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # a new file: pruning can give pages back
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: cannot switch SQLite to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable except on power loss
        conn.execute("PRAGMA foreign_keys = ON")
        return migrate(conn, str(self.path))

    @classmethod
    def open(cls, root: Path) -> RunStore:
        """Open (creating if needed) ``<root>/.loop-runtime/runtime.db``, git-ignored."""
        root = Path(root)
        if not root.is_dir():
            raise StoreError(f"{root}: project root does not exist")
        folder = root / STORE_DIR
        try:
            folder.mkdir(exist_ok=True)
            ensure_gitignore(folder / ".gitignore")
        except OSError as exc:
            raise StoreError(f"{folder}: cannot create the runtime store folder: {exc.strerror or exc}") from exc
        return cls(folder / DB_NAME)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error as exc:
                    raise StoreError(f"{self.path}: close failed: {exc}") from exc
                self._conn = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # ------------------------------------------------------------------ redaction (no secret at rest)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Exact values to hide: given, else the project's ``.env*`` values and secret-named env vars."""
        if self._secrets is None:
            import os

            from ..environment import secret_values

            root = self.path.parent.parent if self.path.parent.name == STORE_DIR else self.path.parent
            self._secrets = tuple(secret_values(root, os.environ))
        return self._secrets


_LEDGER_RECORDS = {"EventRecord": "EventRecord", "PruneReport": "PruneReport", "Reservation": "ReservationRecord", "TopupRecord": "TopupRecord"}
def __getattr__(name: str) -> Any:
    """The ledger's and the feed's record types, loaded when first asked for (``ports.ledger_records``)."""
    if name in _LEDGER_RECORDS:
        from ...ports import ledger_records

        return getattr(ledger_records, _LEDGER_RECORDS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
