"""The worker runs the tick ahead of the workflow, one batch of cheap port calls per activity (``port_batch``).

Why: on the per-port path the tick's state machine runs in the workflow and each PortCall was one
activity — about sixty per report-only tick, each a round trip through the server (schedule the
activity, a worker starts it, it completes, a workflow task decides the next one). The server's CPU
and that chain of round trips, not the agent, set the pace. Most of those calls are bookkeeping the
tick issues back to back (journal records and events, the state file read, the budget's status).

So the worker that holds the tick's session keeps a run of the *same* tick (``core.tick.Tick`` over the
same plan, policy, options and replay map, with the real adapters) and drives it with the embedded
driver's adapters, exactly as ``port_call`` would perform each call. A batch performs the call the
workflow's tick is waiting for (the *head*), then every following call until one that heads an activity
of its own (``heads_activity``: an agent run, discovery, the tests, the gate, the worktree, publishing,
a lease) — it stops *before* that one. The batch's output is every call's key, name and encoded outcome, in
order. The workflow answers its own tick's calls from it, checking each key and name (``port_workflow``):
the two runs are one deterministic state machine fed the same answers, and the history holds every answer,
so a replay of the workflow reads them back as before.

What each side sees is the same: the worker's tick gets every answer *through the codec* (encoded, then
decoded — an error rebuilt as the workflow rebuilds it; a worker-side object as itself), so it takes the
branch the workflow's tick takes. An agent's completed result reaches the workflow at the end of the batch
headed by that ``backend.run`` (the calls after it are bookkeeping, milliseconds), so a lost worker does
not bill it again on the re-opened tick. A retried batch (same key) returns the recorded output.
"""

from __future__ import annotations

import json
from typing import Any

from temporalio import activity

from . import clones, codec, tick_session
from .activities import Ticker
from .port_activities import perform, session_of, watch, worker_shutdown
from .port_types import BatchStep, PortBatchInput, PortBatchOutput, PortCallOutput, PortStopInput, dropped_keys

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_STEPS", "Stepper", "heads_activity", "port_batch", "port_stop", "run_batch"]

#: ports whose every call is slow, or acts outside the tick's own journal, files and budget: its own activity
HEAD_PORTS = frozenset({"observer", "tests", "guard", "workspace", "publisher", "lease", "notifier"})
HEAD_CALLS = frozenset({"backend.run"})
#: a batch ends early past these (the history's payload limits; a batch is cut, never a call)
MAX_BATCH_STEPS = 200
MAX_BATCH_BYTES = 512 * 1024


def heads_activity(port: str, method: str) -> bool:
    """Does this call start an activity of its own (a batch never runs into it)?"""
    return port in HEAD_PORTS or f"{port}.{method}" in HEAD_CALLS


class Stepper:
    """The worker's run of the tick: a coroutine stepped one PortCall at a time (``core.effects.drive``,
    unrolled so it can stop between two calls and go on in the next activity)."""

    def __init__(self, coro: Any) -> None:
        self.coro = coro
        self.pending: Any = None  # the PortCall the tick waits on
        self.ended = False
        self.batches: dict[str, list[BatchStep]] = {}  # batch key → its steps (a retried batch gets them again)
        self.finished: set[str] = set()  # batches that ran to their end (a retry of one performs nothing)
        self._step(None, False)

    def _step(self, value: Any, failed: bool) -> None:
        from ..core.effects import PortCall

        try:
            call = self.coro.throw(value) if failed else self.coro.send(value)
        except BaseException:  # noqa: BLE001 — the tick returned or raised: the workflow's tick does the same
            self.pending, self.ended = None, True
            return
        if not isinstance(call, PortCall):
            self.coro.close()
            self.pending, self.ended = None, True
            return
        self.pending = call

    def close(self) -> None:
        """The session ends with the tick unfinished (dropped, re-opened elsewhere): end the coroutine quietly."""
        try:
            self.coro.close()
        except BaseException:  # noqa: BLE001 — it awaited in a ``finally`` or runs in another thread: let it go
            pass

    def answer(self, call: Any, out: PortCallOutput, lookup: Any) -> None:
        """Hand the call's outcome to the tick as the workflow's tick gets it (through the codec)."""
        if out.absent:
            self._step(call.default, False)
        elif out.error is not None:
            self._step(codec.decode_error(out.error), True)
        else:
            try:
                value = codec.decode(out.result, lookup)
            except codec.CodecError as e:  # cannot happen for what ``encode`` wrote; fail as the workflow would
                self._step(e, True)
                return
            self._step(value, False)


