"""The rows a reader of the store's ticks needs: ticks, their phases, escalations.

Apart from the protocols in ``ports.store`` because every reader needs these at run time while the
protocols matter to type checkers and tests; and apart from the ledger's and the feed's rows
(``ports.ledger_records``), which ``status`` never builds: each dataclass costs about a
millisecond of start-up, and people type ``status`` all day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
