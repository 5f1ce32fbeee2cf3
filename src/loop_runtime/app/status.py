"""``status``: every loop's level, cadence, next run, last outcome, spend, runs and escalations.

One function builds the document that ``loop-runtime status --json`` prints and the
dashboard renders, so both always agree. The JSON shape is stable (documented in the
README): a top-level object with ``root``, ``registry``, ``killSwitch`` and ``loops``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..core import killswitch
from ..core.budget import assess, tightest, todays_cap, utc_day
from ..core.levels import lowest
from ..ports import BudgetStatus
from .runtime import Project

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..ports.store import Store


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
    if now is None:
        return True
    from .runner import _dead_local_owner

    holder = store.lease_holder(pattern_id, now)
    return holder is not None and not _dead_local_owner(holder)


def _store_facts(store: Store | None, pattern_id: str, day: Any, log: Any, open_escalations: Any = None,
                 now: datetime | None = None) -> dict[str, Any]:
    """Spend, schedule, last tick and escalations as the run store knows them."""
    from ..formats.runlog import tokens_on_day

    if open_escalations is None:
        open_escalations = store.list_escalations("open")

    external = tokens_on_day(log, pattern_id, day, exclude_run_ids=store.tick_run_ids(pattern_id, day))
    facts: dict[str, Any] = {
        "spent": store.spent(pattern_id, day) + external,
        "reserved": store.reserved(pattern_id, day),
        "topups": store.topups(pattern_id, day),
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


def _log_facts(log: Any, pattern_id: str, day: Any) -> dict[str, Any]:
    """The same facts from the run log alone (no store yet: only other tools have run the loop)."""
    from ..formats.runlog import tokens_on_day

    mine = [e for e in log.entries if e.pattern == pattern_id]
    last = None
    if mine:
        e = mine[-1]
        last = {"outcome": e.outcome, "status": "logged", "tokens": e.tokens_estimate, "runId": e.run_id,
                "at": e.run_id}
    return {"spent": tokens_on_day(log, pattern_id, day), "reserved": 0, "topups": 0, "next_due": None,
            "last": last, "running": None, "escalations": 0}


def loop_status(project: Project, pattern_id: str, now: datetime, store: Store | None, *, log: Any = None,
                open_escalations: Any = None, shared: Sequence[tuple[str, BudgetStatus]] = ()) -> dict[str, Any]:
    """One loop's entry of the status document.

    ``log`` (the parsed run log) and ``open_escalations`` (the store's open ones) may be
    handed in by ``project_status``, which reads each once for every loop. ``shared``:
    the other budget scopes over this loop — ``("repository", …)``, ``("portfolio", …)`` —
    judged with the loop's own by ``core.budget.tightest`` exactly as the engine does.
    """
    from ..formats.runlog import parse_run_log, runs_on_day

    plan = project.plan(pattern_id)
    day = utc_day(now)
    if log is None:
        log = parse_run_log(project.read("loop-run-log.md") or "")
    texts = {n: project.read(n) for n in {plan.state_file, "STATE.md", "LOOP.md"}}
    files = {f for f in (killswitch.ALL, killswitch.pattern_switch(pattern_id)) if (project.root / f).exists()}
    ks = killswitch.evaluate(pattern_id, state_file=plan.state_file, texts=texts, root_files=files)
    facts = (_store_facts(store, pattern_id, day, log, open_escalations=open_escalations, now=now) if store is not None
             else _log_facts(log, pattern_id, day))
    if facts["last"] is None:
        facts["last"] = _log_facts(log, pattern_id, day)["last"]
    spent, reserved, topups = facts["spent"], facts["reserved"], facts["topups"]
    next_due, last, running, escalations = facts["next_due"], facts["last"], facts["running"], facts["escalations"]
    cap = todays_cap(plan.daily_token_cap, topups)
    # the level a loop would get is decided on settled spend: a running call's reservation is
    # not spent yet, and counting it would show every busy loop as halted
    own = BudgetStatus(str(day), cap, spent, 0)
    scopes = [own, *(BudgetStatus(st.day, st.cap, st.spent, 0) for _, st in shared)]
    chosen = tightest(scopes)
    verdict = assess(chosen)
    if chosen is not own and chosen.cap:
        label = shared[scopes.index(chosen) - 1][0]
        verdict = type(verdict)(verdict.halt, verdict.level_cap, f"{label} {verdict.reason}")
    caps: list[tuple[str, str]] = []
    if verdict.level_cap:
        caps.append((verdict.level_cap, verdict.reason))
    if plan.level in ("L2", "L3") and not project.is_git:
        caps.append(("L1", "not a git repository"))
    eff = lowest(plan.level, caps)
    effective, reason = eff.effective, eff.reason if eff.reason != "configured" else plan.level_source
    if ks.engaged:
        effective, reason = "paused", f"kill switch ({ks.source})"
    elif verdict.halt:
        effective, reason = "halted", verdict.reason
    runs = runs_on_day(log, pattern_id, day)
    return {
        "pattern": pattern_id,
        "name": plan.pattern.name,
        "level": {"configured": plan.level, "source": plan.level_source, "effective": effective, "reason": reason},
        "cadence": plan.cadence.text,
        "intervalSeconds": plan.interval_s,
        "nextRun": next_due,
        "lastRun": last,
        "running": running,
        "budget": {"day": str(day), "spent": spent, "reserved": reserved, "cap": cap, "topups": topups,
                   "percent": None if not cap else round(100 * (spent + reserved) / cap, 1)},
        "runs": {"today": runs, "max": plan.max_runs_per_day},
        "openEscalations": escalations,
        "killSwitch": {"engaged": ks.engaged, "scope": ks.scope, "source": ks.source},
        "stateFile": plan.state_file,
    }


def shared_scopes(project: Project, store: Store | None, now: datetime,
                  portfolio: Any = None) -> list[tuple[str, BudgetStatus]]:
    """The budget scopes above each loop: the repository's ``global_daily_cap`` and the fleet's portfolio."""
    out: list[tuple[str, BudgetStatus]] = []
    if store is not None and project.config.global_daily_cap is not None:
        from ..adapters.store.budget import GLOBAL, scope_status

        out.append(("repository", scope_status(store, GLOBAL, project.config.global_daily_cap, now)))
    if portfolio is not None:
        labelled = getattr(portfolio, "labelled", None)
        out.extend(labelled(now) if labelled is not None else [("portfolio", portfolio.status(now))])
    return out


def project_status(project: Project, now: datetime, store: Store | None = None, *, portfolio: Any = None) -> dict[str, Any]:
    from ..formats.runlog import parse_run_log
    from .loops import project_loops

    shared = shared_scopes(project, store, now, portfolio)
    log = parse_run_log(project.read("loop-run-log.md") or "")  # once, not once per loop
    loops = project_loops(project, store, log=log)
    open_escalations = store.list_escalations("open") if store is not None else None
    all_on = (project.root / killswitch.ALL).exists()
    for name in ("STATE.md", "LOOP.md"):
        text = project.read(name)
        if text and killswitch.evaluate("*", state_file=name, texts={name: text}, root_files=set()).scope == "all":
            all_on = True
    return {
        "root": str(project.root),
        "registry": {"source": project.registry.source, "path": project.registry.path},
        "killSwitch": {"all": all_on},
        "generatedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "loops": [{**loop_status(project, pid, now, store, log=log, open_escalations=open_escalations, shared=shared),
                   "enabled": pid in loops.enabled,
                   "enabledBy": loops.reasons.get(pid)} for pid in loops.shown],
        "otherPatterns": loops.others,
        "workflowLoops": [{"pattern": pid, "workflow": path} for pid, path in loops.workflows.items()],
    }
