"""Schema of the run store (``.loop-runtime/runtime.db``): migrations, encodings, row records.

Also the small helpers ``sqlite_store`` needs around them (opening retries, ids, expiry).

Why versioned migrations rather than ``CREATE TABLE IF NOT EXISTS`` everywhere: the
database outlives the code that created it. A user upgrades loop-runtime and keeps
their escalations and budget history, so every schema change is a new numbered step
appended to ``MIGRATIONS`` — never an edit of an old one. ``schema_version`` holds one
row with the number of the last applied step. A database written by a *newer*
loop-runtime is refused rather than guessed at.

Migrations run inside one ``BEGIN IMMEDIATE`` transaction, so two processes opening a
fresh project at the same moment cannot both apply step 1.

Encodings shared by every table:

* timestamps are ISO-8601 UTC text with microseconds, fixed width
  (``2026-09-15T08:00:39.000000Z``), so SQL string comparison is time order;
* days are ``YYYY-MM-DD`` (UTC);
* mappings (phase data, event payloads, summaries, contexts) are JSON text.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, UTC
from pathlib import Path

from ...errors import StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar
    from ...ports.ledger_records import ReservationRecord as Reservation
from ...ports.records import (
    EscalationRecord,
    PhaseRecord,
    TickRecord,
)

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "EscalationRecord",
    "EventRecord",
    "PruneReport",
    "PhaseRecord",
    "Reservation",
    "TickRecord",
    "TopupRecord",
    "dump_json",
    "load_json",
    "migrate",
    "parse_ts",
    "to_day",
    "to_ts",
]

if TYPE_CHECKING:
    T = TypeVar("T")

BUSY_TIMEOUT_S = 10.0
"""How long a writer waits for another process's lock before giving up (SQLite busy_timeout)."""

TICK_STATUSES = ("running", "finished", "halted", "crashed", "resumable", "resumed", "error")
ESCALATION_STATUSES = ("open", "approved", "rejected")

_V1: tuple[str, ...] = (
    """CREATE TABLE leases (
        pattern     TEXT PRIMARY KEY,
        owner       TEXT NOT NULL,
        acquired_at TEXT NOT NULL,
        expires_at  TEXT NOT NULL)""",
    f"""CREATE TABLE ticks (
        tick_id     TEXT PRIMARY KEY,
        run_id      TEXT NOT NULL,
        pattern     TEXT NOT NULL,
        level       TEXT NOT NULL,
        backend     TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN {TICK_STATUSES!r}),
        outcome     TEXT,
        tokens      INTEGER NOT NULL DEFAULT 0,
        started_at  TEXT NOT NULL,
        started_day TEXT NOT NULL,
        finished_at TEXT,
        owner       TEXT NOT NULL,
        summary     TEXT NOT NULL DEFAULT '{{}}')""",
    "CREATE INDEX ticks_pattern_started ON ticks (pattern, started_at)",
    "CREATE INDEX ticks_pattern_day ON ticks (pattern, started_day)",
    "CREATE INDEX ticks_status ON ticks (status)",
    """CREATE TABLE phases (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        tick_id TEXT NOT NULL REFERENCES ticks (tick_id),
        phase   TEXT NOT NULL,
        data    TEXT NOT NULL,
        at      TEXT NOT NULL)""",
    "CREATE INDEX phases_tick ON phases (tick_id, id)",
    """CREATE TABLE events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        kind    TEXT NOT NULL,
        pattern TEXT,
        tick_id TEXT,
        payload TEXT NOT NULL,
        at      TEXT NOT NULL)""",
    """CREATE TABLE reservations (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        pattern    TEXT NOT NULL,
        day        TEXT NOT NULL,
        amount     INTEGER NOT NULL CHECK (amount > 0),
        tick_id    TEXT NOT NULL,
        created_at TEXT NOT NULL,
        settled    INTEGER,
        settled_at TEXT,
        note       TEXT)""",
    "CREATE INDEX reservations_pattern_day ON reservations (pattern, day)",
    "CREATE INDEX reservations_open ON reservations (settled) WHERE settled IS NULL",
    """CREATE TABLE external_spend (
        pattern    TEXT NOT NULL,
        day        TEXT NOT NULL,
        tokens     INTEGER NOT NULL,
        PRIMARY KEY (pattern, day))""",
    """CREATE TABLE topups (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        pattern TEXT NOT NULL,
        day     TEXT NOT NULL,
        tokens  INTEGER NOT NULL,
        reason  TEXT NOT NULL,
        at      TEXT NOT NULL)""",
    "CREATE INDEX topups_pattern_day ON topups (pattern, day)",
    f"""CREATE TABLE escalations (
        id         TEXT PRIMARY KEY,
        pattern    TEXT NOT NULL,
        tick_id    TEXT NOT NULL,
        run_id     TEXT NOT NULL,
        item_id    TEXT NOT NULL,
        title      TEXT NOT NULL,
        diff       TEXT NOT NULL,
        context    TEXT NOT NULL,
        status     TEXT NOT NULL CHECK (status IN {ESCALATION_STATUSES!r}),
        created_at TEXT NOT NULL,
        decided_by TEXT,
        reason     TEXT,
        decided_at TEXT,
        result     TEXT)""",
    "CREATE INDEX escalations_status ON escalations (status, created_at)",
    """CREATE TABLE schedule (
        pattern  TEXT PRIMARY KEY,
        next_due TEXT NOT NULL)""",
)

