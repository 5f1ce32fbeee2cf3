"""The rows a reader of the store's ticks needs: ticks, their phases, escalations, budget status.

Apart from the protocols in ``ports.store`` because every reader needs these at run time while the
protocols matter to type checkers and tests; and apart from the ledger's and the feed's rows
(``ports.ledger_records``), which ``status`` never builds: each dataclass costs about a
millisecond of start-up, and people type ``status`` all day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any


@dataclass(frozen=True)
class PhaseRecord:
    """One phase a tick finished, with what it produced: how a tick resumes without redoing (or re-billing) it."""

    phase: str
    data: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class TickRecord:
    """One tick as the store keeps it: who ran it, how it ended and what it cost."""

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
    """A change held for a human: the diff and context they decide on, and their decision once made."""

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


# --------------------------------------------------------------------------- budget


@dataclass(frozen=True)
class Reservation:
    """Tokens set aside for one agent call before it starts (reserve → settle)."""

    id: int
    amount: int


@dataclass(frozen=True)
class BudgetStatus:
    """A scope's day: its cap, what was settled and what open reservations still hold (``used`` counts both)."""

    day: str  # YYYY-MM-DD, UTC
    cap: int | None  # None: unknown (no cost block and no loop-budget.md row)
    spent: int  # settled
    reserved: int  # open reservations

    @property
    def used(self) -> int:
        return self.spent + self.reserved

    @property
    def fraction(self) -> float:
        return 0.0 if not self.cap else self.used / self.cap
