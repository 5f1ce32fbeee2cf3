"""Activities: every side effect of a tick on Temporal, each with one dataclass input.

``run_tick`` runs the engine (``LoopEngine``, the very code ``loop-runtime run`` runs) in
this worker's clone of the repository. What makes a retry safe is the journal the engine
already keeps: every completed agent call is recorded (``agent:<key>``) and, here, also
sent to Temporal as the activity's heartbeat details, together with the patch each
implementer left in its worktree. When the worker dies, Temporal retries the activity on
another worker with those details: the completed calls are replayed from them (no agent
runs, no tokens are reserved or billed again — the idempotency key is the call's journal
key), the worktrees are rebuilt from their patches, and the tick goes on from the first
call that had not finished. The one call that was running when the worker died cannot be
known, so its reservation is charged in full (fail closed), as the embedded runtime does.

Activities are synchronous (run in the worker's thread pool): the engine's ports are
synchronous, and the budget port reaches the budget workflow through the worker's event
loop (``BudgetClient``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ..errors import ConfigError, LoopError
from . import clones
from .budget_client import BudgetClient
from .types import (
    DecideInput,
    EscalationInfo,
    PushInput,
    PushOutput,
    RunTickInput,
    RunTickOutput,
    SpineFile,
)

HEARTBEAT_EVERY_S = 0.5


@dataclass
class WorkerContext:
    """What the activities of one worker process share (set by ``worker.run_worker``)."""

    client: Any
    loop: asyncio.AbstractEventLoop
    work_dir: Path
    task_queue: str
    worker_queue: str  # this process alone: decisions on the changes its clones hold
    identity: str
    budget_timeout_s: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)


_CTX: WorkerContext | None = None


def set_context(ctx: WorkerContext | None) -> None:
    global _CTX
    _CTX = ctx


def context() -> WorkerContext:
    if _CTX is None:
        raise ApplicationError("no worker context (activities run inside `loop-runtime worker`)", non_retryable=True)
    return _CTX


def _fail(e: Exception) -> ApplicationError:
    """Our errors as Temporal sees them: configuration errors are not retried (a retry cannot fix them)."""
    if isinstance(e, ConfigError | clones.PushConflict):
        return ApplicationError(str(e), type="NonRetryable", non_retryable=True)
    return ApplicationError(str(e), type=type(e).__name__)


# ---------------------------------------------------------------------------- the journal, heartbeated


class HeartbeatJournal:
    """The store journal, plus every completed agent call (and worktree patch) sent as heartbeat details.

    Heartbeat details are kept in Temporal's history, so they are redacted like everything the store
    writes; a worktree patch that may hold a secret is not sent at all (it cannot be redacted and still
    apply) — that attempt's implementer and verifier then run again on a retry elsewhere.
    """

    def __init__(self, inner: Any, replay: dict[str, Any], patches: dict[str, Any],
                 secrets: tuple[str, ...] = ()) -> None:
        self.inner, self.replay, self.patches = inner, dict(replay), dict(patches)
        self.secrets = secrets
        self.workspaces: dict[str, dict[str, Any]] = {}
        self.withheld: set[str] = set()  # attempts whose worktree patch was not sent
        self.escalation_id: str | None = None

    def __getattr__(self, name: str) -> Any:  # anything else the engine may ask of its journal
        return getattr(self.inner, name)

    def details(self) -> dict[str, Any]:
        return {"replay": dict(self.replay), "patches": dict(self.patches)}

    def beat(self) -> None:
        """Heartbeats are sent by the ``Ticker``; this makes a new record go out at once."""
        _heartbeat(self.details())

    def begin(self, **kw: Any) -> None:
        try:
            self.inner.begin(**kw)
        except Exception as e:  # a retry on the same worker: the tick is already in its journal
            if "UNIQUE" not in str(e):
                raise
            self.inner.store.set_tick_status(kw["tick_id"], "running")

    def record(self, tick_id: str, phase: str, data: Mapping[str, Any], at: datetime) -> None:
        self.inner.record(tick_id, phase, data, at)
        if phase == "workspace":
            self.workspaces[str(data.get("attempt"))] = dict(data)
            self.replay[f"workspace:{data.get('attempt')}"] = dict(data)  # a retry attaches it (act.py)
        elif phase.startswith("agent:") and data.get("status") == "ok":
            from ..core.redact import redact
            from ..core.secrets import redact_tree

            key = phase.removeprefix("agent:")
            role, _, n = key.partition(":")
            if n and n in self.withheld:
                return  # this attempt cannot be resumed elsewhere: its later calls are not replayed either
            if role == "implementer":
                ws = self.workspaces.get(n)
                if ws is not None:
                    patch = worktree_patch(Path(str(ws["path"])))
                    if redact(patch, extra_secrets=self.secrets) != patch:
                        self.withheld.add(n)
                        self.replay.pop(f"workspace:{n}", None)
                        self.beat()
                        return
                    self.patches[n] = {"run_id": ws.get("run_id"), "patch": patch}
            self.replay[key] = redact_tree(dict(data), self.secrets)
            self.beat()
        elif phase == "escalation":
            self.escalation_id = None if data.get("id") is None else str(data.get("id"))

    def finish(self, tick_id: str, **kw: Any) -> None:
        self.inner.finish(tick_id, **kw)

    def escalate(self, **kw: Any) -> str:
        esc = self.inner.escalate(**kw)
        self.escalation_id = esc
        return esc

    def event(self, *a: Any, **kw: Any) -> None:
        self.inner.event(*a, **kw)


def worktree_patch(path: Path) -> str:
    """Everything an implementer changed in its worktree (new files too), as a binary patch.

    Built with a private index, so the worktree's own index — which the engine reads — is untouched.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="loop-patch-") as d:
        index = os.path.join(d, "index")
        env = {"GIT_INDEX_FILE": index}
        clones.git(path, "read-tree", "HEAD", env=env)
        clones.git(path, "add", "-A", ".", env=env)
        return clones.git(path, "diff", "--cached", "--binary", "HEAD", env=env) + "\n"


