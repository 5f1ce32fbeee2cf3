"""``ports.BudgetLedger`` for ticks on Temporal: reserve and settle through the budget workflows.

One workflow per (scope, UTC day) serializes every worker's reservations (``budget_workflow``); this
client takes a reservation in every scope that applies, outermost first, exactly as the embedded
``StoreBudget`` does over SQLite: the fleet's portfolio (tokens, then dollars), the repository, the loop.
It runs in an activity's thread and reaches the workflows through the worker's event loop.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from typing import Any

from ..adapters.store.budget import BudgetScope
from ..errors import LoopError
from ..ports import BudgetStatus, Reservation
from .types import BUDGET_WORKFLOW, BudgetState, Reserve, Settle, SettleOpen, budget_workflow_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .activities import WorkerContext



def token_scope(name: str, cap: int | None) -> BudgetScope:
    """A budget workflow's scope in the embedded ledger's own terms (``BudgetScope``: its units and its
    pricing of tokens and of a reported cost); its ledger is the workflow, so it has no store."""
    return BudgetScope(None, name, cap)  # type: ignore[arg-type]


class BudgetClient:
    """``ports.BudgetLedger`` over budget workflows: one per (scope, UTC day), shared by every worker.

    Scopes, outermost first: the fleet's portfolio (tokens, then dollars) when the tick belongs to a
    fleet, the repository (``global_daily_cap``), the loop. Reservation ids are ``<tick>:<attempt>:<n>``:
    a retried update RPC is answered from the workflow's record, and a later attempt charges the earlier
    one's open reservations in full.
    """

    accepts_cost = True  # ``core.budget.settle_call`` hands it the backend's reported USD cost

    def __init__(self, ctx: WorkerContext, scope: str, cap: int | None, tick_id: str, attempt: int,
                 task_queue: str, global_scope: str | None = None, global_cap: int | None = None,
                 outer: list[BudgetScope] | None = None) -> None:
        self.ctx, self.scope, self.cap, self.tick_id, self.attempt = ctx, scope, cap, tick_id, attempt
        self.task_queue = task_queue
        self.global_scope, self.global_cap = global_scope, global_cap
        self.outer = list(outer or [])
        self._n = 0
        self._open: dict[int, list[tuple[BudgetScope, str]]] = {}  # local id → [(scope, reservation id)]
        self.shutdown: threading.Event | None = None

    #: while the worker shuts down its own workflow pollers are gone: a budget update may find no worker
    #: to run it, so it gets a short wait, and the retried tick charges what stays open (fail closed)
    SHUTDOWN_TIMEOUT_S = 3.0

    def _call(self, coro: Any) -> Any:
        import concurrent.futures

        shutting = self.shutdown is not None and self.shutdown.is_set()
        future = asyncio.run_coroutine_threadsafe(coro, self.ctx.loop)
        try:
            return future.result(self.SHUTDOWN_TIMEOUT_S if shutting else self.ctx.budget_timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise LoopError(f"budget {self.scope}: no answer from its budget workflow"
                            + (" (this worker is shutting down)" if shutting else "")) from None

    def _scopes(self) -> list[BudgetScope]:
        out: list[BudgetScope] = list(self.outer)
        if self.global_scope is not None and self.global_cap is not None:
            out.append(token_scope(self.global_scope, self.global_cap))
        out.append(token_scope(self.scope, self.cap))
        return out

    async def _update(self, scope: str, day: str, name: str, arg: Any, cap: int | None) -> Any:
        from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError

        wid = budget_workflow_id(scope, day)
        try:
            await self.ctx.client.start_workflow(
                BUDGET_WORKFLOW, BudgetState(scope=scope, day=day, cap=cap), id=wid, task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
        except WorkflowAlreadyStartedError:
            return None  # the day's budget workflow has closed: nothing more may be reserved that day
        return await self.ctx.client.get_workflow_handle(wid).execute_update(name, arg, result_type=int)

    async def _query(self, scope: str, day: str) -> BudgetState | None:
        from temporalio.service import RPCError

        try:
            return await self.ctx.client.get_workflow_handle(budget_workflow_id(scope, day)).query(
                "status", result_type=BudgetState)
        except RPCError:
            return None

    def status(self, now: datetime) -> BudgetStatus:
        """The tightest scope (``core.budget.tightest``), as the embedded ``StoreBudget`` judges it."""
        from ..core.budget import tightest, todays_cap

        day = str(now.date())
        out = []
        for sc in reversed(self._scopes()):
            st = self._call(self._query(sc.key, day))
            cap = todays_cap(sc.cap, sum(st.topups.values()) if st else 0)
            out.append(BudgetStatus(day, cap, st.spent if st else 0, st.reserved if st else 0))
        return tightest(out)

    def reserve(self, amount: int, now: datetime) -> Reservation | None:
        day = str(now.date())
        self._n += 1
        rid = f"{self.tick_id}:{self.attempt}:{self._n}"
        taken: list[tuple[BudgetScope, str]] = []
        for sc in self._scopes():
            units = max(1, sc.units(amount))
            got = self._call(self._update(sc.key, day, "reserve", Reserve(id=rid, amount=units, cap=sc.cap), sc.cap))
            granted = min(amount, sc.tokens(got or 0))
            if got:
                taken.append((sc, rid))
            if granted <= 0:
                for held, r in taken:  # a tighter scope said no: give back what the others granted
                    self._call(self._update(held.key, day, "settle", Settle(id=r, actual=0), None))
                return None
            amount = granted  # an outer scope's grant bounds the inner ones
        self._open[self._n] = taken
        self._day = day
        return Reservation(self._n, amount)

    def settle(self, reservation: Reservation, actual: int, now: datetime, *, cost_usd: float | None = None) -> None:
        for sc, rid in self._open.pop(reservation.id, []):
            units = sc.settled_units(actual, cost_usd)
            self._call(self._update(sc.key, self._day, "settle", Settle(id=rid, actual=units), None))

    def settle_previous_attempts(self, now: datetime) -> int:
        """Charge in full what earlier attempts of this tick left reserved (their agent may have spent it)."""
        day = str(now.date())
        charged = 0
        for sc in self._scopes():
            charged += self._call(self._update(sc.key, day, "settle_open", SettleOpen(prefix=f"{self.tick_id}:"),
                                               None)) or 0
        return charged
