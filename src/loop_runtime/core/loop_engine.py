"""``LoopEngine``: runs ticks of one planned loop (the library's entry point; see ``core/engine.py``).

It sits above the tick (``core.tick``) and what it is given (``core.engine.TickDeps``), and
drives the tick embedded: every PortCall the tick yields is performed at once on the
adapters (``core.effects.DirectExecutor``). A Temporal workflow drives the same ``Tick``
with another executor.
"""

from __future__ import annotations

from typing import Any

from ..ports import AgentBackend, BudgetLedger, StateWriter
from .effects import DirectExecutor, drive
from .engine import TickDeps
from .plan import Plan
from .result import TickResult
from .tick import Tick

__all__ = ["LoopEngine"]


class LoopEngine:
    """Runs ticks of one planned loop. Stateless between ticks apart from what the ports keep."""

    def __init__(
        self,
        plan: Plan,
        backend: AgentBackend | None = None,
        state: StateWriter | None = None,
        budget: BudgetLedger | None = None,
        *,
        deps: TickDeps | None = None,
        **kwargs: Any,
    ) -> None:
        if deps is None:
            if backend is None or state is None or budget is None:
                raise TypeError("LoopEngine needs backend, state and budget (or deps=TickDeps(...))")
            deps = TickDeps(backend=backend, state=state, budget=budget, **kwargs)
        self.plan = plan
        self.deps = deps

    async def tick(self, *, level: str | None = None) -> TickResult:
        result: TickResult = await drive(Tick(self.plan, self.deps, level or self.plan.level).run(),
                                         DirectExecutor(self.deps))
        return result
