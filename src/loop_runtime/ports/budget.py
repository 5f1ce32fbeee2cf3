"""The budget ledger the breaker reserves from and settles to.

Part of ``loop_runtime.ports`` (every name is importable from there). The values it passes
(``Reservation``, ``BudgetStatus``) live in ``ports.records``: ``status`` and the core's breaker
need them at run time, and this protocol needs ``typing``, which ``status`` does not otherwise import.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from .records import BudgetStatus, Reservation

__all__ = ["BudgetLedger", "BudgetStatus", "Reservation"]


# --------------------------------------------------------------------------- budget


@runtime_checkable
class BudgetLedger(Protocol):
    """Where today's spend is kept: ``core.budget.BudgetBreaker`` in memory, or the SQLite store
    shared by every process of a project (``adapters.store.budget.StoreBudget``)."""

    def status(self, now: datetime) -> BudgetStatus: ...

    def reserve(self, amount: int, now: datetime) -> Reservation | None: ...

    def settle(self, reservation: Reservation, actual: int, now: datetime) -> None: ...


