"""The per-port tick: the core's tick state machine runs *in the workflow*, its PortCalls performed by activities.

    open_tick (any worker) ─▶ Tick(plan, deps).run() driven here ─▶ port_batch × N (that worker's queue)
                                                                 ─▶ close_tick (spine files, branch)

The tick is ``core.tick.Tick``, the very code ``loop-runtime run`` drives with ``DirectExecutor``;
here ``PortDriver.execute`` answers each PortCall it yields from the worker that opened the tick (its
clone and worktrees are local: the queue is sticky). Batches (``port_batch``, the default since
``BATCH_PATCH``): the worker runs the same tick in its session and performs its calls ahead — the call
ours waits for, then every cheap one after it up to the next heavy one — and ours is answered from that
record, each call's key and name checked (a parting re-opens the tick, one activity per call from then on).
One activity per call (``port_call``: histories from before batches, and after a parting): two calls never
leave the workflow: ``clock.now`` is ``workflow.now()`` (deterministic), and ``stop.check`` answers the kill
switch signal at once when it came; ``state.update(path, fn)`` cannot ship ``fn``: the workflow reads,
applies ``fn`` and sends a compare-and-write, again until the text held still. In a batch the worker's
clock, stop check (told the signal) and ``update_file`` answer them, and the history holds the answers.

Idempotency: every activity carries the PortCall's deterministic key, and the worker returns the
recorded output of a key it already performed. ``backend.run`` is never retried (it bills tokens).

Worker loss (a schedule-to-start timeout on its queue, an agent's heartbeat timeout, or the worker
answering that the session is gone): the tick is opened again on another worker and the coroutine
re-driven from the start. Every agent call that completed is *replayed* from this workflow's own
record of its result — the core's resume map, ``options.replay`` — so it neither runs nor reserves
nor settles again; the worktree a replayed implementer left is rebuilt on the new worker from the
diff the tick took right after it (``workspace.diff``, in the history). Everything else runs again
for real on the new worker (its fresh clone), and the lost worker's open reservations are charged
in full (fail closed: its running agent may have spent them).

Workflow code: ``core`` and ``codec`` are pure and passed through the sandbox.
"""

from __future__ import annotations

from collections import deque
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from ..core import act as _act  # noqa: F401 — imported lazily by the tick: loaded here, outside the sandbox
    from ..core.effects import REQUIRED, PortCall, drive
    from ..core.engine import Halt, TickDeps, TickHooks, TickPorts
    from ..core.tick import Tick
    from ..core.tick_agents import result_to
    from ..errors import LoopError
    from . import codec
    from .port_types import (
        BatchStep,
        CloseTickInput,
        DropTickInput,
        OpenTickInput,
        OpenTickOutput,
        PortBatchInput,
        PortBatchOutput,
        PortCallInput,
        PortCallOutput,
        PortStopInput,
        dropped_keys,
    )
    from .types import RunTickOutput, TickInput

MAX_OPENS = 5
CAS_TRIES = 20
_HOOK_FIELDS = ("observer", "stop", "remote_pause", "lease", "promotion", "events")
#: per port: (start-to-close seconds, maximum attempts); backend.run: the agent's timeout and never retried
_LIMITS: dict[str, tuple[float, int]] = {"tests": (3600, 2), "observer": (900, 3), "workspace": (900, 3),
                                         "publisher": (600, 3), "guard": (300, 3), "lease": (300, 3)}
_NON_RETRYABLE = ["ConfigError", "MissingDependency", "NonRetryable", "SessionLost", "WorkerShutdown"]
#: ticks started since batches exist run their port calls in batches (``port_batch``); an older history
#: replays its one activity per call
BATCH_PATCH = "port-batch-v1"
#: what a batch may add to its head's start-to-close limit: the cheap calls after it
_BATCH_TAIL_S = 300


class WorkerLost(BaseException):
    """The worker holding the tick's session is gone: every further call fails with this until re-opened.

    A ``BaseException``: the tick's own ``except Exception`` handlers must not swallow it."""


class Diverged(WorkerLost):
    """The worker's run of the tick answered another call than ours (or its batch failed): re-open the tick,
    its calls one by one from then on (nothing the worker did after the parting is taken as ours)."""


class _Remote:
    """Stands for an adapter that lives on the worker: the tick only asks ``deps.wired()`` about it (and
    ``TickDeps`` that it has the port's method); calling one here would be a bug (every effect is a PortCall)."""

    def __init__(self, port: str) -> None:
        self._port = port

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def elsewhere(*_a: Any, **_k: Any) -> Any:
            raise RuntimeError(f"{self._port}.{method} lives on the worker: the tick must yield a PortCall for it")

        return elsewhere


