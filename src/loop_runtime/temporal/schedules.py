"""``loop-runtime schedule sync``: one Temporal Schedule per enabled loop, kept in step with the project.

Idempotent: a schedule whose spec, action and pause state already match is left alone
(a fingerprint in the action's memo says so), a changed one is updated in place, the
schedule of a loop that is no longer enabled (or whose registry entry was removed) is
deleted, and while a kill switch is engaged (the file or a flag line; all loops or one)
the schedules it covers are paused with a note naming it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from ..errors import LoopError
from .connect import TemporalSettings
from .types import TICK_WORKFLOW, TickInput, schedule_id, schedule_prefix, tick_workflow_prefix

MEMO_KEY = "loop-runtime"
MAX_JITTER_S = 900


@dataclass(frozen=True)
class Repo:
    """The repository the workers clone: its remote URL and base branch, and its stable key."""

    url: str
    branch: str
    key: str


@dataclass(frozen=True)
class Wanted:
    pattern: str
    interval_s: int
    paused: bool
    note: str
    tick: TickInput

    @property
    def fingerprint(self) -> str:
        doc = {"interval": self.interval_s, "paused": self.paused, "tick": asdict(self.tick)}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class SyncReport:
    repo: Repo
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"repo": self.repo.url, "branch": self.repo.branch, "projectKey": self.repo.key,
                "created": self.created, "updated": self.updated, "unchanged": self.unchanged,
                "deleted": self.deleted, "paused": self.paused}

    def text(self) -> str:
        parts = [f"{name} {', '.join(ids)}" for name, ids in (
            ("created", self.created), ("updated", self.updated), ("unchanged", self.unchanged),
            ("deleted", self.deleted), ("paused (kill switch)", self.paused)) if ids]
        return f"schedules of {self.repo.url} ({self.repo.branch}): " + ("; ".join(parts) or "none")


def repo_of(project: Any) -> Repo:
    """The project's ``origin`` remote (what workers clone and push to) and its current branch."""
    from . import clones

    root = project.root
    raw = dict(getattr(project.config, "temporal", None) or {})
    url = raw.get("repo")
    if not url:
        out = clones.git(root, "remote", "get-url", "origin", check=False)
        code, _, text = out.partition("\n")
        if code != "0" or not text.strip():
            raise LoopError(f"{root}: no git remote 'origin' — workers clone the repository and push the state "
                            "files back, so it needs a remote they can reach (or `repo` in [temporal])")
        url = text.strip().splitlines()[0]
    branch = raw.get("branch") or clones.git(root, "rev-parse", "--abbrev-ref", "HEAD")
    if branch == "HEAD":
        raise LoopError(f"{root}: detached HEAD — check out the base branch (or set `branch` in [temporal])")
    return Repo(url=url, branch=branch, key=clones.project_key(url))


PER_PORT_ENV = "LOOP_RUNTIME_TEMPORAL_PER_PORT"


def per_port_default() -> bool:
    """Whether scheduled ticks run on the per-port path (``port_workflow``: the tick's effects as activities,
    heavy ones alone, cheap ones batched).

    On when payloads are encrypted (``encryption``: ``LOOP_RUNTIME_TEMPORAL_KEY``), because that path puts
    what the tick reads and writes — prompts, diffs, the project's secret values — into Temporal's history;
    without a key each tick is one ``run_tick`` activity, whose history holds only results. The operator's
    ``LOOP_RUNTIME_TEMPORAL_PER_PORT`` (``1``/``0``) at ``schedule sync`` overrides either way."""
    import os

    from .encryption import payload_key

    chosen = os.environ.get(PER_PORT_ENV, "").strip().lower()
    if chosen in ("0", "false", "no", "off"):
        return False
    if chosen in ("1", "true", "yes", "on"):
        return True
    return payload_key() is not None


def wanted(project: Any, repo: Repo, s: TemporalSettings, links: Any = None) -> list[Wanted]:
    """One schedule per enabled loop; ``links(pattern)`` is the loop's ``FleetLink`` (``sync --fleet``)."""
    from ..app.runner import kill_stop

    out = []
    for pid in project.enabled_patterns():
        plan = project.plan(pid)
        killed = kill_stop(project, plan)() is not None
        # the level a fleet file (or loop-runtime.toml) sets travels with the schedule: a worker reads only
        # the repository's own files
        tick = TickInput(repo_url=repo.url, project_key=repo.key, pattern=pid, branch=repo.branch,
                         level=project.config.for_pattern(pid).level,
                         escalation_expiry_s=s.escalation_expiry_s,
                         agent_timeout_s=float(project.config.agent_timeout_s),
                         fleet=links(pid) if links is not None else None, per_port=per_port_default())
        out.append(Wanted(pattern=pid, interval_s=int(plan.interval_s), paused=killed,
                          note="kill switch engaged" if killed else "", tick=tick))
    return out