_V2: tuple[str, ...] = (
    # retention (``RunStore.prune``): what is deleted after ``retention_days`` is summed here first, per
    # UTC day, loop and kind (``tick:<outcome>`` — count and tokens of finished ticks; ``spend`` —
    # settled reservations), so charts and ``spent`` keep old days after their rows are gone
    """CREATE TABLE daily_rollups (
        day     TEXT NOT NULL,
        pattern TEXT NOT NULL,
        kind    TEXT NOT NULL,
        count   INTEGER NOT NULL DEFAULT 0,
        tokens  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, pattern, kind))""",
    # pruning by age, and the once-a-day notification count, without a scan of a million rows
    "CREATE INDEX events_at ON events (at)",
    "CREATE INDEX events_kind_pattern_at ON events (kind, pattern, at)",
    "CREATE INDEX ticks_started ON ticks (started_at)",
    "CREATE INDEX reservations_day ON reservations (day)",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2)
"""Step ``i`` (1-based) brings the schema from version ``i-1`` to ``i``. Append only."""

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, where: str) -> int:
    """Apply the pending migrations in one immediate transaction; return the version.

    ``conn`` must be in autocommit mode (``isolation_level=None``) so the explicit
    ``BEGIN IMMEDIATE`` here is the only transaction.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        current = 0 if row is None else int(row[0])
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{where}: schema version {current} is newer than this loop-runtime understands "
                f"({SCHEMA_VERSION}); upgrade loop-runtime"
            )
        for step in MIGRATIONS[current:]:
            for statement in step:
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif current != SCHEMA_VERSION:
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


# --------------------------------------------------------------------------- opening


def retry_busy(call: Callable[[], T]) -> T:
    """Retry ``call`` while SQLite reports the database locked, up to ``BUSY_TIMEOUT_S``.

    Needed when opening: switching a fresh database to WAL takes an exclusive lock and
    SQLite returns "database is locked" at once there instead of calling the busy
    handler, so processes creating the store together must back off and retry.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            transient = "locked" in str(exc) or "busy" in str(exc)
            if not transient or time.monotonic() > deadline:
                raise
        import random  # only when contended: start-up of `status` does not pay for it

        time.sleep(random.uniform(0.005, 0.05))


def ensure_gitignore(path: Path) -> None:
    """Write ``*`` to ``.loop-runtime/.gitignore`` once, atomically (temp file + rename)."""
    if path.exists():
        return
    import tempfile  # once per project, not on every open

    fd, tmp = tempfile.mkstemp(prefix=".gitignore.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("*\n")
        from ..fsmode import new_file_mode

        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- encodings

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_TS_EXACT = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{6})Z")


