"""The budget ledger (``ports.store.LedgerStore``): reservations, settlements, external spend, top-ups.

``reserve`` reads today's spend and inserts the reservation in one ``BEGIN IMMEDIATE``
transaction: the check and the write are atomic across processes, so concurrent reservers can
never together pass the cap. Days pruned by retention are read from ``daily_rollups``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import date, datetime

from ...errors import StoreError
from .base import StoreBase
from .schema import (
    RES_COLS,
    check_tokens,
    load_json,
    parse_ts,
    reservation_from_row,
    to_day,
    to_ts,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
    from ...ports.ledger_records import ReservationRecord as Reservation
    from ...ports.ledger_records import TopupRecord

__all__ = ["Ledger"]


class Ledger(StoreBase):
    """``LedgerStore`` over ``reservations``, ``external_spend``, ``topups`` and ``daily_rollups``."""

    def reserve(
        self, *, pattern: str, day: date, amount: int, cap: int, tick_id: str, now: datetime
    ) -> Reservation | None:
        """Grant ``min(amount, cap + topups − spent)`` atomically, or None when nothing is left.

        ``spent`` = settled + open reservations + external spend for ``day``. The read
        and the insert share one ``BEGIN IMMEDIATE`` transaction, which is what keeps
        concurrent processes from overspending together.
        """
        from ...ports.ledger_records import ReservationRecord as Reservation

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
        from ...ports.ledger_records import ReservationRecord as Reservation

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
        from ...ports.ledger_records import TopupRecord

        with self._read("topup_records") as conn:
            rows = conn.execute(
                "SELECT id, pattern, day, tokens, reason, at FROM topups WHERE pattern = ? ORDER BY id", (pattern,)
            ).fetchall()
        return [TopupRecord(int(i), p, date.fromisoformat(d), int(t), r, parse_ts(a)) for i, p, d, t, r, a in rows]

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
