"""What the read commands compute, as JSON documents, for every driver (``run`` is in ``app.run``).

The CLI's ``--json`` output and the MCP server's tool results are the same documents
because both call these functions: a rule (levels, budget, kill switch, leases) lives in
``runner``/``actions``/``status`` once, and a driver only parses its own input and
prints. Moved here from ``cli`` unchanged in behaviour.
"""

from __future__ import annotations

from pathlib import Path

from .runtime import Project
from .services import Services, using

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any


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
