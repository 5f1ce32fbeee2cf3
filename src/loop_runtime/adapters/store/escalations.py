"""Escalations (``ports.store.EscalationStore``): what waits for a human.

``resolve_escalation`` checks ``open`` and updates in one immediate transaction: a second approve
fails instead of applying twice. The held ``diff`` is stored verbatim (it must apply later); every
other text is redacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ...errors import StoreError
from .base import StoreBase
from .schema import ESC_COLS, ESCALATION_STATUSES, EscalationRecord, escalation_from_row, escalation_id, to_ts

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any, Literal

__all__ = ["Escalations"]


class Escalations(StoreBase):
    """``EscalationStore`` over the ``escalations`` table."""

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
