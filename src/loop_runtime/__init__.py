"""loop-runtime: an open execution engine for loop-engineering AI agent loops.

The library API mirrors the CLI::

    from loop_runtime import LoopEngine, build_plan, BudgetBreaker, MemoryStateWriter, MockBackend
    plan = build_plan(pattern, level="L2")
    engine = LoopEngine(plan, backend=MockBackend(), state=MemoryStateWriter(),
                        budget=BudgetBreaker(plan.daily_token_cap))
    result = await engine.tick()        # a structured, loggable TickResult
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "BudgetBreaker",
    "LoopEngine",
    "ManualClock",
    "MemoryStateWriter",
    "MemoryWorkspace",
    "MockBackend",
    "Plan",
    "TickDeps",
    "TickResult",
    "build_plan",
]

_LAZY = {
    "BudgetBreaker": "loop_runtime.core.budget",
    "LoopEngine": "loop_runtime.core.loop_engine",
    "TickDeps": "loop_runtime.core.engine",
    "ManualClock": "loop_runtime.adapters.clock",
    "MemoryStateWriter": "loop_runtime.adapters.mock",
    "MemoryWorkspace": "loop_runtime.adapters.mock",
    "MockBackend": "loop_runtime.adapters.mock",
    "Plan": "loop_runtime.core.plan",
    "TickResult": "loop_runtime.core.result",
    "build_plan": "loop_runtime.core.plan",
}


def __getattr__(name: str) -> Any:
    """Lazy exports keep `loop-runtime list` start-up free of the engine's imports."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loop_runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
