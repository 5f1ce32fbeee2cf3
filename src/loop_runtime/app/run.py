"""``run``: a loop's ticks on command, and what they did (``RunReport``).

Apart from ``commands`` so that the read commands (``status`` above all, typed all day) do not
build the run report's class or anything else only ``run`` needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .runtime import Project
from .services import Services, using


def notifier_for(project: Project, log: Callable[[str], None]) -> Any:
    """The project's notifier (apprise URLs in loop-runtime.toml), or None."""
    urls = tuple(project.config.notify)
    if not urls:
        return None
    from ..adapters.notify import AppriseNotifier

    return AppriseNotifier(urls, log=log)


@dataclass(frozen=True)
class RunReport:
    """What ``run`` did: the tick results, the backend, and today's spend/cap after them."""

    pattern: str
    backend: str
    dry_run: bool
    results: list[Any]
    spent: int
    cap: int | None
    plan: Any

    @property
    def exit_code(self) -> int:
        return max(r.exit_code for r in self.results)

    def as_json(self) -> dict[str, Any]:
        """``run --json``."""
        return {"pattern": self.pattern, "backend": self.backend, "dryRun": self.dry_run,
                "ticks": [r.as_json() for r in self.results]}


def run_ticks(project: Project, pattern: str, opts: Any, ticks: int = 1) -> RunReport:
    """``run``: ``ticks`` ticks of one loop, in memory (``opts.dry_run``) or for real under its lease.

    Every rule (levels, kill switch, budget, preflight, lease, escalations) is applied by
    ``runner``; this only sequences the ticks and reads today's spend afterwards.
    """
    import asyncio

    from ..adapters.store.budget import scope_status
    from ..core.budget import utc_day
    from .rules import external_spent, read_log
    from .runner import LoopRunner, backend_name, dry_run as do_dry_run
    from .runtime import now_utc

    plan_ = project.plan(pattern, opts.level)
    budget = getattr(opts, "budget", None)
    if budget is not None:  # `run --budget`: today's cap for this loop, never above the configured one
        from dataclasses import replace

        cap = plan_.daily_token_cap
        plan_ = replace(plan_, daily_token_cap=budget if cap is None else min(cap, budget))
    name = backend_name(project, plan_, opts)
    if opts.dry_run:
        results = asyncio.run(do_dry_run(project, plan_, opts, ticks))
        spent = sum(r.tokens for r in results) + external_spent(read_log(project), None, pattern, utc_day(now_utc()))
        return RunReport(pattern=pattern, backend=name, dry_run=True, results=results, spent=spent,
                         cap=cap_today(project, plan_), plan=plan_)
    runner = LoopRunner(project, plan_, opts)
    try:
        results = [asyncio.run(runner.tick()) for _ in range(ticks)]
        spent = scope_status(runner.store, pattern, plan_.daily_token_cap, now_utc()).spent
        cap = cap_today(runner.services, plan_)
    finally:
        runner.close()
    return RunReport(pattern=pattern, backend=name, dry_run=False, results=results, spent=spent, cap=cap,
                     plan=plan_)


def cap_today(project: Project | Services, plan_: Any) -> int | None:
    """Today's cap for the loop: ``rules.cap_on`` (the plan's daily cap plus today's top-ups)."""
    from ..core.budget import utc_day
    from .rules import cap_on
    from .runtime import now_utc

    with using(project) as services:
        return cap_on(plan_.daily_token_cap, services.existing_store(), plan_.pattern_id, utc_day(now_utc()))