def rebuild_worktrees(root: Path, pattern: str, patches: Mapping[str, Any]) -> list[str]:
    """On another worker: recreate each implementer's worktree from its patch (same run id, same branch)."""
    from ..adapters.git_workspace import GitWorkspace

    ws = GitWorkspace(root)
    rebuilt = []
    for _n, p in sorted(patches.items()):
        run_id = str(p.get("run_id"))
        if ws.attach(run_id) is not None:
            continue  # the same worker: the worktree is still there, as it was left
        handle = ws.prepare(run_id, pattern)
        text = str(p.get("patch") or "")
        if text.strip():
            proc = subprocess.run(["git", "apply", "--binary", "-"], cwd=handle.path, input=text, text=True,
                                  capture_output=True, timeout=clones.GIT_TIMEOUT_S)
            if proc.returncode != 0:
                raise LoopError(f"cannot rebuild worktree {run_id}: {proc.stderr.strip()[:200]}")
        rebuilt.append(run_id)
    return rebuilt


# ---------------------------------------------------------------------------- run_tick


class Ticker:
    """Heartbeats every half second from its own thread, for the whole activity (git, tests, agents).

    It also turns a cancellation (the kill switch, or the server giving up on this attempt) into
    the engine's stop check, so the engine halts between two steps and records it — instead of
    the SDK raising ``CancelledError`` at an arbitrary line (that is held back by
    ``activity.shield_thread_cancel_exception``).
    """

    def __init__(self, details: Any) -> None:
        import contextvars

        self.details = details  # a callable returning the current details
        self.stopped = threading.Event()
        self.shutdown = threading.Event()  # the worker is stopping: the tick must be retried elsewhere
        self._done = threading.Event()
        self._ctx = contextvars.copy_context()  # the activity's context: heartbeat() works from this thread
        self._thread = threading.Thread(target=lambda: self._ctx.run(self._loop), daemon=True,
                                        name="loop-heartbeat")

    def _loop(self) -> None:
        while not self._done.is_set():
            _heartbeat(self.details())
            try:
                if activity.is_worker_shutdown():
                    self.shutdown.set()  # not a kill: stop between two steps, then fail so another worker retries
                    self.stopped.set()
                if activity.is_cancelled():
                    self.stopped.set()
            except RuntimeError:
                pass
            self._done.wait(HEARTBEAT_EVERY_S)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join(5)


def _heartbeat(details: Any) -> None:
    try:
        activity.heartbeat(details)
    except RuntimeError:  # not in an activity (a unit test drives the code directly)
        pass


