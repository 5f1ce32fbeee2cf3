"""The ledger's and the event feed's rows: reservations, top-ups, events, and what a prune removed.

Apart from ``ports.records`` so that reading ticks and escalations (``status``) does not build them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True)
class PruneReport:
    """What one ``Store.prune`` removed (after summing it into ``daily_rollups``)."""

    ticks: int = 0
    events: int = 0
    reservations: int = 0
    pages_freed: int = 0


@dataclass(frozen=True)
class EventRecord:
    id: int
    kind: str
    pattern: str | None
    tick_id: str | None
    payload: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class ReservationRecord:
    """Tokens set aside for one agent call; ``settled`` is the actual usage once known."""

    id: int
    pattern: str
    day: date
    amount: int
    tick_id: str
    settled: int | None = None


@dataclass(frozen=True)
class TopupRecord:
    id: int
    pattern: str
    day: date
    tokens: int
    reason: str
    at: datetime