def build_tick(opened: OpenTickOutput, drop: set[str]) -> Tick:
    """The core's ``Tick`` from what ``open_tick`` sent: the plan, policy, options and wired ports."""
    setup = codec.decode(opened.setup)
    wired = set(setup["wired"])
    ports = TickPorts(**{n: _Remote(n) for n in ("backend", "state", "budget", "clock", "workspace", "tests",
                                                   "guard", "journal", "notifier", "publisher") if n in wired})
    hooks = TickHooks(**{n: _Remote(n) for n in _HOOK_FIELDS if n in wired})
    options = setup["options"]
    replay = {k: v for k, v in options.replay.items() if k not in drop}
    deps = TickDeps(ports=ports, hooks=hooks, policy=setup["policy"], options=options, replay=replay)
    return Tick(setup["plan"], deps, opened.level)


class PortDriver:
    """Drives one tick's state machine from the workflow (see the module doc)."""

    def __init__(self, owner: Any, inp: TickInput, tick_id: str, run_id: str) -> None:
        self.owner, self.inp, self.tick_id, self.run_id = owner, inp, tick_id, run_id
        self.agents: dict[str, dict[str, Any]] = {}  # role key → completed agent result (replayed if re-opened)
        self.workspaces: dict[str, dict[str, Any]] = {}  # attempt → the ``workspace`` record
        self.diffs: dict[str, str] = {}  # worktree run id → the diff taken right after its implementer
        self.queue = ""
        self.lost = False
        self.generation = 0
        self.can_batch = False  # set in the workflow (``BATCH_PATCH``); a unit test drives calls one by one
        self.batching = False
        self.steps: deque[BatchStep] = deque()  # the worker's answers not yet asked for by our tick

    async def run(self) -> RunTickOutput:
        self.can_batch = workflow.patched(BATCH_PATCH)
        while True:
            self.generation += 1
            if self.generation > MAX_OPENS:
                raise ApplicationError(f"tick {self.tick_id}: no worker kept it through {MAX_OPENS} opens",
                                       type="NonRetryable", non_retryable=True)
            replay, patches = self._resume()
            opened = await self._open(replay, patches)
            self.queue, self.lost = opened.worker_queue, False
            self.batching, self.steps = self.can_batch, deque()
            drop = dropped_keys(opened.unrebuilt)
            try:
                result = await drive(build_tick(opened, drop).run(), self.execute)
                return await self._close(result.as_json(), sorted(set(replay) - drop - _ws_keys(replay)))
            except WorkerLost as e:
                if isinstance(e, Diverged):  # the re-opened tick runs its calls one by one
                    workflow.logger.warning(f"{e}: re-opening the tick, one activity per call")
                    self.can_batch = False
                self._forget()  # the old worker, if it is only slow, releases the clone
                continue
            except (LoopError, codec.CodecError) as e:  # the tick failed (as `run` exits 1): fail the workflow,
                await self._drop()  # never a workflow task retried for ever
                raise ApplicationError(f"tick {self.tick_id}: {e}", type=type(e).__name__,
                                       non_retryable=True) from None

    def _resume(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What a re-opened tick replays: completed agent calls, and each replayed implementer's worktree."""
        replay: dict[str, Any] = dict(self.agents)
        patches: dict[str, Any] = {}
        for n, ws in self.workspaces.items():
            rid = str(ws.get("run_id"))
            if f"implementer:{n}" in self.agents and rid in self.diffs:
                replay[f"workspace:{n}"] = dict(ws)
                patches[n] = {"run_id": rid, "patch": self.diffs[rid]}
            else:  # no diff to rebuild its worktree from: that attempt's agents run again
                replay = {k: v for k, v in replay.items() if not k.endswith(f":{n}")}
        return replay, patches

    async def _open(self, replay: dict[str, Any], patches: dict[str, Any]) -> OpenTickOutput:
        self.owner.phase = "opening"
        return await workflow.execute_activity(
            "open_tick", OpenTickInput(tick=self.inp, tick_id=self.tick_id, run_id=self.run_id,
                                       generation=self.generation, replay=replay, patches=patches),
            result_type=OpenTickOutput, start_to_close_timeout=timedelta(minutes=15),
            heartbeat_timeout=timedelta(seconds=max(self.inp.heartbeat_timeout_s * 2, 10)),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5,
                                     non_retryable_error_types=_NON_RETRYABLE))

    async def _close(self, result: dict[str, Any], replayed: list[str]) -> RunTickOutput:
        self.owner.phase = "closing"
        try:
            return await workflow.execute_activity(
                "close_tick", CloseTickInput(tick=self.inp, tick_id=self.tick_id, result=result,
                                             generation=self.generation, replayed=replayed),
                result_type=RunTickOutput, task_queue=self.queue, start_to_close_timeout=timedelta(minutes=10),
                schedule_to_start_timeout=self._sticky(), heartbeat_timeout=self._beat(),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3,
                                         non_retryable_error_types=_NON_RETRYABLE))
        except ActivityError as e:
            if _lost(e):
                raise WorkerLost() from None
            raise

    async def _drop(self) -> None:
        """Release the session of a tick that failed (best effort: the worker may be gone too)."""
        try:
            await workflow.execute_activity("drop_tick", DropTickInput(self.tick_id, self.generation),
                                            task_queue=self.queue,
                                            start_to_close_timeout=timedelta(seconds=30),
                                            schedule_to_start_timeout=self._sticky(),
                                            retry_policy=RetryPolicy(maximum_attempts=2))
        except ActivityError:
            pass

    def _forget(self) -> None:
        """Tell the lost worker to drop the session, without waiting (it may be gone: the request then lapses)."""
        workflow.start_activity("drop_tick", DropTickInput(self.tick_id, self.generation), task_queue=self.queue,
                                start_to_close_timeout=timedelta(seconds=30), schedule_to_start_timeout=self._sticky(),
                                retry_policy=RetryPolicy(maximum_attempts=1))

    def _sticky(self) -> timedelta:
        return timedelta(seconds=max(self.inp.heartbeat_timeout_s * 2, 10))

    def _beat(self) -> timedelta:
        return timedelta(seconds=self.inp.heartbeat_timeout_s)

    # -- one PortCall
    async def execute(self, call: PortCall) -> Any:
        if self.lost:
            raise WorkerLost()
        if self.batching:
            return await self._batched(call)
        if call.name == "clock.now":
            return workflow.now()
        if call.name == "stop.check" and self.owner.stop_reason is not None:
            return self.owner.stop_reason
        if call.name == "state.update":
            return await self._update(call)
        return await self._call(call)

    async def _update(self, call: PortCall) -> Any:
        """``state.update(path, fn)``: read, apply ``fn`` here, compare-and-write; again if the file moved."""
        path, fn = call.args[0], call.args[1]
        for i in range(CAS_TRIES):
            old = await self._call(PortCall("state", "read", (path,), {}, f"{call.key}:read:{i}"))
            new = fn(old)
            if new is None or new == old:
                return old
            wrote = await self._call(PortCall("state", "compare_and_write", (path, codec.text_digest(old), new), {},
                                              f"{call.key}:write:{i}"))
            if wrote:
                return new
        raise LoopError(f"{path}: changed under {CAS_TRIES} updates in a row")

    async def _call(self, call: PortCall) -> Any:
        return self._answer(call, await self._activity(call))

    def _answer(self, call: PortCall, out: PortCallOutput) -> Any:
        if out.absent:
            return call.default
        if out.error is not None:
            raise codec.decode_error(out.error)
        value = codec.decode(out.result)
        self._note(call, value)
        return value

    async def _batched(self, call: PortCall) -> Any:
        """Our tick's call, answered by the worker's run of the same tick (``port_batch``), checked call by call."""
        if not self.steps:
            self.steps.extend((await self._batch(call)).steps)
        step = self.steps.popleft() if self.steps else None
        if step is None or (step.key, step.name) != (call.key, call.name):
            self.lost = True  # the two runs of the tick parted: what the worker did is not ours to trust
            got = "nothing" if step is None else f"{step.name} ({step.key})"
            raise Diverged(f"tick {self.tick_id}: the worker answered {got} for {call.name} ({call.key})")
        return self._answer(call, PortCallOutput(result=step.result, error=step.error, absent=step.absent))

    async def _batch(self, call: PortCall) -> PortBatchOutput:
        inp = PortBatchInput(tick_id=self.tick_id, key=f"{call.key}:batch", head=call.name,
                             stop=self.owner.stop_reason)
        handle = self._start("port_batch", inp, PortBatchOutput, call, _BATCH_TAIL_S)
        if self.owner.stop_reason is None:  # a kill switch signal meanwhile is told to the worker (``port_stop``)
            await workflow.wait_condition(lambda: handle.done() or self.owner.stop_reason is not None)
            if not handle.done():
                await self._tell_stop()
        try:
            return await handle
        except ActivityError as e:
            self.lost = True  # lost, cancelled before it answered, or failed: the worker's run is not ours now
            if _lost(e) or isinstance(e.cause, CancelledError):
                raise WorkerLost() from None
            raise Diverged(f"tick {self.tick_id}: the batch for {call.name} failed: {e.cause or e}") from None

    def _start(self, name: str, inp: Any, result_type: type, call: PortCall, tail_s: float = 0) -> Any:
        """Start the activity performing ``call`` (and, for a batch, the calls after it) on the session's worker."""
        self.owner.phase = f"ticking: {call.name}"
        agent = call.name == "backend.run"
        limit, attempts = ((self.inp.agent_timeout_s + 120, 1) if agent else _LIMITS.get(call.port, (120, 3)))
        return workflow.start_activity(
            name, inp, result_type=result_type, task_queue=self.queue,
            start_to_close_timeout=timedelta(seconds=limit + tail_s),
            schedule_to_start_timeout=self._sticky(), heartbeat_timeout=self._beat(),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=attempts,
                                     non_retryable_error_types=_NON_RETRYABLE),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)

    async def _tell_stop(self) -> None:
        """The worker's stop check says the signal's reason from now on (best effort: a lost worker is noticed
        by the batch's heartbeat, and the re-opened tick is told the reason in its first batch)."""
        try:
            await workflow.execute_activity(
                "port_stop", PortStopInput(self.tick_id, self.owner.stop_reason or "kill"), task_queue=self.queue,
                start_to_close_timeout=timedelta(seconds=30), schedule_to_start_timeout=self._sticky(),
                retry_policy=RetryPolicy(maximum_attempts=2))
        except ActivityError:
            pass

    async def _stoppable(self, handle: Any) -> None:
        """Wait for the activity; a kill switch signal meanwhile cancels it (the worker's stop check says so)."""
        await workflow.wait_condition(lambda: handle.done() or self.owner.stop_reason is not None)
        if not handle.done():
            handle.cancel()

    def _note(self, call: PortCall, value: Any) -> None:
        """Keep what a re-opened tick needs: completed agent results, worktree records, post-implementer diffs."""
        if call.name == "backend.run" and getattr(value, "status", "") == "ok":
            role_key = call.key.removeprefix(f"{self.tick_id}:agent:").removesuffix(":backend.run")
            self.agents[role_key] = result_to(value)
        elif call.name == "journal.record" and len(call.args) > 2 and call.args[1] == "workspace":
            data = dict(call.args[2])
            self.workspaces[str(data.get("attempt"))] = data
        elif call.name == "workspace.diff" and call.args:
            self.diffs.setdefault(str(getattr(call.args[0], "run_id", "")), str(getattr(value, "patch", "")))

    async def _activity(self, call: PortCall) -> PortCallOutput:
        try:
            payload = codec.encode({"args": call.args, "kwargs": dict(call.kwargs)})
        except codec.CodecError as e:
            raise LoopError(f"{call.name}: {e}") from None
        inp = PortCallInput(tick_id=self.tick_id, key=call.key, port=call.port, method=call.method,
                            payload=payload, optional=call.default is not REQUIRED)
        handle = self._start("port_call", inp, PortCallOutput, call)
        if call.name == "backend.run":  # the kill switch cancels a running agent: it is stopped within a heartbeat
            await self._stoppable(handle)
        try:
            return await handle
        except ActivityError as e:
            if _lost(e):
                self.lost = True
                raise WorkerLost() from None
            if isinstance(e.cause, CancelledError):
                raise Halt(self.owner.stop_reason or "kill", f"stopped: {self.owner.stop_reason or 'kill'}") from None
            raise LoopError(f"{call.name}: {e.cause or e}") from None


def _ws_keys(replay: dict[str, Any]) -> set[str]:
    return {k for k in replay if k.startswith("workspace:")}


def _lost(e: ActivityError) -> bool:
    """The worker holding the session is gone: its queue has no poller, its heartbeat stopped, or it said so."""
    cause = e.cause
    if isinstance(cause, ActivityTimeout):
        return True
    return isinstance(cause, ApplicationError) and cause.type in ("SessionLost", "WorkerShutdown")