@activity.defn(name="run_tick")
def run_tick(inp: RunTickInput) -> RunTickOutput:
    from temporalio.exceptions import CancelledError

    ctx = context()
    info = activity.info()
    prior: dict[str, Any] = {}
    if info.heartbeat_details:
        first = info.heartbeat_details[0]
        prior = first if isinstance(first, dict) else {}
    box: dict[str, Any] = {"details": prior, "journal": None, "out": None}

    def details() -> Any:
        j = box["journal"]
        return j.details() if j is not None else box["details"]

    t = inp.tick
    with Ticker(details) as ticker:
        try:
            with activity.shield_thread_cancel_exception():
                try:
                    with clones.clone_lock(t.project_key):
                        box["out"] = _run_tick(ctx, inp, info.attempt, prior, ticker.stopped, box, ticker.shutdown)
                except (LoopError, OSError, subprocess.SubprocessError) as e:
                    raise _fail(e) from None
        except CancelledError:
            if box["out"] is None or ticker.shutdown.is_set():
                raise
            # stopped by the kill switch and recorded as such: that record is the tick's result
    if ticker.shutdown.is_set():
        # a worker restart is not a kill switch: fail this attempt, and the retry (on another worker)
        # replays the calls that completed here from the heartbeat details
        raise ApplicationError("the worker is shutting down; the tick continues on another worker",
                               type="WorkerShutdown")
    return box["out"]


def _run_tick(ctx: WorkerContext, inp: RunTickInput, attempt: int, prior: Mapping[str, Any],
              stopped: threading.Event, box: dict[str, Any], shutdown: threading.Event | None = None
              ) -> RunTickOutput:
    from ..adapters.clock import SystemClock
    from ..core.loop_engine import LoopEngine
    from ..app.fleet import linked_project
    from ..app.runner import LoopRunner, RunOptions, backend_name
    from ..app.runtime import load_project
    from ..app.services import Services

    t = inp.tick
    root = clones.sync_clone(ctx.work_dir, t.repo_url, t.project_key, t.branch)
    base_commit = clones.git(root, "rev-parse", "HEAD")
    # the fleet's overrides, applied as the embedded fleet daemon applies them (``app.fleet.apply_fleet``)
    project = linked_project(load_project(root), t.pattern, t.fleet)
    plan = project.plan(t.pattern)  # a pattern removed from the registry: ConfigError, not retried
    spine_names = _spine_names(project, plan)
    base = {n: clones.read(root, n) for n in spine_names}
    replay = dict(prior.get("replay") or {})
    patches = dict(prior.get("patches") or {})
    clock = SystemClock()
    opts = RunOptions(level=t.level, backend=t.backend, scenario=t.scenario, run_id=inp.run_id, replay=replay,
                      extra_stop=lambda: "kill" if stopped.is_set() else None, force=t.force, clock=clock)
    budget = tick_budget(ctx, inp, attempt, project, plan, backend_name(project, plan, opts))
    budget.shutdown = shutdown
    if attempt > 1:
        budget.settle_previous_attempts(clock.now())
        rebuild_worktrees(root, t.pattern, patches)
    services = Services.open(project, clock=clock, owner=ctx.identity)  # the worker's clone, as `run` in it
    runner = LoopRunner(services, plan, opts)
    journal: HeartbeatJournal | None = None
    try:
        deps = runner._deps()
        journal = HeartbeatJournal(deps.journal, replay, patches, tuple(deps.secrets))
        box["journal"] = journal
        deps = replace(deps, budget=budget, journal=journal, tick_id=inp.tick_id,
                       agent_timeout_s=min(deps.agent_timeout_s, t.agent_timeout_s))
        result = asyncio.run(LoopEngine(plan, deps=deps).tick(level=runner.opts.level or plan.level))
        escalated = _escalation_facts(services, journal.escalation_id) if (
            result.outcome == "escalated" and journal.escalation_id is not None) else None
    finally:
        services.close()
    out = result.as_json()
    branches = []
    if result.branch and result.outcome in ("fix-proposed",):
        clones.push_branch(root, result.branch)
        branches.append(result.branch)
    escalation = None
    if escalated is not None and journal is not None and journal.escalation_id is not None:
        local = journal.escalation_id
        item, reason, title = escalated
        escalation = EscalationInfo(escalation_id=local, local_id=local, pattern=t.pattern, item=item,
                                    title=title, reason=reason, worker_queue=ctx.worker_queue)
    spine = [SpineFile(n, base[n], clones.read(root, n)) for n in spine_names]
    return RunTickOutput(result=out, base_commit=base_commit, spine=spine, escalation=escalation,
                         worker=ctx.identity, attempt=attempt, replayed=sorted(replay), pushed_branches=branches,
                         worker_queue=ctx.worker_queue)


