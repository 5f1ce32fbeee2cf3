"""Ticks and their phase journal (``ports.store.TickStore``).

The journal is append-only: it is the recovery record ``resume`` and crash recovery read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from ...errors import StoreError
from .base import StoreBase
from .schema import (
    TICK_COLS,
    TICK_STATUSES,
    PhaseRecord,
    TickRecord,
    check_tokens,
    load_json,
    parse_ts,
    tick_from_row,
    to_day,
    to_ts,
)

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Ticks"]


class Ticks(StoreBase):
    """``TickStore`` over the ``ticks`` and ``phases`` tables."""

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

    def recent_patterns(self, limit: int = 200) -> set[str]:
        """The patterns of the newest ``limit`` ticks (which loops have a story here), without reading the rows."""
        with self._read("recent_patterns") as conn:
            rows = conn.execute(
                "SELECT DISTINCT pattern FROM (SELECT pattern FROM ticks ORDER BY started_at DESC, rowid DESC "
                "LIMIT ?)", (limit,)
            ).fetchall()
        return {r[0] for r in rows}

    def _ticks(self, where: str, args: tuple[Any, ...]) -> list[TickRecord]:
        with self._read("ticks") as conn:
            rows = conn.execute(f"SELECT {TICK_COLS} FROM ticks {where}", args).fetchall()
        return [tick_from_row(r) for r in rows]

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
