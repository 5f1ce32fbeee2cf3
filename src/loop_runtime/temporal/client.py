"""What the CLI asks of Temporal: status, a human's decision, the kill switch, schedule sync.

Each function is synchronous for the CLI (``asyncio.run`` inside) and raises ``LoopError``
with one line for every way it can go wrong (server down, unknown id, decided already).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import LoopError
from .connect import TemporalSettings, connect
from .types import (
    ESCALATION_WORKFLOW,
    TICK_WORKFLOW,
    Decision,
    EscalationOutcome,
    escalation_workflow_id,
    schedule_prefix,
    tick_workflow_prefix,
)


class EscalationNotOnTemporal(LoopError):
    """No escalation workflow has this id (the caller may try the local store)."""


#: queries and updates are answered by a worker: without one they would wait forever
WORKER_ANSWER_S = 30.0


async def answered(coro: Any, what: str, s: TemporalSettings | None = None) -> Any:
    """``coro`` (a query or an update), or one line saying no worker answered in time."""
    try:
        return await asyncio.wait_for(coro, WORKER_ANSWER_S)
    except TimeoutError:
        queue = f" on task queue {s.task_queue!r}" if s is not None else ""
        raise LoopError(f"no worker answered {what} within {WORKER_ANSWER_S:g} s: is `loop-runtime worker` "
                        f"running{queue}?") from None


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------------------- schedule sync


def sync_schedules(project: Any, s: TemporalSettings, links: Any = None) -> dict[str, Any]:
    from .schedules import sync

    async def go() -> dict[str, Any]:
        client = await connect(s)
        report = await sync(client, project, s, links=links)
        return {**report.as_json(), "text": report.text()}

    return run(go())


# ---------------------------------------------------------------------------- status --temporal


async def _running(client: Any, workflow_type: str) -> list[Any]:
    out = []
    query = f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Running'"
    async for wf in client.list_workflows(query):
        out.append(wf)
    return out


async def status_doc_async(client: Any, project_key: str | None) -> dict[str, Any]:
    from temporalio.service import RPCError

    schedules = []
    prefix = schedule_prefix(project_key) if project_key else "loop-"
    async for entry in await client.list_schedules():
        if not entry.id.startswith(prefix):
            continue
        desc = await client.get_schedule_handle(entry.id).describe()
        spec = desc.schedule.spec
        every = spec.intervals[0].every.total_seconds() if spec.intervals else None
        paused = bool(desc.schedule.state.paused)
        nxt = desc.info.next_action_times[0].isoformat() if desc.info.next_action_times and not paused else None
        recent = desc.info.recent_actions[-1].started_at.isoformat() if desc.info.recent_actions else None
        args = getattr(desc.schedule.action, "args", None) or []
        pattern = None
        if args:
            first = args[0]
            pattern = first.get("pattern") if isinstance(first, dict) else getattr(first, "pattern", None)
        schedules.append({"id": entry.id, "pattern": pattern or entry.id[len(prefix):],
                          "paused": paused, "note": desc.schedule.state.note,
                          "intervalSeconds": every, "nextRun": nxt, "lastRun": recent,
                          "running": len(desc.info.running_actions)})
    ticks = []
    for wf in await _running(client, TICK_WORKFLOW):
        if project_key and not wf.id.startswith(f"loop-tick-{project_key}-"):
            continue
        doc: dict[str, Any] = {"workflowId": wf.id, "startedAt": wf.start_time.isoformat() if wf.start_time else None}
        try:
            doc.update(await asyncio.wait_for(client.get_workflow_handle(wf.id, run_id=wf.run_id).query(
                "progress", result_type=dict), 10))
        except (RPCError, TimeoutError):
            pass
        ticks.append(doc)
    escalations = []
    for wf in await _running(client, ESCALATION_WORKFLOW):
        try:
            p = await asyncio.wait_for(client.get_workflow_handle(wf.id, run_id=wf.run_id).query(
                "pending", result_type=dict), 10)
        except (RPCError, TimeoutError):
            continue
        if project_key and p.get("projectKey") != project_key:
            continue
        escalations.append({**p, "workflowId": wf.id})
    return {"schedules": schedules, "runningTicks": ticks, "waitingEscalations": escalations}


def status_doc(project: Any, s: TemporalSettings) -> dict[str, Any]:
    from .schedules import repo_of

    key = None
    try:
        key = repo_of(project).key
    except LoopError:
        pass  # no remote: show every loop-runtime schedule of the namespace

    async def go() -> dict[str, Any]:
        client = await connect(s)
        doc = await status_doc_async(client, key)
        return {"address": s.address, "namespace": s.namespace, "taskQueue": s.task_queue, "projectKey": key,
                **doc}

    return run(go())


def status_text(doc: dict[str, Any]) -> str:
    from ..render import table

    lines = [f"Temporal {doc['address']} namespace {doc['namespace']} task queue {doc['taskQueue']}"]
    sch = doc["schedules"]
    lines.append(f"\nSchedules ({len(sch)}):")
    if sch:
        lines.append(table([[d["pattern"], "paused" if d["paused"] else "active", _every(d["intervalSeconds"]),
                             d["nextRun"] or "—", d["lastRun"] or "—"] for d in sch],
                           ["LOOP", "STATE", "EVERY", "NEXT RUN", "LAST RUN"]))
    ticks = doc["runningTicks"]
    lines.append(f"\nRunning ticks ({len(ticks)}):")
    if ticks:
        lines.append(table([[t.get("pattern", "?"), t.get("tickId", "?"), t.get("phase", "?"),
                             t.get("startedAt") or "—"] for t in ticks], ["LOOP", "TICK", "PHASE", "STARTED"]))
    esc = doc["waitingEscalations"]
    lines.append(f"\nWaiting escalations ({len(esc)}):")
    if esc:
        lines.append(table([[e.get("escalationId", "?"), e.get("pattern", "?"), e.get("item", ""),
                             e.get("reason", ""), e.get("expiresAt", "")] for e in esc],
                           ["ID", "LOOP", "ITEM", "REASON", "EXPIRES"]))
    return "\n".join(lines)


def _every(seconds: float | None) -> str:
    if not seconds:
        return "—"
    s = int(seconds)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % n == 0:
            return f"{s // n}{unit}"
    return f"{s}s"


# ---------------------------------------------------------------------------- approve / reject


async def decide_async(client: Any, esc_id: str, decision: str, answer: Decision) -> dict[str, Any]:
    """Signal ``approve``/``reject`` to the escalation's workflow, after checking it can still take it."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

    handle = client.get_workflow_handle(escalation_workflow_id(esc_id), result_type=EscalationOutcome)
    try:
        desc = await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise EscalationNotOnTemporal(f"no escalation {esc_id!r} on Temporal") from None
        raise LoopError(f"escalation {esc_id}: {e.message}") from None
    if desc.status != WorkflowExecutionStatus.RUNNING:
        try:
            out = await handle.result()
            raise LoopError(f"escalation {esc_id} is already {out.decision} (by {out.by}); nothing to do")
        except LoopError:
            raise
        except Exception:
            raise LoopError(f"escalation {esc_id} is closed ({desc.status.name.lower()}); nothing to do") from None
    pending = await answered(handle.query("pending", result_type=dict), f"escalation {esc_id}")
    if pending.get("decision"):
        raise LoopError(f"escalation {esc_id} is already {pending['decision']} (by {pending.get('by')}); "
                        "it is being applied")
    await handle.signal("approve" if decision == "approved" else "reject", answer)
    return {"id": esc_id, "decision": decision, "by": answer.by, "reason": answer.reason, "merge": answer.merge,
            "pattern": pending.get("pattern"), "item": pending.get("item"), "via": "temporal"}