def _schedule(w: Wanted, s: TemporalSettings, repo: Repo) -> Any:
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleIntervalSpec,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
        ScheduleState,
    )

    every = timedelta(seconds=w.interval_s)
    return Schedule(
        action=ScheduleActionStartWorkflow(TICK_WORKFLOW, w.tick, id=tick_workflow_prefix(repo.key, w.pattern),
                                           task_queue=s.task_queue, memo={MEMO_KEY: w.fingerprint}),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)],
                          jitter=timedelta(seconds=min(MAX_JITTER_S, w.interval_s // 10))),
        # a tick still running (or a worker backlog) skips the next start; after an outage, one
        # catch-up run — never a burst of every missed tick
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=max(every, timedelta(seconds=60))),
        state=ScheduleState(paused=w.paused, note=w.note or "loop-runtime schedule sync"),
    )


async def _fingerprint_of(desc: Any) -> str | None:
    """The fingerprint sync left in the schedule's action memo (None: not ours, or older)."""
    action = desc.schedule.action
    memo = getattr(action, "memo", None) or {}
    raw = memo.get(MEMO_KEY)
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    try:  # a raw payload
        from temporalio.converter import DataConverter

        return DataConverter.default.payload_converter.from_payload(raw, str)
    except Exception:
        return None


async def sync(client: Any, project: Any, s: TemporalSettings, repo: Repo | None = None,
               links: Any = None) -> SyncReport:
    from temporalio.client import ScheduleAlreadyRunningError, ScheduleUpdate

    repo = repo or repo_of(project)
    report = SyncReport(repo)
    prefix = schedule_prefix(repo.key)
    existing: set[str] = set()
    async for entry in await client.list_schedules():
        if entry.id.startswith(prefix):
            existing.add(entry.id)
    if links is None:
        managed = await fleet_managed(client, sorted(existing))
        if managed:  # `kill`/`resume` in one repository of a fleet: only the pause state follows the switch
            return await follow_kill_switch(client, project, s, repo, managed, report)
    want = {w.pattern: w for w in wanted(project, repo, s, links)}
    for pid, w in sorted(want.items()):
        sid = schedule_id(repo.key, pid)
        sched = _schedule(w, s, repo)
        if w.paused:
            report.paused.append(pid)
        if sid not in existing:
            try:
                await client.create_schedule(sid, sched)
                report.created.append(pid)
                continue
            except ScheduleAlreadyRunningError:
                pass  # created meanwhile by another sync (or not yet listed): compare and update below
        handle = client.get_schedule_handle(sid)
        desc = await handle.describe()
        if await _fingerprint_of(desc) == w.fingerprint and bool(desc.schedule.state.paused) == w.paused:
            report.unchanged.append(pid)
            continue
        await handle.update(lambda _inp, sched=sched: ScheduleUpdate(schedule=sched))
        report.updated.append(pid)
    for sid in sorted(existing):
        pid = sid[len(prefix):]
        if pid not in want:
            await client.get_schedule_handle(sid).delete()
            report.deleted.append(pid)
    return report


async def fleet_managed(client: Any, ids: list[str]) -> dict[str, Any]:
    """The schedules ``schedule sync --fleet`` made (their input carries a ``FleetLink``), by id, with that
    input and interval. A sync without the fleet file must not rebuild them from the repository alone:
    it would drop the fleet's overrides and the portfolio."""
    from temporalio.converter import DataConverter

    out: dict[str, Any] = {}
    for sid in ids:
        desc = await client.get_schedule_handle(sid).describe()
        args = getattr(desc.schedule.action, "args", None) or []
        if not args:
            continue
        raw = args[0]
        tick = raw if isinstance(raw, TickInput) else DataConverter.default.payload_converter.from_payloads(
            [raw], [TickInput])[0]
        if tick.fleet is not None:
            every = desc.schedule.spec.intervals[0].every.total_seconds() if desc.schedule.spec.intervals else 0
            out[sid] = (tick, int(every), bool(desc.schedule.state.paused))
    return out


async def follow_kill_switch(client: Any, project: Any, s: TemporalSettings, repo: Repo, managed: dict[str, Any],
                             report: SyncReport) -> SyncReport:
    """Pause or unpause each fleet-made schedule as the repository's kill switch says; nothing else changes
    (the fingerprint stays what ``schedule sync --fleet`` computes for the same state)."""
    from temporalio.client import ScheduleUpdate

    from ..app.runner import kill_stop

    for sid, (tick, every, paused_now) in sorted(managed.items()):
        pid = tick.pattern
        try:
            killed = kill_stop(project, project.plan(pid))() is not None
        except LoopError:
            killed = paused_now  # no longer in this checkout's registry: `schedule sync --fleet` decides
        if killed:
            report.paused.append(pid)
        w = Wanted(pattern=pid, interval_s=every, paused=killed, note="kill switch engaged" if killed else "",
                   tick=tick)
        if killed == paused_now:
            report.unchanged.append(pid)
            continue
        sched = _schedule(w, s, repo)
        await client.get_schedule_handle(sid).update(lambda _inp, sched=sched: ScheduleUpdate(schedule=sched))
        report.updated.append(pid)
    return report
