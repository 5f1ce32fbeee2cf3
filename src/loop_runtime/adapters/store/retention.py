"""Retention: ``prune`` rolls old rows up into ``daily_rollups``, deletes them and gives pages back.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from .base import StoreBase
from .schema import to_day

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
    from ...ports.ledger_records import PruneReport

__all__ = ["Retention"]


class Retention(StoreBase):
    """``Store.prune`` (the charts and ``spent`` read the rollups it writes)."""

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
        from ...ports.ledger_records import PruneReport

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