def decide(s: TemporalSettings, esc_id: str, decision: str, answer: Decision, *, wait: bool = True,
           timeout_s: float = 120.0) -> dict[str, Any]:
    """Send the decision; with ``wait``, also wait for the worker holding the change to apply it."""

    async def go() -> dict[str, Any]:
        client = await connect(s)
        doc = await decide_async(client, esc_id, decision, answer)
        if wait:
            handle = client.get_workflow_handle(escalation_workflow_id(esc_id), result_type=EscalationOutcome)
            try:
                out = await asyncio.wait_for(handle.result(), timeout_s)
                doc["applied"] = out.error is None
                doc["result"] = out.result
                if out.error:
                    doc["error"] = out.error
            except TimeoutError:
                doc["applied"] = False
                doc["pending"] = "sent; the worker holding the change has not applied it yet"
        return doc

    return run(go())


# ---------------------------------------------------------------------------- topup


def topup(project: Any, s: TemporalSettings, pattern: str, tokens: int, reason: str) -> dict[str, Any]:
    """Raise today's cap of one loop in its budget workflow (the one every worker reserves from)."""
    from .schedules import repo_of

    plan = project.plan(pattern)
    r = topup_budget(s, f"{repo_of(project).key}/{pattern}", plan.daily_token_cap, tokens)
    return {"pattern": pattern, "tokens": tokens, "reason": reason, **r}


