"""Budgets exact across workers: one workflow per (scope, UTC day) serializes reserve and settle.

Why a workflow and not a database: workers on several machines share no file, and a
counter in an external store would need its own transactions and its own availability.
A Temporal workflow is a single-threaded, durable actor: its update handlers run one at a
time, their result is acknowledged only once recorded in history, and a retried update
(same reservation id) is answered from the record instead of reserving twice. So two or
more workers reserving against one cap can never overspend it, and a crashed worker's open
reservations stay counted until the retried tick charges them in full (fail closed).

Deterministic code only: no I/O, no clock but ``workflow.now()``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, UTC

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from .types import BUDGET_WORKFLOW, BudgetState, Reserve, Settle, SettleOpen, TopUp

#: a day's budget stays queryable this long after the UTC day ended
GRACE = timedelta(days=1)


@workflow.defn(name=BUDGET_WORKFLOW)
class BudgetWorkflow:
    @workflow.init
    def __init__(self, state: BudgetState) -> None:
        self.state = state

    @workflow.run
    async def run(self, state: BudgetState) -> BudgetState:
        end = datetime.fromisoformat(state.day).replace(tzinfo=UTC) + timedelta(days=1) + GRACE
        while True:
            left = (end - workflow.now()).total_seconds()
            if left <= 0:
                break
            try:
                await workflow.wait_condition(lambda: workflow.info().is_continue_as_new_suggested(),
                                              timeout=timedelta(seconds=left))
            except TimeoutError:
                break
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(self._compact())
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    def _compact(self) -> BudgetState:
        """What continue-as-new carries: totals and the ids a retry may still name."""
        s = self.state
        return BudgetState(scope=s.scope, day=s.day, cap=s.cap, spent=s.spent, open=dict(s.open),
                           settled=dict(s.settled), granted=dict(s.granted), topups=dict(s.topups))

    @workflow.update
    def reserve(self, req: Reserve) -> int:
        """Grant ``min(amount, remaining)`` (0 when nothing remains). Idempotent per ``req.id``."""
        s = self.state
        if req.id in s.granted:
            return s.granted[req.id]
        if req.cap is not None:
            s.cap = req.cap  # the caller's cap includes today's top-ups: the latest one is the truth
        cap = s.effective_cap
        remaining = (10**15 if cap is None else cap) - s.spent - s.reserved
        grant = max(0, min(req.amount, remaining))
        s.granted[req.id] = grant
        if grant > 0:
            s.open[req.id] = grant
        return grant

    @reserve.validator
    def _check_reserve(self, req: Reserve) -> None:
        if req.amount < 0 or (req.cap is not None and req.cap < 0):
            raise ValueError(f"reserve: negative amount or cap ({req.amount}, {req.cap})")

    @workflow.update
    def settle(self, req: Settle) -> int:
        """Replace a reservation by its actual usage; settling twice charges once."""
        s = self.state
        if req.id in s.settled:
            return s.settled[req.id]
        if req.id not in s.open:
            if req.id not in s.granted:
                return 0
            s.granted.setdefault(req.id, 0)
        s.open.pop(req.id, None)
        s.spent += req.actual
        s.settled[req.id] = req.actual
        return req.actual

    @settle.validator
    def _check_settle(self, req: Settle) -> None:
        if req.actual < 0:
            raise ValueError(f"settle: negative usage {req.actual}")

    @workflow.update
    def settle_open(self, req: SettleOpen) -> int:
        """A crashed attempt's open reservations are charged in full: its agent may have spent them."""
        s = self.state
        charged = 0
        for rid in [r for r in s.open if r.startswith(req.prefix)]:
            amount = s.open.pop(rid)
            s.spent += amount
            s.settled[rid] = amount
            charged += amount
        return charged

    @workflow.update
    def topup(self, req: TopUp) -> int:
        """A human raised today's cap (``loop-runtime topup``); returns the new effective cap (0: no cap)."""
        self.state.topups.setdefault(req.id, req.tokens)
        return self.state.effective_cap or 0

    @topup.validator
    def _check_topup(self, req: TopUp) -> None:
        if req.tokens <= 0:
            raise ValueError(f"topup: tokens must be positive, got {req.tokens}")

    @workflow.query
    def status(self) -> BudgetState:
        return self.state
