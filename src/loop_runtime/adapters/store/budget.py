"""``ports.BudgetLedger`` over SQLite stores: every process of a project — and of a fleet — shares it.

A reservation is taken in every scope that applies, outermost first: the fleet's
portfolio (its own ledger next to the fleet file, shared by every repository), the
repository (``global_daily_cap``, the pseudo-pattern ``*``), then the loop. Each scope's
reserve is one ``BEGIN IMMEDIATE`` transaction in its own database, so no scope can be
overspent by any number of processes; a reservation refused by an inner scope is
released (settled at 0) in the outer ones it already holds.

The day is read once per reservation and the reservation is settled by id, so a call that
starts at 23:59:59 and ends after midnight stays on the day it was reserved on in every
scope (the next day starts at zero, as the cap says).

The rules themselves (cap + top-ups, how much fits, which scope is tightest) are
``core.budget``'s; this module only asks the stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ...core.budget import tightest, todays_cap, utc_day
from ...ports import BudgetStatus, Reservation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ...ports.store import LedgerStore

__all__ = ["GLOBAL", "NO_CAP", "PORTFOLIO", "PORTFOLIO_USD", "BudgetScope", "StoreBudget", "scope_status"]

GLOBAL = "*"
PORTFOLIO = "portfolio"
PORTFOLIO_USD = "portfolio-usd"
#: the words a verdict on a shared scope starts with (``core.budget.judge``), as ``status`` shows them
SCOPE_LABELS = {GLOBAL: "repository", PORTFOLIO: "portfolio", PORTFOLIO_USD: "portfolio dollar (micro-USD)"}
"""The portfolio's dollar ledger, in micro-dollars (integers: SQLite sums stay exact)."""
NO_CAP = 10**15
"""Recorded-but-uncapped scopes still go through ``reserve`` so their spend is kept."""


@dataclass(frozen=True)
class BudgetScope:
    """One ledger row-set: ``key`` in ``store`` with a configured daily ``cap`` (None: none).

    ``ref`` is the tick id written with its reservations (the portfolio records
    ``<repo>/<tick>`` so a reservation can be traced to its repository).
    """

    store: LedgerStore
    key: str
    cap: int | None
    ref: str | None = None
    #: ledger units per token: 1 for token scopes; the price-table rate for the USD scope (micro-dollars)
    per_token: float = 1.0
    #: ledger units per reported US dollar (the USD scope: 1e6), so a backend's own cost replaces the table
    per_usd: float | None = None

    def units(self, tokens: int) -> int:
        import math

        return int(math.ceil(tokens * self.per_token))

    def tokens(self, units: int) -> int:
        return int(units // self.per_token) if self.per_token != 1.0 else units

    def settled_units(self, tokens: int, cost_usd: float | None) -> int:
        import math

        if self.per_usd is not None and cost_usd is not None and cost_usd >= 0:
            return int(math.ceil(cost_usd * self.per_usd))
        return self.units(max(0, tokens))


def scope_status(store: LedgerStore, key: str, cap: int | None, now: datetime) -> BudgetStatus:
    """Today's status of one scope: ``core.budget.todays_cap`` over the store's spend and top-ups."""
    day = utc_day(now)
    spent = store.spent(key, day) + store.external_spent(key, day)
    return BudgetStatus(str(day), todays_cap(cap, store.topups(key, day)), spent, store.reserved(key, day))


class StoreBudget:
    """The loop's ledger: its own cap, the repository's ``global_cap``, and an optional portfolio scope."""

    GLOBAL = GLOBAL

    accepts_cost = True  # ``core.budget.settle_call`` hands it the backend's reported USD cost

    def __init__(self, store: LedgerStore, pattern: str, cap: int | None, tick_id: str,
                 global_cap: int | None = None, *,
                 portfolio: BudgetScope | Sequence[BudgetScope] | None = None) -> None:
        self.store, self.pattern, self.cap, self.tick_id = store, pattern, cap, tick_id
        self.global_cap = global_cap
        self.portfolio: tuple[BudgetScope, ...] = (
            () if portfolio is None else (portfolio,) if isinstance(portfolio, BudgetScope) else tuple(portfolio))
        self._held: dict[int, list[tuple[BudgetScope, int]]] = {}

    def scopes(self) -> list[BudgetScope]:
        """Outermost first: portfolio (tokens, then USD), repository, loop."""
        out: list[BudgetScope] = list(self.portfolio)
        if self.global_cap is not None:
            out.append(BudgetScope(self.store, GLOBAL, self.global_cap))
        out.append(BudgetScope(self.store, self.pattern, self.cap))
        return out

    def status(self, now: datetime) -> BudgetStatus:
        """The tightest scope (``core.budget.tightest``): what ``assess`` judges the tick by."""
        own, shared = self.scoped_status(now)
        return tightest([own, *(status for _, status in reversed(shared))])

    def scoped_status(self, now: datetime) -> tuple[BudgetStatus, tuple[tuple[str, BudgetStatus], ...]]:
        """The loop's own scope and the labelled shared ones above it, for ``core.budget.judge``: the tick
        then gives the reason ``status`` gives ("repository budget: …", "portfolio budget: …")."""
        *shared, own = self.scopes()
        return (scope_status(own.store, own.key, own.cap, now),
                tuple((SCOPE_LABELS.get(s.key, s.key), scope_status(s.store, s.key, s.cap, now)) for s in shared))

    def reserve(self, amount: int, now: datetime) -> Reservation | None:
        day = utc_day(now)  # once: every scope books the same day
        taken: list[tuple[BudgetScope, int]] = []
        for scope in self.scopes():
            cap = scope.cap if scope.cap is not None else NO_CAP
            r = scope.store.reserve(pattern=scope.key, day=day, amount=max(1, scope.units(amount)), cap=cap,
                                    tick_id=scope.ref or self.tick_id, now=now)
            granted = 0 if r is None else min(amount, scope.tokens(r.amount))
            if r is not None:
                taken.append((scope, r.id))
            if granted <= 0:
                for held, rid in reversed(taken):
                    held.store.settle(rid, 0, now)
                return None
            amount = granted  # an outer scope's grant bounds the inner ones
        inner_id = taken[-1][1]
        self._held[inner_id] = taken[:-1]
        return Reservation(inner_id, amount)

    def settle(self, reservation: Reservation, actual: int, now: datetime, *, cost_usd: float | None = None) -> None:
        """Outer scopes first: while the loop's own row is open, no sweep takes the outer ones for orphans."""
        for scope, rid in self._held.pop(reservation.id, []):
            scope.store.settle(rid, scope.settled_units(actual, cost_usd), now)
        self.store.settle(reservation.id, actual, now)