def tick_budget(ctx: WorkerContext, inp: RunTickInput, attempt: int, project: Any, plan: Any,
                backend: str) -> BudgetClient:
    """The tick's budget scopes: the fleet's portfolio (tokens, dollars) when it has one, the repository
    (``global_daily_cap``, the fleet's ``daily_cap`` already folded in), the loop."""
    from .fleet import portfolio_scopes

    t = inp.tick
    return BudgetClient(ctx, f"{t.project_key}/{t.pattern}", plan.daily_token_cap, inp.tick_id, attempt,
                        ctx.task_queue,
                        global_scope=f"{t.project_key}/*" if project.config.global_daily_cap else None,
                        global_cap=project.config.global_daily_cap,
                        outer=portfolio_scopes(t.fleet, backend))


def _spine_names(project: Any, plan: Any) -> list[str]:
    """The files a tick writes in the main checkout and the ecosystem commits: state files, run log, ledger."""
    from ..core.control_files import SPINE_FILES

    states = {p.state for p in project.registry.patterns} | {plan.state_file, "STATE.md"}
    return sorted({*states, *SPINE_FILES})


def _escalation_facts(services: Any, local_id: str) -> tuple[str, str, str]:
    e = services.store.get_escalation(local_id)
    if e is None:
        return "", "", ""
    return str(e.item_id), str((e.context or {}).get("reason") or ""), str(e.title)


# ---------------------------------------------------------------------------- push_spine


def _beat() -> None:
    try:
        activity.heartbeat()
    except RuntimeError:
        pass


#: where a worker pushes spine files from: clones of their own, so a push never waits for the next tick,
#: which holds the tick clone (its checkout) from start to end, and never resets a checkout a tick is using
PUSH_DIR = ".push"


@activity.defn(name="push_spine")
def push_spine(inp: PushInput) -> PushOutput:
    ctx = context()
    marker = f"Loop-Run: {inp.pattern} {inp.run_id}"
    try:
        with Ticker(lambda: None), clones.clone_lock(f"{inp.project_key}{PUSH_DIR}"):
            commit, attempts, already, merged = clones.push_files(
                ctx.work_dir / PUSH_DIR, inp.repo_url, inp.project_key, inp.branch, inp.files, inp.message, marker,
                beat=_beat)
    except (LoopError, OSError, subprocess.SubprocessError) as e:
        raise _fail(e) from None
    return PushOutput(commit=commit, attempts=attempts, already=already, merged=merged)


# ---------------------------------------------------------------------------- decide_escalation


@activity.defn(name="decide_escalation")
def decide_escalation(inp: DecideInput) -> dict[str, Any]:
    """Apply a human's decision in the clone that holds the change, then publish it."""
    ctx = context()
    try:
        with Ticker(lambda: None), clones.clone_lock(inp.project_key):
            return _decide(ctx, inp)
    except (LoopError, OSError, subprocess.SubprocessError) as e:
        raise _fail(e) from None


def _decide(ctx: WorkerContext, inp: DecideInput) -> dict[str, Any]:
    from ..app.actions import approve, reject
    from ..app.runtime import load_project

    root = clones.sync_clone(ctx.work_dir, inp.repo_url, inp.project_key, inp.branch)
    project = load_project(root)
    before = {n: clones.read(root, n) for n in _decision_files(project)}
    if inp.decision == "approved":
        result = approve(project, inp.local_id, merge=inp.merge, by=inp.by)
    else:
        result = reject(project, inp.local_id, reason=inp.reason or inp.decision, by=inp.by,
                        keep_branch=inp.keep_branch)
    branch = result.get("branch") or (result.get("removed") or {}).get("branchKept")
    if branch:
        clones.push_branch(root, str(branch))
        result["pushedBranch"] = branch
    if result.get("merge"):
        result["pushed"] = clones.push_head(root, inp.branch)
    after = [SpineFile(n, before[n], clones.read(root, n)) for n in before]
    if any(f.ours != f.base for f in after):
        commit, _n, _already, _merged = clones.push_files(
            ctx.work_dir, inp.repo_url, inp.project_key, inp.branch, after,
            f"loop: escalation {inp.local_id} {inp.decision}", f"Loop-Decision: {inp.project_key} {inp.local_id}")
        result["spineCommit"] = commit
    result["decision"] = inp.decision
    return result


def _decision_files(project: Any) -> list[str]:
    from ..core.control_files import SPINE_FILES

    return sorted({p.state for p in project.registry.patterns} | {"STATE.md", *SPINE_FILES})


ACTIVITIES = [run_tick, push_spine, decide_escalation]
