"""What the read and run commands compute, as JSON documents, for every driver.

The CLI's ``--json`` output and the MCP server's tool results are the same documents
because both call these functions: a rule (levels, budget, kill switch, leases) lives in
``runner``/``actions``/``status`` once, and a driver only parses its own input and
prints. Moved here from ``cli`` unchanged in behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runtime import Project
from .services import Services, using


def list_doc(root: Path) -> dict[str, Any]:
    """``list --json``: the registry's patterns (the project's registry, else the bundled one)."""
    from ..adapters.project_files import load_registry

    reg = load_registry(root)
    rows = [
        {"id": p.id, "name": p.name, "cadence": p.cadence, "risk": p.risk, "weekOneMode": p.week_one_mode,
         "tokenCost": p.token_cost, "state": p.state,
         "dailyCap": p.cost.suggested_daily_cap if p.cost else None}
        for p in reg.patterns
    ]
    return {"registry": {"source": reg.source, "path": reg.path}, "patterns": rows, "warnings": list(reg.warnings)}


def plan_doc(project: Project, pattern: str, level: str | None, cadence: str | None) -> dict[str, Any]:
    """``plan --json``: how a loop would run and where each setting came from."""
    doc = project.plan(pattern, level, cadence).as_json()
    doc["registry"] = {"source": project.registry.source, "path": project.registry.path}
    return doc


def cost_doc(root: Path, pattern: str, level: str, cadence: str | None, orchestration: str = "single",
             conservative: bool = False, with_caching: bool = False) -> dict[str, Any]:
    """``cost --json``: loop-cost's estimate."""
    from ..core.cost import estimate
    from ..adapters.project_files import load_registry
    from ..formats.registry import find_pattern

    registry = load_registry(root)
    return estimate(find_pattern(registry, pattern), level, cadence, conservative,
                    with_caching=with_caching, orchestration=orchestration)


def store_if_exists(project: Project) -> Any:
    """The run store when the project has one (read commands never create it); the caller closes it."""
    from .services import Services

    return Services.open(project).existing_store()


def status_doc(project: Project | Services) -> dict[str, Any]:
    """``status --json``: every loop's level, cadence, next run, last outcome, spend, escalations."""
    from .runtime import now_utc
    from .status import project_status

    with using(project) as services:
        return project_status(services.project, now_utc(), services.existing_store())


def esc_doc(e: Any) -> dict[str, Any]:
    """One escalation as ``escalations --json`` shows it."""
    created = e.created_at.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(e.created_at, "strftime") else str(e.created_at)
    return {"id": e.id, "status": e.status, "pattern": e.pattern, "item": e.item_id, "title": e.title,
            "reason": e.context.get("reason"), "createdAt": created, "runId": e.run_id,
            "branch": e.context.get("branch"), "attempts": e.context.get("attempts"),
            "lastError": e.context.get("lastError"), "diffLines": len(e.diff.splitlines())}


def escalations_doc(project: Project | Services, show_all: bool = False) -> dict[str, Any]:
    """``escalations --json``: held changes waiting for a human (``show_all``: decided ones too)."""
    with using(project) as services:
        store = services.existing_store()
        items = [] if store is None else store.list_escalations(None if show_all else "open")
    return {"escalations": [esc_doc(e) for e in items]}


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
