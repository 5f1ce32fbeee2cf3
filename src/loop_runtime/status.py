"""``status``: every loop's level, cadence, next run, last outcome, spend, runs and escalations.

One function builds the document that ``loop-runtime status --json`` prints and the
dashboard renders, so both always agree. The JSON shape is stable (documented in the
README): a top-level object with ``root``, ``registry``, ``killSwitch`` and ``loops``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .core import killswitch
from .core.budget import assess, utc_day
from .core.levels import lowest
from .ports import BudgetStatus
from .runtime import Project


def loops_to_show(project: Project, store: Any) -> list[str]:
    """The project's loops (``loops.project_loops``): enabled ones, then ones that ran but are not enabled."""
    from .loops import project_loops

    return project_loops(project, store).shown


def _iso(dt: Any) -> str | None:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(dt, "strftime") else (None if dt is None else str(dt))


def _store_facts(store: Any, pattern_id: str, day: Any, log: Any) -> dict[str, Any]:
    """Spend, schedule, last tick and escalations as the run store knows them."""
    from .formats.runlog import tokens_on_day

    external = tokens_on_day(log, pattern_id, day, exclude_run_ids=store.tick_run_ids(pattern_id, day))
    facts: dict[str, Any] = {
        "spent": store.spent(pattern_id, day) + external,
        "reserved": store.reserved(pattern_id, day),
        "topups": store.topups(pattern_id, day),
        "next_due": _iso(store.get_next_due(pattern_id)),
        "last": None,
        "running": None,
        "escalations": len([e for e in store.list_escalations("open") if e.pattern == pattern_id]),
    }
    lt = store.last_tick(pattern_id)
    if lt is not None:
        facts["last"] = {"outcome": lt.outcome, "status": lt.status, "tokens": lt.tokens, "runId": lt.run_id,
                         "at": _iso(lt.finished_at or lt.started_at)}
        if lt.status == "running":
            phases = store.phases(lt.tick_id)
            facts["running"] = {"tick": lt.tick_id, "phase": phases[-1].phase if phases else "starting"}
    return facts


def _log_facts(log: Any, pattern_id: str, day: Any) -> dict[str, Any]:
    """The same facts from the run log alone (no store yet: only other tools have run the loop)."""
    from .formats.runlog import tokens_on_day

    mine = [e for e in log.entries if e.pattern == pattern_id]
    last = None
    if mine:
        e = mine[-1]
        last = {"outcome": e.outcome, "status": "logged", "tokens": e.tokens_estimate, "runId": e.run_id,
                "at": e.run_id}
    return {"spent": tokens_on_day(log, pattern_id, day), "reserved": 0, "topups": 0, "next_due": None,
            "last": last, "running": None, "escalations": 0}


def loop_status(project: Project, pattern_id: str, now: datetime, store: Any) -> dict[str, Any]:
    from .formats.runlog import parse_run_log, runs_on_day

    plan = project.plan(pattern_id)
    day = utc_day(now)
    log = parse_run_log(project.read("loop-run-log.md") or "")
    texts = {n: project.read(n) for n in {plan.state_file, "STATE.md", "LOOP.md"}}
    files = {f for f in (killswitch.ALL, killswitch.pattern_switch(pattern_id)) if (project.root / f).exists()}
    ks = killswitch.evaluate(pattern_id, state_file=plan.state_file, texts=texts, root_files=files)
    facts = _store_facts(store, pattern_id, day, log) if store is not None else _log_facts(log, pattern_id, day)
    if facts["last"] is None:
        facts["last"] = _log_facts(log, pattern_id, day)["last"]
    spent, reserved, topups = facts["spent"], facts["reserved"], facts["topups"]
    next_due, last, running, escalations = facts["next_due"], facts["last"], facts["running"], facts["escalations"]
    cap = None if plan.daily_token_cap is None else plan.daily_token_cap + topups
    # the level a loop would get is decided on settled spend: a running call's reservation is
    # not spent yet, and counting it would show every busy loop as halted
    verdict = assess(BudgetStatus(str(day), cap, spent, 0))
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


def project_status(project: Project, now: datetime, store: Any = None) -> dict[str, Any]:
    from .loops import project_loops

    loops = project_loops(project, store)
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
        "loops": [{**loop_status(project, pid, now, store), "enabled": pid in loops.enabled,
                   "enabledBy": loops.reasons.get(pid)} for pid in loops.shown],
        "otherPatterns": loops.others,
    }
