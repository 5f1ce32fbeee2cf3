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
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from ...errors import StoreError
from .schema import (
    BUSY_TIMEOUT_S,
    ESC_COLS,
    ESCALATION_STATUSES,
    RES_COLS,
    TICK_COLS,
    TICK_STATUSES,
    EscalationRecord,
    EventRecord,
    PhaseRecord,
    PruneReport,
    Reservation,
    TickRecord,
    TopupRecord,
    check_tokens,
    dump_json,
    ensure_gitignore,
    escalation_from_row,
    escalation_id,
    expiry_ts,
    load_json,
    migrate,
    parse_ts,
    reservation_from_row,
    retry_busy,
    tick_from_row,
    to_day,
    to_ts,
)

__all__ = [
    "EscalationRecord",
    "EventRecord",
    "PhaseRecord",
    "Reservation",
    "RunStore",
    "TickRecord",
    "TopupRecord",
]

STORE_DIR = ".loop-runtime"
DB_NAME = "runtime.db"

# --------------------------------------------------------------------------- the store


class RunStore:
    """The SQLite run store. One connection per instance; safe across threads and processes."""

    def __init__(self, path: Path, *, secrets: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self._secrets = None if secrets is None else tuple(secrets)
        self._lock = threading.RLock()
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

    def _text(self, text: str | None) -> str | None:
        from ...core.redact import redact

        return text if not text else redact(text, extra_secrets=self.secrets)

    def _json(self, value: Mapping[str, Any]) -> str:
        from ...core.secrets import redact_json_text

        # encode first (datetimes, paths → strings), so every string is seen by the redactor; the
        # text is scanned once and left byte for byte when nothing in it can be a secret
        return redact_json_text(dump_json(value), self.secrets)

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Map sqlite3 and OS errors onto ``StoreError`` naming the database and the operation."""
        try:
            yield
        except StoreError:
            raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {what} failed: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"{self.path}: {what} failed: {exc.strerror or exc}") from exc

    @contextmanager
    def _read(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._guard(what):
            if self._conn is None:
                raise StoreError(f"{self.path}: {what} failed: the store is closed")
            yield self._conn

    @contextmanager
    def _tx(self, what: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: the write lock is taken before the first read."""
        with self._read(what) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _one(self, what: str, sql: str, args: tuple[Any, ...] = ()) -> Any:
        with self._read(what) as conn:
            row = conn.execute(sql, args).fetchone()
        return None if row is None else row[0]

    # ------------------------------------------------------------------ leases

    def acquire_lease(self, pattern: str, owner: str, ttl_s: float, now: datetime) -> bool:
        """Take ``pattern``'s lease if it is free, expired or already ``owner``'s."""
        with self._tx("acquire_lease") as conn:
            row = conn.execute("SELECT owner, expires_at FROM leases WHERE pattern = ?", (pattern,)).fetchone()
            if row is not None and row[0] != owner and row[1] > to_ts(now):
                return False
            conn.execute(
                "INSERT INTO leases (pattern, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (pattern) DO UPDATE SET owner = excluded.owner, "
                "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                (pattern, owner, to_ts(now), expiry_ts(now, ttl_s)),
            )
            return True

    def renew_lease(self, pattern: str, owner: str, ttl_s: float, now: datetime) -> bool:
        """Extend ``owner``'s lease; False when another process has taken it meanwhile."""
        with self._tx("renew_lease") as conn:
            cur = conn.execute(
                "UPDATE leases SET expires_at = ? WHERE pattern = ? AND owner = ?",
                (expiry_ts(now, ttl_s), pattern, owner),
            )
            return cur.rowcount == 1

    def release_lease(self, pattern: str, owner: str) -> None:
        """Give the lease back (a no-op when ``owner`` no longer holds it)."""
        with self._tx("release_lease") as conn:
            conn.execute("DELETE FROM leases WHERE pattern = ? AND owner = ?", (pattern, owner))

    def lease_holder(self, pattern: str, now: datetime) -> str | None:
        """Who holds an unexpired lease on ``pattern``, if anyone."""
        owner = self._one(
            "lease_holder",
            "SELECT owner FROM leases WHERE pattern = ? AND expires_at > ?",
            (pattern, to_ts(now)),
        )
        return None if owner is None else str(owner)

    # ------------------------------------------------------------------ ticks & journal

    def begin_tick(
        self, *, tick_id: str, run_id: str, pattern: str, level: str, backend: str, started_at: datetime, owner: str
    ) -> None:
        started = to_ts(started_at)
        with self._tx("begin_tick") as conn:
            conn.execute(
                f"INSERT INTO ticks ({TICK_COLS}, started_day) "
                "VALUES (?, ?, ?, ?, ?, 'running', NULL, 0, ?, NULL, ?, '{}', ?)",
                (tick_id, run_id, pattern, level, backend, started, owner, started[:10]),
            )

    def record_phase(self, tick_id: str, phase: str, data: Mapping[str, Any], at: datetime) -> None:
        """Append one entry to the tick's journal (never rewritten: the journal is the recovery record)."""
        with self._tx("record_phase") as conn:
            conn.execute(
                "INSERT INTO phases (tick_id, phase, data, at) VALUES (?, ?, ?, ?)",
                (tick_id, phase, self._json(data), to_ts(at)),
            )

    def phases(self, tick_id: str) -> list[PhaseRecord]:
        with self._read("phases") as conn:
            rows = conn.execute(
                "SELECT phase, data, at FROM phases WHERE tick_id = ? ORDER BY id", (tick_id,)
            ).fetchall()
        return [PhaseRecord(p, load_json(d), parse_ts(a)) for p, d, a in rows]

    def finish_tick(
        self, tick_id: str, *, outcome: str, tokens: int, summary: Mapping[str, Any], finished_at: datetime
    ) -> None:
        """Close a tick: status ``halted`` when the outcome is ``halted``, else ``finished``."""
        status = "halted" if outcome == "halted" else "finished"
        with self._tx("finish_tick") as conn:
            cur = conn.execute(
                "UPDATE ticks SET status = ?, outcome = ?, tokens = ?, summary = ?, finished_at = ? WHERE tick_id = ?",
                (status, outcome, check_tokens(tokens, "tokens"), self._json(summary), to_ts(finished_at), tick_id),
            )
            if cur.rowcount == 0:
                raise StoreError(f"{self.path}: finish_tick failed: no tick {tick_id!r}")

    def set_tick_status(self, tick_id: str, status: str) -> None:
        if status not in TICK_STATUSES:
            raise StoreError(f"tick status invalid: {status!r} (valid: {', '.join(TICK_STATUSES)})")
        with self._tx("set_tick_status") as conn:
            cur = conn.execute("UPDATE ticks SET status = ? WHERE tick_id = ?", (status, tick_id))
            if cur.rowcount == 0:
                raise StoreError(f"{self.path}: set_tick_status failed: no tick {tick_id!r}")

    def get_tick(self, tick_id: str) -> TickRecord | None:
        rows = self._ticks("WHERE tick_id = ?", (tick_id,))
        return rows[0] if rows else None

    def open_ticks(self, pattern: str | None = None) -> list[TickRecord]:
        """Ticks still marked ``running`` (after a crash: the ones to recover), oldest first."""
        if pattern is None:
            return self._ticks("WHERE status = 'running' ORDER BY started_at", ())
        return self._ticks("WHERE status = 'running' AND pattern = ? ORDER BY started_at", (pattern,))

    def recent_ticks(self, pattern: str | None = None, limit: int = 50) -> list[TickRecord]:
        """Newest first."""
        if pattern is None:
            return self._ticks("ORDER BY started_at DESC, rowid DESC LIMIT ?", (limit,))
        return self._ticks("WHERE pattern = ? ORDER BY started_at DESC, rowid DESC LIMIT ?", (pattern, limit))

    def last_tick(self, pattern: str) -> TickRecord | None:
        rows = self.recent_ticks(pattern, 1)
        return rows[0] if rows else None

    def tick_run_ids(self, pattern: str, day: date) -> set[str]:
        """Run ids of the pattern's ticks started on ``day`` (UTC), to reconcile with the run log."""
        with self._read("tick_run_ids") as conn:
            rows = conn.execute(
                "SELECT run_id FROM ticks WHERE pattern = ? AND started_day = ?", (pattern, to_day(day))
            ).fetchall()
        return {r[0] for r in rows}

    def _ticks(self, where: str, args: tuple[Any, ...]) -> list[TickRecord]:
        with self._read("ticks") as conn:
            rows = conn.execute(f"SELECT {TICK_COLS} FROM ticks {where}", args).fetchall()
        return [tick_from_row(r) for r in rows]

    # ------------------------------------------------------------------ events

    def add_event(
        self,
        kind: str,
        payload: Mapping[str, Any],
        at: datetime,
        *,
        pattern: str | None = None,
        tick_id: str | None = None,
    ) -> int:
        """Append an event; ids only grow, so a dashboard can resume from the last one it saw."""
        with self._tx("add_event") as conn:
            cur = conn.execute(
                "INSERT INTO events (kind, pattern, tick_id, payload, at) VALUES (?, ?, ?, ?, ?)",
                (kind, pattern, tick_id, self._json(payload), to_ts(at)),
            )
            return int(cur.lastrowid or 0)

    def events_since(self, event_id: int, limit: int = 200) -> list[EventRecord]:
        with self._read("events_since") as conn:
            rows = conn.execute(
                "SELECT id, kind, pattern, tick_id, payload, at FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (event_id, limit),
            ).fetchall()
        return [EventRecord(int(i), k, p, t, load_json(d), parse_ts(a)) for i, k, p, t, d, a in rows]

    def count_events(self, kind: str, *, pattern: str | None, since: datetime) -> int:
        """How many ``kind`` events (of ``pattern``) since ``since`` — for once-a-day notifications."""
        with self._read("count_events") as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM events WHERE kind = ? AND pattern IS ? AND at >= ?",
                (kind, pattern, to_ts(since)),
            ).fetchone()
        return int(row[0])

    def last_event_id(self) -> int:
        """The newest event id (0 when there is none): where a live view starts following."""
        with self._read("last_event_id") as conn:
            row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ budget

    def reserve(
        self, *, pattern: str, day: date, amount: int, cap: int, tick_id: str, now: datetime
    ) -> Reservation | None:
        """Grant ``min(amount, cap + topups − spent)`` atomically, or None when nothing is left.

        ``spent`` = settled + open reservations + external spend for ``day``. The read
        and the insert share one ``BEGIN IMMEDIATE`` transaction, which is what keeps
        concurrent processes from overspending together.
        """
        if check_tokens(amount, "amount") <= 0:
            raise ValueError(f"reserve: amount must be > 0, got {amount}")
        check_tokens(cap, "cap")
        d = to_day(day)
        with self._tx("reserve") as conn:
            used = _used(conn, pattern, d)
            extra = conn.execute(
                "SELECT COALESCE(SUM(tokens), 0) FROM topups WHERE pattern = ? AND day = ?", (pattern, d)
            ).fetchone()[0]
            grant = min(amount, cap + int(extra) - used)
            if grant <= 0:
                return None
            cur = conn.execute(
                "INSERT INTO reservations (pattern, day, amount, tick_id, created_at) VALUES (?, ?, ?, ?, ?)",
                (pattern, d, grant, tick_id, to_ts(now)),
            )
            return Reservation(int(cur.lastrowid or 0), pattern, date.fromisoformat(d), grant, tick_id)

    def settle(self, reservation_id: int, actual: int, now: datetime) -> None:
        """Record a call's actual usage. Settling twice is a no-op (the first value stands)."""
        actual = max(0, check_tokens(actual, "actual"))
        with self._tx("settle") as conn:
            cur = conn.execute(
                "UPDATE reservations SET settled = ?, settled_at = ? WHERE id = ? AND settled IS NULL",
                (actual, to_ts(now), reservation_id),
            )
            if cur.rowcount == 0 and conn.execute(
                "SELECT 1 FROM reservations WHERE id = ?", (reservation_id,)
            ).fetchone() is None:
                raise StoreError(f"{self.path}: settle failed: no reservation {reservation_id}")

    def spent(self, pattern: str, day: date) -> int:
        """Settled tokens only (not open reservations, not external spend); pruned days from their rollup."""
        d = to_day(day)
        return int(self._one(
            "spent",
            "SELECT (SELECT COALESCE(SUM(settled), 0) FROM reservations WHERE pattern = ? AND day = ? "
            "AND settled IS NOT NULL) + (SELECT COALESCE(SUM(tokens), 0) FROM daily_rollups "
            "WHERE day = ? AND pattern = ? AND kind = 'spend')",
            (pattern, d, d, pattern),
        ))

    def reserved(self, pattern: str, day: date) -> int:
        """Tokens held by open (unsettled) reservations."""
        return int(self._one(
            "reserved",
            "SELECT COALESCE(SUM(amount), 0) FROM reservations WHERE pattern = ? AND day = ? AND settled IS NULL",
            (pattern, to_day(day)),
        ))

    def open_reservations(self, pattern: str | None = None, *,
                          created_before: datetime | None = None) -> list[Reservation]:
        sql = f"SELECT {RES_COLS} FROM reservations WHERE settled IS NULL"
        args: tuple[Any, ...] = ()
        if pattern is not None:
            sql, args = sql + " AND pattern = ?", (pattern,)
        if created_before is not None:
            sql, args = sql + " AND created_at < ?", (*args, to_ts(created_before))
        with self._read("open_reservations") as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        return [reservation_from_row(r) for r in rows]

    def settle_orphans(self, live_tick_ids: set[str], now: datetime) -> list[Reservation]:
        """Settle open reservations whose tick is gone; return them as settled.

        A reservation is an orphan when its tick is not in ``live_tick_ids`` and is not
        live in another process either (a ``running`` tick whose owner still holds an
        unexpired lease on its pattern). Choice, failing closed: an orphan is settled
        at its full reserved amount — the call may have used all of it and nobody can
        know — unless the tick journal has a phase whose data names this
        ``reservation_id`` with the usage the backend reported (``actual``, ``tokens``
        or ``usage.total``): that recorded figure is the truth and is settled instead.
        """
        settled: list[Reservation] = []
        with self._tx("settle_orphans") as conn:
            for res in _orphans(conn, live_tick_ids, now):
                recorded = _journaled_usage(conn, res.tick_id, res.id)
                actual = res.amount if recorded is None else recorded
                note = "orphan: full reservation" if recorded is None else "orphan: journaled usage"
                conn.execute(
                    "UPDATE reservations SET settled = ?, settled_at = ?, note = ? WHERE id = ?",
                    (actual, to_ts(now), note, res.id),
                )
                settled.append(Reservation(res.id, res.pattern, res.day, res.amount, res.tick_id, actual))
        return settled

    def external_spent(self, pattern: str, day: date) -> int:
        """Tokens the ecosystem's run log shows for ``day`` that this runtime did not spend."""
        return int(self._one(
            "external_spent",
            "SELECT COALESCE(SUM(tokens), 0) FROM external_spend WHERE pattern = ? AND day = ?",
            (pattern, to_day(day)),
        ))

    def set_external_spent(self, pattern: str, day: date, tokens: int) -> None:
        """Replace (not add to) the external spend for ``day``: the run log is re-read whole."""
        with self._tx("set_external_spent") as conn:
            conn.execute(
                "INSERT INTO external_spend (pattern, day, tokens) VALUES (?, ?, ?) "
                "ON CONFLICT (pattern, day) DO UPDATE SET tokens = excluded.tokens",
                (pattern, to_day(day), max(0, check_tokens(tokens, "tokens"))),
            )

    def add_topup(self, pattern: str, day: date, tokens: int, reason: str, at: datetime) -> None:
        """A human raised today's cap by ``tokens`` (kept as an auditable record)."""
        if check_tokens(tokens, "tokens") <= 0:
            raise ValueError(f"add_topup: tokens must be > 0, got {tokens}")
        with self._tx("add_topup") as conn:
            conn.execute(
                "INSERT INTO topups (pattern, day, tokens, reason, at) VALUES (?, ?, ?, ?, ?)",
                (pattern, to_day(day), tokens, self._text(reason), to_ts(at)),
            )

    def topups(self, pattern: str, day: date) -> int:
        return int(self._one(
            "topups",
            "SELECT COALESCE(SUM(tokens), 0) FROM topups WHERE pattern = ? AND day = ?",
            (pattern, to_day(day)),
        ))

    def topup_records(self, pattern: str) -> list[TopupRecord]:
        with self._read("topup_records") as conn:
            rows = conn.execute(
                "SELECT id, pattern, day, tokens, reason, at FROM topups WHERE pattern = ? ORDER BY id", (pattern,)
            ).fetchall()
        return [TopupRecord(int(i), p, date.fromisoformat(d), int(t), r, parse_ts(a)) for i, p, d, t, r, a in rows]

    # ------------------------------------------------------------------ escalations

    def add_escalation(
        self,
        *,
        pattern: str,
        tick_id: str,
        run_id: str,
        item_id: str,
        title: str,
        diff: str,
        context: Mapping[str, Any],
        created_at: datetime,
    ) -> str:
        """Hold a change for a human; returns ``esc-<8 hex>``.

        The id is derived from (tick, item), so recording the same escalation again —
        a tick resumed after a crash — returns the existing id instead of a duplicate.
        """
        with self._tx("add_escalation") as conn:
            for salt in range(1000):
                esc_id = escalation_id(tick_id, item_id, salt)
                row = conn.execute("SELECT tick_id, item_id FROM escalations WHERE id = ?", (esc_id,)).fetchone()
                if row is None:
                    conn.execute(
                        f"INSERT INTO escalations ({ESC_COLS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, NULL, NULL, NULL, NULL)",
                        (esc_id, pattern, tick_id, run_id, item_id, self._text(title), diff,  # diff: verbatim
                         self._json(context), to_ts(created_at)),
                    )
                    return esc_id
                if tuple(row) == (tick_id, item_id):
                    return esc_id
        raise StoreError(f"{self.path}: add_escalation failed: no free id for {tick_id}/{item_id}")

    def list_escalations(self, status: str | None = "open") -> list[EscalationRecord]:
        """Escalations with ``status`` (None: all), oldest first."""
        if status is None:
            return self._escalations("ORDER BY created_at, id", ())
        return self._escalations("WHERE status = ? ORDER BY created_at, id", (status,))

    def get_escalation(self, esc_id: str) -> EscalationRecord | None:
        rows = self._escalations("WHERE id = ?", (esc_id,))
        return rows[0] if rows else None

    def resolve_escalation(
        self,
        esc_id: str,
        *,
        status: Literal["approved", "rejected"],
        decided_by: str,
        reason: str,
        at: datetime,
        result: Mapping[str, Any] = {},  # read-only default, never mutated
    ) -> None:
        """Decide an open escalation; raises ``StoreError`` if it is unknown or already decided."""
        if status not in ESCALATION_STATUSES[1:]:
            raise StoreError(f"escalation status invalid: {status!r} (valid: approved, rejected)")
        with self._tx("resolve_escalation") as conn:
            row = conn.execute("SELECT status FROM escalations WHERE id = ?", (esc_id,)).fetchone()
            if row is None:
                raise StoreError(f"no escalation {esc_id!r}")
            if row[0] != "open":
                raise StoreError(f"escalation {esc_id} is already {row[0]}")
            conn.execute(
                "UPDATE escalations SET status = ?, decided_by = ?, reason = ?, decided_at = ?, result = ? "
                "WHERE id = ?",
                (status, self._text(decided_by), self._text(reason), to_ts(at), self._json(result), esc_id),
            )

    def _escalations(self, where: str, args: tuple[Any, ...]) -> list[EscalationRecord]:
        with self._read("escalations") as conn:
            rows = conn.execute(f"SELECT {ESC_COLS} FROM escalations {where}", args).fetchall()
        return [escalation_from_row(r) for r in rows]

    # ------------------------------------------------------------------ retention

    def prune(self, now: datetime, *, keep_days: int = 90, batch: int = 1000) -> PruneReport:
        """Delete what is older than ``keep_days`` UTC days: finished ticks (with their journal) and settled
        reservations after adding them to ``daily_rollups``, and events (the charts read ticks and spend,
        not events); then give free pages back.

        Why batches: each is one short ``BEGIN IMMEDIATE`` transaction, so a daemon's ticks in
        other processes wait milliseconds, not the whole prune. Running, resumable and
        crashed ticks are kept whatever their age (recovery and ``resume`` need them), and so
        are open reservations and every escalation (a human's decision record).
        """
        from datetime import timedelta

        if not isinstance(keep_days, int) or isinstance(keep_days, bool) or keep_days < 1:
            raise ValueError(f"keep_days must be a whole number of days ≥ 1, got {keep_days!r}")
        cutoff_day = to_day(now - timedelta(days=keep_days))
        cutoff = cutoff_day + "T00:00:00.000000Z"  # whole UTC days only: a day's rollup is complete
        ticks = self._roll_up_and_delete(
            "prune ticks", "SELECT tick_id FROM ticks WHERE started_at < ? AND status IN ('finished', 'halted', "
            "'resumed', 'error') LIMIT ?", (cutoff, batch),
            "INSERT INTO daily_rollups (day, pattern, kind, count, tokens) "
            "SELECT started_day, pattern, 'tick:' || COALESCE(outcome, status), COUNT(*), SUM(tokens) "
            "FROM ticks WHERE tick_id IN ({marks}) GROUP BY 1, 2, 3 "
            "ON CONFLICT (day, pattern, kind) DO UPDATE SET count = count + excluded.count, "
            "tokens = tokens + excluded.tokens", (("phases", "tick_id"), ("ticks", "tick_id")))
        reservations = self._roll_up_and_delete(
            "prune reservations", "SELECT id FROM reservations WHERE day < ? AND settled IS NOT NULL LIMIT ?",
            (cutoff_day, batch),
            "INSERT INTO daily_rollups (day, pattern, kind, count, tokens) "
            "SELECT day, pattern, 'spend', COUNT(*), SUM(settled) FROM reservations WHERE id IN ({marks}) "
            "GROUP BY 1, 2 ON CONFLICT (day, pattern, kind) DO UPDATE SET count = count + excluded.count, "
            "tokens = tokens + excluded.tokens", (("reservations", "id"),))
        events = 0
        while True:
            with self._tx("prune events") as conn:
                cur = conn.execute("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ? LIMIT ?)",
                                   (cutoff, batch))
                if cur.rowcount <= 0:
                    break
                events += cur.rowcount
        with self._tx("prune old rows") as conn:
            conn.execute("DELETE FROM external_spend WHERE day < ?", (cutoff_day,))
        return PruneReport(ticks, events, reservations, self._give_back_pages())

    def _roll_up_and_delete(self, label: str, select: str, args: tuple[Any, ...], rollup: str,
                            deletes: tuple[tuple[str, str], ...]) -> int:
        """Batch by batch: the ids ``select`` finds are summed into ``daily_rollups`` (``rollup``, with
        ``{marks}`` for their placeholders), then deleted from each (table, id column); how many went."""
        done = 0
        while True:
            with self._tx(label) as conn:
                ids = [r[0] for r in conn.execute(select, args)]
                if not ids:
                    return done
                marks = ",".join("?" * len(ids))
                conn.execute(rollup.format(marks=marks), ids)
                for table, column in deletes:
                    conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
                done += len(ids)

    CONVERT_MAX_BYTES = 64 * 1024 * 1024
    """A store made before auto_vacuum is converted (one full ``VACUUM``) only up to this size: a bigger
    one would hold every process's writes for longer than their busy timeout. Its freed pages are still
    reused by new rows, so under retention it stops growing anyway; it just does not shrink."""

    def _give_back_pages(self) -> int:
        """``incremental_vacuum``: the file shrinks by the pages pruning freed (a small store created before
        auto_vacuum existed is converted once, by a full VACUUM, when nobody else holds it)."""
        with self._read("vacuum") as conn:
            if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                size = conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
                if size > self.CONVERT_MAX_BYTES:
                    return 0
                try:
                    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                    conn.execute("VACUUM")
                except sqlite3.OperationalError:
                    return 0  # busy: the next prune tries again
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            if free:  # executescript steps the pragma to the end (execute frees one page per call)
                conn.executescript("PRAGMA incremental_vacuum;")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return free

    def rollups(self, pattern: str | None = None, since: date | None = None) -> list[tuple[str, str, str, int, int]]:
        """``(day, pattern, kind, count, tokens)`` rows of pruned days, oldest first (for charts)."""
        sql = "SELECT day, pattern, kind, count, tokens FROM daily_rollups WHERE day >= ?"
        args: list[Any] = [to_day(since) if since is not None else "0000-00-00"]
        if pattern is not None:
            sql += " AND pattern = ?"
            args.append(pattern)
        with self._read("rollups") as conn:
            rows = conn.execute(sql + " ORDER BY day, pattern, kind", args).fetchall()
        return [(d, p, k, int(c), int(t)) for d, p, k, c, t in rows]

    # ------------------------------------------------------------------ schedule

    def get_next_due(self, pattern: str) -> datetime | None:
        text = self._one("get_next_due", "SELECT next_due FROM schedule WHERE pattern = ?", (pattern,))
        return None if text is None else parse_ts(text)

    def set_next_due(self, pattern: str, at: datetime) -> None:
        self.set_next_dues({pattern: at})

    def set_next_dues(self, due: Mapping[str, datetime]) -> None:
        """``set_next_due`` for many patterns in one transaction (the scheduler's batch)."""
        if not due:
            return
        with self._tx("set_next_dues") as conn:
            conn.executemany(
                "INSERT INTO schedule (pattern, next_due) VALUES (?, ?) "
                "ON CONFLICT (pattern) DO UPDATE SET next_due = excluded.next_due",
                [(pattern, to_ts(at)) for pattern, at in due.items()],
            )

    def runs_on_day(self, pattern: str, day: date) -> int:
        """Ticks of ``pattern`` started on ``day`` (UTC), whatever their status or outcome.

        Every tick the engine began counts against ``runs/day`` — a no-op or a crashed
        tick was still a run — which keeps the rule simple and errs towards fewer runs.
        """
        return int(self._one(
            "runs_on_day",
            "SELECT COUNT(*) FROM ticks WHERE pattern = ? AND started_day = ?",
            (pattern, to_day(day)),
        ))


