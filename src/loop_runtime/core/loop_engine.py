"""``LoopEngine``: runs ticks of one planned loop (the library's entry point; see ``core/engine.py``).

Apart from ``engine.py`` so that no import circle runs through the tick: ``Tick``
(``tick.py``) extends ``TickBase`` (``engine.py``), and this facade needs ``Tick`` —
so it sits above both, and ``engine.py`` imports neither (import-linter checks it).
"""

from __future__ import annotations

from typing import Any

from ..ports import AgentBackend, BudgetLedger, StateWriter
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
        return await Tick(self.plan, self.deps, level or self.plan.level).run()
