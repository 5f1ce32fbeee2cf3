"""When each loop is next due (``ports.store.ScheduleStore``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from .base import StoreBase
from .schema import parse_ts, to_ts

__all__ = ["Schedule"]


class Schedule(StoreBase):
    """``ScheduleStore`` over the ``schedule`` table."""

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
