"""A tick's session on one worker: its clone, project, plan and adapters, kept between its port calls.

On the per-port path the tick's state machine runs in the workflow and each of its effects is one
activity. The adapters cannot travel (a git worktree, an open SQLite store, a running agent): they
live here, in the worker process that opened the tick, keyed by tick id, and every port call of the
tick is sent to that worker's own queue. The session holds the clone's lock from ``open`` to
``close`` (one checkout, one tick at a time); a session nobody closed (its workflow was terminated)
expires after ``IDLE_TTL_S`` without a call, so it cannot hold the clone for ever; and a workflow that
re-opens its tick elsewhere tells the old worker to drop it (``drop_tick``, best effort).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import LoopError
from . import clones

__all__ = ["SessionLost", "TickSession", "close", "count", "expire", "get", "open_session"]


class SessionLost(LoopError):
    """No session for this tick in this worker (it restarted, or the session expired): re-open the tick."""


@dataclass
class TickSession:
    tick_id: str
    generation: int
    root: Path
    project_key: str
    pattern: str
    plan: Any  # core.plan.Plan
    spine_names: list[str]
    base: dict[str, str | None]
    base_commit: str
    deps: Any  # core.engine.TickDeps: the adapters the port calls run on
    execute: Any  # core.effects.DirectExecutor over ``deps``
    runner: Any  # app.runner.LoopRunner: its services (store …) close with the session
    lock: threading.Lock  # the clone's lock, held for the session's life
    ttl_s: float
    stopped: threading.Event = field(default_factory=threading.Event)  # the kill switch (activity cancelled)
    done: dict[str, Any] = field(default_factory=dict)  # PortCall key → its recorded output (idempotency)
    escalation_id: str | None = None
    kept: dict[str, Any] = field(default_factory=dict)  # opaque adapter objects the tick holds (``codec.Opaque``)
    used: float = field(default_factory=time.monotonic)
    calls: threading.Lock = field(default_factory=threading.Lock)  # one port call at a time
    level: str = ""  # the level the tick runs at (as the workflow's tick is told)
    unrebuilt: list[str] = field(default_factory=list)  # attempts whose worktree patch did not apply
    stepper: Any = None  # ``port_batch.Stepper``: the worker's own run of the tick, made at the first batch
    halt: dict[str, str] = field(default_factory=lambda: {"reason": "kill"})  # what the stop check says
    called: bool = False  # a port call (or close) reached it: its workflow knows this worker holds the tick

    def keep(self, obj: Any) -> str:
        """Keep a worker-side object the tick will hand back (a guard's snapshot); the workflow gets its ref."""
        ref = f"{self.generation}:{len(self.kept) + 1}"
        self.kept[ref] = obj
        return ref


#: a session with no port call for this long is closed when another tick wants its clone (the workflow sends
#: the next call within seconds; one that is slower than this has re-opened the tick elsewhere by then)
IDLE_TTL_S = 600.0
#: a session that never got a call: its ``open_tick`` answer was lost (the activity timed out and was retried,
#: perhaps on another worker, which then holds the tick): it gives the worker's capacity back sooner
UNUSED_TTL_S = 120.0

_SESSIONS: dict[str, TickSession] = {}
_GUARD = threading.Lock()


def get(tick_id: str) -> TickSession:
    with _GUARD:
        s = _SESSIONS.get(tick_id)
    if s is None:
        raise SessionLost(f"no session for tick {tick_id} in this worker (restarted?): re-open the tick")
    s.used = time.monotonic()
    s.called = True
    return s


def close(tick_id: str, up_to: int | None = None) -> TickSession | None:
    """End the session (only if its generation is ``up_to`` or older): close its store, release the clone."""
    with _GUARD:
        s = _SESSIONS.get(tick_id)
        if s is None or (up_to is not None and s.generation > up_to):
            return None
        del _SESSIONS[tick_id]
    if s is not None:
        if s.stepper is not None:
            s.stepper.close()
        try:
            s.runner.close()
        finally:
            if s.lock.locked():
                s.lock.release()
    return s


def count() -> int:
    """Open sessions in this worker: ticks it holds (``capacity.TickSlots`` counts them against its concurrency)."""
    with _GUARD:
        return len(_SESSIONS)


def expire() -> None:
    """Close the sessions idle past their time (their workflow is gone or moved on)."""
    now = time.monotonic()
    with _GUARD:
        # idle too long between two calls (its workflow moved on or is gone); a call in progress keeps it
        stale = [k for k, s in _SESSIONS.items()
                 if now - s.used > (s.ttl_s if s.called else min(s.ttl_s, UNUSED_TTL_S)) and not s.calls.locked()]
    for k in stale:
        close(k)


def _acquire(key: str, beat: Any, wait_s: float) -> threading.Lock:
    """The clone's lock, waited for (heartbeating) while another tick's session holds it."""
    lock = clones.clone_lock(key)
    deadline = time.monotonic() + wait_s
    while not lock.acquire(timeout=0.5):
        beat()
        expire()
        if time.monotonic() > deadline:
            raise LoopError(f"the clone of {key} stayed busy for {wait_s:g} s")
    return lock


def open_session(ctx: Any, inp: Any, beat: Any) -> tuple[TickSession, Any, list[str]]:
    """Clone or fetch, load the project, build the plan and adapters as ``run_tick`` does; register them.

    Returns the session, the core's ``TickDeps`` (for the workflow's ``Tick``) and the attempts whose
    worktree could not be rebuilt from its patch. A second open of the same tick (a retried activity)
    replaces the first.
    """
    close(inp.tick_id)
    t = inp.tick
    lock = _acquire(t.project_key, beat, t.agent_timeout_s * 8 + 900)
    try:
        return _build(ctx, inp, lock, IDLE_TTL_S)
    except BaseException:
        lock.release()
        raise


def _build(ctx: Any, inp: Any, lock: threading.Lock, ttl: float) -> tuple[TickSession, Any, list[str]]:
    from ..adapters.clock import SystemClock
    from ..app.fleet import linked_project
    from ..app.runner import LoopRunner, RunOptions, backend_name
    from ..app.runtime import load_project
    from ..core.effects import DirectExecutor
    from .activities import _spine_names, tick_budget
    from .types import RunTickInput

    t = inp.tick
    root = clones.sync_clone(ctx.work_dir, t.repo_url, t.project_key, t.branch)
    base_commit = clones.git(root, "rev-parse", "HEAD")
    project = linked_project(load_project(root), t.pattern, t.fleet)
    plan = project.plan(t.pattern)
    spine_names = _spine_names(project, plan)
    stopped = threading.Event()
    halt = {"reason": "kill"}  # the workflow's stop signal may name another reason (``port_batch``)
    opts = RunOptions(level=t.level, backend=t.backend, scenario=t.scenario, run_id=inp.run_id,
                      replay=dict(inp.replay), extra_stop=lambda: halt["reason"] if stopped.is_set() else None,
                      force=t.force, clock=SystemClock())
    rti = RunTickInput(tick=t, tick_id=inp.tick_id, run_id=inp.run_id)
    budget = tick_budget(ctx, rti, inp.generation, project, plan, backend_name(project, plan, opts))
    unrebuilt: list[str] = []
    if inp.generation > 1:
        budget.settle_previous_attempts(opts.clock.now())  # the lost worker's open reservations: fail closed
        unrebuilt = _rebuild(root, t.pattern, inp.patches)
    runner = LoopRunner(project, plan, opts, owner=ctx.identity)
    try:
        built = runner._deps()
        deps = replace(built, budget=budget, tick_id=inp.tick_id,
                       agent_timeout_s=min(built.agent_timeout_s, t.agent_timeout_s))
    except BaseException:
        runner.close()
        raise
    session = TickSession(
        tick_id=inp.tick_id, generation=inp.generation, root=root, project_key=t.project_key, pattern=t.pattern, plan=plan,
        spine_names=spine_names, base={n: clones.read(root, n) for n in spine_names}, base_commit=base_commit,
        deps=deps, execute=DirectExecutor(deps), runner=runner, lock=lock, ttl_s=ttl, stopped=stopped,
        level=t.level or plan.level, unrebuilt=unrebuilt, halt=halt)
    with _GUARD:
        _SESSIONS[inp.tick_id] = session
    return session, deps, unrebuilt


def _rebuild(root: Path, pattern: str, patches: dict[str, Any]) -> list[str]:
    """Each replayed implementer's worktree, from the diff the tick took right after it; the ones that do
    not apply are reported (the workflow then runs that attempt's agents again instead of replaying them)."""
    from .activities import rebuild_worktrees

    failed = []
    for n, p in sorted(patches.items()):
        try:
            rebuild_worktrees(root, pattern, {n: p})
        except LoopError:
            failed.append(str(n))
    return failed