def to_ts(dt: datetime) -> str:
    """Fixed-width ISO UTC text; naive datetimes are refused (their UTC day is unknown)."""
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"store timestamps must be timezone-aware datetimes, got {dt!r}")
    return dt.astimezone(UTC).strftime(_TS_FORMAT)


def parse_ts(text: str) -> datetime:
    exact = _TS_EXACT.fullmatch(text) if isinstance(text, str) else None
    if exact:  # what to_ts writes: read without strptime (its import and its per-call cost; status reads hundreds)
        try:
            return datetime(*map(int, exact.groups()), tzinfo=UTC)
        except ValueError:
            pass  # out of range: strptime below gives the verdict, as before
    try:
        return datetime.strptime(text, _TS_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # written by hand or by an older build: any ISO form
        dt = datetime.fromisoformat(text)
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def to_day(day: date | str) -> str:
    """``YYYY-MM-DD`` for a date (a datetime counts by its UTC day) or a validated string."""
    if isinstance(day, datetime):
        return to_ts(day)[:10]
    if isinstance(day, date):
        return day.isoformat()
    if isinstance(day, str):
        try:
            return date.fromisoformat(day).isoformat()
        except ValueError:
            pass
    raise ValueError(f"day must be a date or 'YYYY-MM-DD', got {day!r}")


def dump_json(data: Mapping[str, Any]) -> str:
    """JSON text for a mapping; values JSON cannot hold (datetimes, paths) become strings."""
    return json.dumps(dict(data), default=_jsonable, ensure_ascii=False)


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return to_ts(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def load_json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


TICK_COLS = "tick_id, run_id, pattern, level, backend, status, outcome, tokens, started_at, finished_at, owner, summary"
RES_COLS = "id, pattern, day, amount, tick_id, settled"
ESC_COLS = (
    "id, pattern, tick_id, run_id, item_id, title, diff, context, status, created_at, "
    "decided_by, reason, decided_at, result"
)


def _opt_ts(text: str | None) -> datetime | None:
    return None if text is None else parse_ts(text)


def tick_from_row(row: tuple[Any, ...]) -> TickRecord:
    (tick_id, run_id, pattern, level, backend, status, outcome, tokens, started, finished, owner, summary) = row
    return TickRecord(
        tick_id, run_id, pattern, level, backend, status, outcome, int(tokens),
        parse_ts(started), _opt_ts(finished), owner, load_json(summary),
    )


def reservation_from_row(row: tuple[Any, ...]) -> Reservation:
    from ...ports.ledger_records import ReservationRecord as Reservation

    rid, pattern, day, amount, tick_id, settled = row
    return Reservation(int(rid), pattern, date.fromisoformat(day), int(amount), tick_id, settled)


def escalation_from_row(row: tuple[Any, ...]) -> EscalationRecord:
    (eid, pattern, tick_id, run_id, item_id, title, diff, context, status, created, by, reason, decided, result) = row
    return EscalationRecord(
        eid, pattern, tick_id, run_id, item_id, title, diff, load_json(context), status,
        parse_ts(created), by, reason, _opt_ts(decided), load_json(result),
    )


# --------------------------------------------------------------------------- values


def check_tokens(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be an integer number of tokens, got {value!r}")
    return value


def expiry_ts(now: datetime, ttl_s: float) -> str:
    if ttl_s <= 0:
        raise ValueError(f"lease ttl_s must be > 0, got {ttl_s}")
    return to_ts(now + timedelta(seconds=ttl_s))


def escalation_id(tick_id: str, item_id: str, salt: int) -> str:
    import hashlib

    digest = hashlib.sha256(f"{tick_id}\0{item_id}\0{salt}".encode()).hexdigest()
    return f"esc-{digest[:8]}"


_LEDGER_RECORDS = {"EventRecord": "EventRecord", "PruneReport": "PruneReport", "Reservation": "ReservationRecord", "TopupRecord": "TopupRecord"}
def __getattr__(name: str) -> Any:
    """The ledger's and the feed's record types, loaded when first asked for (``ports.ledger_records``)."""
    if name in _LEDGER_RECORDS:
        from ...ports import ledger_records

        return getattr(ledger_records, _LEDGER_RECORDS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
