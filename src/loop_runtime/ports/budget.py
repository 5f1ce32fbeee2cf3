"""The budget ledger the breaker reserves from and settles to.

Part of ``loop_runtime.ports`` (every name is importable from there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


# --------------------------------------------------------------------------- budget


@dataclass(frozen=True)
class Reservation:
    """Tokens set aside for one agent call before it starts (reserve → settle)."""

    id: int
    amount: int


@dataclass(frozen=True)
class BudgetStatus:
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


@runtime_checkable
class BudgetLedger(Protocol):
    """Where today's spend is kept: ``core.budget.BudgetBreaker`` in memory, or the SQLite store
    shared by every process of a project (``adapters.store.budget.StoreBudget``)."""

    def status(self, now: datetime) -> BudgetStatus: ...

    def reserve(self, amount: int, now: datetime) -> Reservation | None: ...

    def settle(self, reservation: Reservation, actual: int, now: datetime) -> None: ...