def topup_budget(s: TemporalSettings, scope: str, cap: int | None, tokens: int) -> dict[str, Any]:
    """Raise today's cap of one budget scope — a loop, a repository (``<key>/*``), a fleet's portfolio
    (``fleet:<name>``) — in the (scope, UTC day) workflow every worker reserves from."""
    import uuid
    from datetime import UTC, datetime

    from temporalio.common import WorkflowIDConflictPolicy

    from .types import BUDGET_WORKFLOW, BudgetState, TopUp, budget_workflow_id

    async def go() -> dict[str, Any]:
        client = await connect(s)
        day = str(datetime.now(UTC).date())
        wid = budget_workflow_id(scope, day)
        await client.start_workflow(BUDGET_WORKFLOW, BudgetState(scope=scope, day=day, cap=cap),
                                    id=wid, task_queue=s.task_queue,
                                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        new_cap = await answered(client.get_workflow_handle(wid).execute_update(
            "topup", TopUp(id=f"topup-{uuid.uuid4().hex}", tokens=tokens), result_type=int), "the top-up", s)
        return {"scope": scope, "day": day, "cap": new_cap or None}

    return run(go())


# ---------------------------------------------------------------------------- kill switch


async def stop_running_async(client: Any, project_key: str | None, pattern: str | None, reason: str) -> list[str]:
    stopped = []
    for wf in await _running(client, TICK_WORKFLOW):
        if project_key is not None:
            exact = tick_workflow_prefix(project_key, pattern) if pattern else None
            if exact is not None and wf.id != exact and not wf.id.startswith(f"{exact}-"):
                continue
            if not wf.id.startswith(f"loop-tick-{project_key}-"):
                continue
        await client.get_workflow_handle(wf.id, run_id=wf.run_id).signal("stop", reason or "kill")
        stopped.append(wf.id)
    return stopped


def kill_switch_changed(project: Any, s: TemporalSettings, pattern: str | None, reason: str,
                        engaged: bool) -> dict[str, Any]:
    """After ``kill``/``resume``: schedules follow the switch, and ``kill`` stops the running ticks."""
    from .schedules import repo_of, sync

    async def go() -> dict[str, Any]:
        client = await connect(s)
        repo = repo_of(project)
        report = await sync(client, project, s, repo)
        stopped = await stop_running_async(client, repo.key, pattern, reason) if engaged else []
        return {**report.as_json(), "stopped": stopped}

    return run(go())