# --------------------------------------------------------------------------- helpers


def _used(conn: sqlite3.Connection, pattern: str, day: str) -> int:
    """Settled + open reservations + external spend for (pattern, day)."""
    own = conn.execute(
        "SELECT COALESCE(SUM(CASE WHEN settled IS NULL THEN amount ELSE settled END), 0) "
        "FROM reservations WHERE pattern = ? AND day = ?",
        (pattern, day),
    ).fetchone()[0]
    ext = conn.execute(
        "SELECT COALESCE(SUM(tokens), 0) FROM external_spend WHERE pattern = ? AND day = ?", (pattern, day)
    ).fetchone()[0]
    return int(own) + int(ext)


def _orphans(conn: sqlite3.Connection, live_tick_ids: set[str], now: datetime) -> list[Reservation]:
    """Open reservations whose tick is neither in ``live_tick_ids`` nor running under a live lease."""
    rows = conn.execute(
        f"SELECT {', '.join('r.' + c for c in RES_COLS.split(', '))} FROM reservations r "
        "LEFT JOIN ticks t ON t.tick_id = r.tick_id "
        "LEFT JOIN leases l ON l.pattern = t.pattern AND l.owner = t.owner AND l.expires_at > ? "
        "WHERE r.settled IS NULL AND NOT (COALESCE(t.status, '') = 'running' AND l.owner IS NOT NULL) "
        "ORDER BY r.id",
        (to_ts(now),),
    ).fetchall()
    return [r for r in map(reservation_from_row, rows) if r.tick_id not in live_tick_ids]


def _journaled_usage(conn: sqlite3.Connection, tick_id: str, reservation_id: int) -> int | None:
    """The largest usage the tick's journal recorded for this reservation, if any."""
    found: int | None = None
    for (text,) in conn.execute("SELECT data FROM phases WHERE tick_id = ? ORDER BY id", (tick_id,)):
        data = load_json(text)
        if data.get("reservation_id") != reservation_id:
            continue
        value = _usage_in(data)
        if value is not None:
            found = value if found is None else max(found, value)
    return found


def _usage_in(data: Mapping[str, Any]) -> int | None:
    """The usage a journal entry reports: ``actual``, ``tokens`` or ``usage.total``."""
    usage = data.get("usage")
    for value in (data.get("actual"), data.get("tokens"), usage.get("total") if isinstance(usage, Mapping) else None):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None
