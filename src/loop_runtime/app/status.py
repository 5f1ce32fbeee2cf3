"""``status``: every loop's level, cadence, next run, last outcome, spend, runs and escalations.

One function builds the document that ``loop-runtime status --json`` prints and the
dashboard renders, so both always agree. The JSON shape is stable (documented in the
README): a top-level object with ``root``, ``registry``, ``killSwitch`` and ``loops``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..ports import BudgetStatus
from .runtime import Project

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
    from ..ports.store import Store
    from .services import Services


def loops_to_show(project: Project, store: Store | None) -> list[str]:
    """The project's loops (``loops.project_loops``): enabled ones, then ones that ran but are not enabled."""
    from .loops import project_loops

    return project_loops(project, store).shown


def _iso(dt: Any) -> str | None:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(dt, "strftime") else (None if dt is None else str(dt))


def _ticking(store: Store | None, pattern_id: str, now: datetime | None) -> bool:
    """Is a process still ticking ``pattern_id``? A tick row left ``running`` by a process that died or
    stopped on an error is not live: its lease was released (or its owner is gone), and the next run
    recovers it. Without ``now`` (old callers) the row is believed."""
    if now is None or store is None:
        return True
    from .leases import live_holder

    return live_holder(store, pattern_id, now) is not None


def _store_facts(store: Store, pattern_id: str, open_escalations: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """Schedule, last tick and escalations as the run store knows them (spend: ``rules.loop_rules``)."""
    if open_escalations is None:
        open_escalations = store.list_escalations("open")
    facts: dict[str, Any] = {
        "next_due": _iso(store.get_next_due(pattern_id)),
        "last": None,
        "running": None,
        "escalations": len([e for e in open_escalations if e.pattern == pattern_id]),
    }
    lt = store.last_tick(pattern_id)
    if lt is not None:
        facts["last"] = {"outcome": lt.outcome, "status": lt.status, "tokens": lt.tokens, "runId": lt.run_id,
                         "at": _iso(lt.finished_at or lt.started_at)}
        if lt.outcome == "halted" and (lt.summary or {}).get("haltReason") == "paused":
            facts["last"]["outcome"] = "paused"  # the kill switch: "paused" here as on stdout and in the run log
        if lt.status == "running" and not _ticking(store, pattern_id, now):
            facts["last"].update(outcome=lt.outcome or "interrupted", status="interrupted")
        elif lt.status == "running":
            phases = store.phases(lt.tick_id)
            facts["running"] = {"tick": lt.tick_id, "phase": phases[-1].phase if phases else "starting"}
    return facts


def _log_facts(log: Any, pattern_id: str) -> dict[str, Any]:
    """The same facts from the run log alone (no store yet: only other tools have run the loop)."""
    mine = [e for e in log.entries if e.pattern == pattern_id]
    last = None
    if mine:
        e = mine[-1]
        last = {"outcome": e.outcome, "status": "logged", "tokens": e.tokens_estimate, "runId": e.run_id,
                "at": e.run_id}
    return {"next_due": None, "last": last, "running": None, "escalations": 0}


def loop_status(project: Project, pattern_id: str, now: datetime, store: Store | None, *, log: Any = None,
                open_escalations: Any = None, shared: Sequence[tuple[str, BudgetStatus]] = ()) -> dict[str, Any]:
    """One loop's entry of the status document.

    ``log`` (the parsed run log) and ``open_escalations`` (the store's open ones) may be
    handed in by ``project_status``, which reads each once for every loop. ``shared``:
    the other budget scopes over this loop — ``("repository", …)``, ``("portfolio", …)`` —
    judged with the loop's own exactly as the engine does. Level, budget, kill switch and runs
    today are ``rules.loop_rules``: the core's rule functions, as for every other reader.
    """
    from .rules import loop_rules, read_log

    plan = project.plan(pattern_id)
    log = log if log is not None else read_log(project)
    rules = loop_rules(project, plan, store, now, log=log, shared=shared)
    facts = (_store_facts(store, pattern_id, open_escalations=open_escalations, now=now) if store is not None
             else _log_facts(log, pattern_id))
    if facts["last"] is None:
        facts["last"] = _log_facts(log, pattern_id)["last"]
    level, ks = rules.level, rules.kill
    return {
        "pattern": pattern_id,
        "name": plan.pattern.name,
        "level": {"configured": plan.level, "source": plan.level_source, "effective": level.effective,
                  "reason": level.reason},
        "cadence": plan.cadence.text,
        "intervalSeconds": plan.interval_s,
        "nextRun": facts["next_due"],
        "lastRun": facts["last"],
        "running": facts["running"],
        "budget": {"day": str(rules.day), "spent": rules.spent, "reserved": rules.reserved, "cap": rules.cap,
                   "topups": rules.topups, "percent": rules.percent},
        "runs": {"today": rules.runs, "max": plan.max_runs_per_day},
        "openEscalations": facts["escalations"],
        "killSwitch": {"engaged": ks.engaged, "scope": ks.scope, "source": ks.source},
        "stateFile": plan.state_file,
    }


def shared_scopes(project: Project, store: Store | None, now: datetime,
                  portfolio: Any = None) -> list[tuple[str, BudgetStatus]]:
    """The budget scopes above each loop (``rules.shared_scopes``)."""
    from .rules import shared_scopes as scopes

    return scopes(project, store, now, portfolio)


def project_status(project: Project | Services, now: datetime, store: Store | None = None, *,
                   portfolio: Any = None) -> dict[str, Any]:
    """The status document of every loop; given the project's ``Services``, their store (if it exists) is read."""
    from .services import Services

    if isinstance(project, Services):
        store = store if store is not None else project.existing_store()
        project = project.project
    from .loops import project_loops
    from .rules import all_paused, read_log, shared_scopes

    shared = shared_scopes(project, store, now, portfolio)
    log = read_log(project)  # once, not once per loop
    loops = project_loops(project, store, log=log)
    open_escalations = store.list_escalations("open") if store is not None else None
    return {
        "root": str(project.root),
        "registry": {"source": project.registry.source, "path": project.registry.path},
        "killSwitch": {"all": all_paused(project)},
        "generatedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "loops": [{**loop_status(project, pid, now, store, log=log, open_escalations=open_escalations, shared=shared),
                   "enabled": pid in loops.enabled,
                   "enabledBy": loops.reasons.get(pid)} for pid in loops.shown],
        "otherPatterns": loops.others,
        "workflowLoops": [{"pattern": pid, "workflow": path} for pid, path in loops.workflows.items()],
    }
