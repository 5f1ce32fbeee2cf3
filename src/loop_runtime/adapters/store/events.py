"""The event feed (``ports.store.EventStore``): append-only, ids only grow.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from .base import StoreBase
from .schema import load_json, parse_ts, to_ts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
    from ...ports.ledger_records import EventRecord

__all__ = ["Events"]


class Events(StoreBase):
    """``EventStore`` over the ``events`` table."""

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
        from ...ports.ledger_records import EventRecord

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