def _stepper(session: tick_session.TickSession) -> Stepper:
    from dataclasses import replace

    from ..core.tick import Tick

    if session.stepper is None:
        drop = dropped_keys(session.unrebuilt)
        replay = {k: v for k, v in session.deps.options.replay.items() if k not in drop}
        tick = Tick(session.plan, replace(session.deps, replay=replay), session.level)
        session.stepper = Stepper(tick.run())
    return session.stepper


def _size(out: PortCallOutput) -> int:
    try:
        return len(json.dumps(out.result if out.error is None else out.error))
    except (TypeError, ValueError):
        return MAX_BATCH_BYTES


def run_batch(session: tick_session.TickSession, inp: PortBatchInput, shutdown: Any = None) -> PortBatchOutput:
    """Perform the head and the cheap calls after it (see the module doc); recorded under the batch key."""
    st = _stepper(session)
    steps = st.batches.setdefault(inp.key, [])  # a retry of an interrupted batch goes on from where it was
    if inp.key in st.finished:
        return PortBatchOutput(steps=list(steps), ended=st.ended)
    size = 0
    while not st.ended:
        call = st.pending
        if steps and (heads_activity(call.port, call.method) or len(steps) >= MAX_BATCH_STEPS
                      or size >= MAX_BATCH_BYTES):
            break
        if inp.stop is not None and not session.stopped.is_set():
            session.halt["reason"] = inp.stop
            session.stopped.set()
        out = perform(session, call, call.default is not _required())
        if shutdown is not None and shutdown():
            raise worker_shutdown()  # a call cut short by the worker stopping is not an outcome: re-open
        steps.append(BatchStep(key=call.key, name=call.name, result=out.result, error=out.error, absent=out.absent))
        clones._fault(f"temporal:batch:{call.name}")  # crash tests: die between two calls of a batch
        size += _size(out)
        st.answer(call, out, session.kept.get)
    st.finished.add(inp.key)
    return PortBatchOutput(steps=list(steps), ended=st.ended)


def _required() -> Any:
    from ..core.effects import REQUIRED

    return REQUIRED


@activity.defn(name="port_batch")
def port_batch(inp: PortBatchInput) -> PortBatchOutput:
    session = session_of(inp.tick_id)
    with session.calls:
        with Ticker(lambda: None) as ticker:
            with activity.shield_thread_cancel_exception():
                relay = watch(session, ticker)
                try:
                    return run_batch(session, inp, ticker.shutdown.is_set)
                finally:
                    relay.set()


@activity.defn(name="port_stop")
def port_stop(inp: PortStopInput) -> bool:
    """The kill switch, for a tick whose batch is running here: the session's stop check says so from now on.

    Not a cancellation of the batch: a cancelled activity answers nothing, so the workflow could not know what
    the tick did before it stopped (it would re-open the tick); told to stop, the tick halts as it does
    embedded — the agent stops, its reservation is settled, the halt recorded — and the batch answers all of
    it. No session here (the worker restarted): nothing to stop; the batch's own heartbeat says it is lost."""
    try:
        session = tick_session.get(inp.tick_id)
    except tick_session.SessionLost:
        return False
    session.halt["reason"] = inp.reason or "kill"
    session.stopped.set()
    return True
