"""The rows the store returns: ticks, phases, events, reservations, top-ups, escalations.

Apart from the protocols in ``ports.store`` because every reader of the store needs these at
run time while the protocols matter to type checkers and tests; ``status`` should not pay for
building seven Protocol classes on every start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class PruneReport:
    """What one ``Store.prune`` removed (after summing it into ``daily_rollups``)."""

    ticks: int = 0
    events: int = 0
    reservations: int = 0
    pages_freed: int = 0


@dataclass(frozen=True)
class PhaseRecord:
    phase: str
    data: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class TickRecord:
    tick_id: str
    run_id: str
    pattern: str
    level: str
    backend: str
    status: str
    outcome: str | None
    tokens: int
    started_at: datetime
    finished_at: datetime | None
    owner: str
    summary: dict[str, Any] = field(default_factory=dict)


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


@dataclass(frozen=True)
class EscalationRecord:
    id: str
    pattern: str
    tick_id: str
    run_id: str
    item_id: str
    title: str
    diff: str
    context: dict[str, Any]
    status: str
    created_at: datetime
    decided_by: str | None = None
    reason: str | None = None
    decided_at: datetime | None = None
    result: dict[str, Any] = field(default_factory=dict)
