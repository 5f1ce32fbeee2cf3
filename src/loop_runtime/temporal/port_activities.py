"""Activities of the per-port path: ``open_tick``, one ``port_call`` per PortCall of the tick, ``close_tick``.

(A tick started since batches exist sends its calls through ``port_batch`` instead — several calls an
activity, see ``port_batch`` — which performs each one with ``perform`` here, as ``port_call`` does.)

``open_tick`` runs on any worker (the shared queue): it opens the tick's session there
(``tick_session``) and answers with what the workflow builds the core's ``Tick`` from and the
worker's own queue, where the tick's port calls then go (its clone and worktrees are local).

``port_call`` performs one PortCall through the session's ``DirectExecutor``, the embedded driver,
so an adapter is called exactly as ``loop-runtime run`` calls it. A port's exception is a *result*
(it goes back into the tick, which decides); only a lost session fails the activity. Each completed
call's output is kept by its key, so a retried activity with the same key returns it instead of
performing the effect again (and ``backend.run`` is never retried at all). While an agent runs the
activity heartbeats; its cancellation (the kill switch) is the session's stop check, which the
backend polls, so the agent stops within a heartbeat and the call returns the halted result.

Two calls are special: ``backend.run`` gets the session's agent environment (it never travels
through the history) and ``state.compare_and_write`` is the write half of ``state.update`` (the
workflow applies the update's function itself: a function cannot travel either).
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ..errors import LoopError
from . import clones, codec, tick_session
from .activities import Ticker, _escalation_facts, _fail, _heartbeat, context
from .port_types import CloseTickInput, DropTickInput, OpenTickInput, OpenTickOutput, PortCallInput, PortCallOutput
from .types import EscalationInfo, RunTickOutput, SpineFile

#: what the workflow gets instead of the worker's agent environment (it holds secrets)
_KEPT_ON_WORKER = ("env",)


@activity.defn(name="open_tick")
def open_tick(inp: OpenTickInput) -> OpenTickOutput:
    ctx = context()
    try:
        with Ticker(lambda: None):
            session, deps, unrebuilt = tick_session.open_session(ctx, inp, lambda: _heartbeat(None))
    except (LoopError, OSError, subprocess.SubprocessError) as e:
        raise _fail(e) from None
    options = replace(deps.options, env={})
    setup = {"plan": session.plan, "policy": deps.policy, "options": options, "wired": deps.wired()}
    return OpenTickOutput(worker_queue=ctx.worker_queue, worker=ctx.identity,
                          level=inp.tick.level or session.plan.level, setup=codec.encode(setup),
                          unrebuilt=unrebuilt)


def session_of(tick_id: str) -> tick_session.TickSession:
    """The tick's session in this worker; none (it restarted, or the session expired) fails the activity so the
    workflow re-opens the tick."""
    try:
        return tick_session.get(tick_id)
    except tick_session.SessionLost as e:
        raise ApplicationError(str(e), type="SessionLost", non_retryable=True) from None


@activity.defn(name="port_call")
def port_call(inp: PortCallInput) -> PortCallOutput:
    session = session_of(inp.tick_id)
    with session.calls:
        known = session.done.get(inp.key)
        if known is not None:
            return known  # a retried activity: the effect happened once, its output is returned again
        out = _perform(session, inp)
        session.done[inp.key] = out
    return out


def _perform(session: tick_session.TickSession, inp: PortCallInput) -> PortCallOutput:
    """Decode, call the adapter (heartbeating; a cancellation stops the agent), encode."""
    from ..core.effects import REQUIRED, PortCall

    payload = codec.decode(inp.payload, session.kept.get)
    args, kwargs = tuple(payload.get("args", ())), dict(payload.get("kwargs", {}))
    call = PortCall(inp.port, inp.method, args, kwargs, inp.key, None if inp.optional else REQUIRED)
    with Ticker(lambda: None) as ticker:
        with activity.shield_thread_cancel_exception():
            stop_relay = watch(session, ticker)
            try:
                out = perform(session, call, inp.optional)
            finally:
                stop_relay.set()
    if ticker.shutdown.is_set():
        raise worker_shutdown()
    return out


def worker_shutdown() -> ApplicationError:
    return ApplicationError("the worker is shutting down; the tick continues on another worker", type="WorkerShutdown")


def perform(session: tick_session.TickSession, call: Any, optional: bool) -> PortCallOutput:
    """One PortCall on the session's adapters, its result (or the port's error) encoded for the workflow."""
    try:
        result = _execute(session, call, optional)
    except Exception as e:  # noqa: BLE001 — the port's error is the tick's to handle
        return PortCallOutput(error=codec.encode_error(e))
    if result is _ABSENT:
        return PortCallOutput(absent=True)
    if (call.port, call.method) == ("journal", "escalate"):
        session.escalation_id = None if result is None else str(result)
    try:
        return PortCallOutput(result=codec.encode(result, keep=session.keep))
    except codec.CodecError as e:
        return PortCallOutput(error=codec.encode_error(LoopError(f"{call.name}: {e}")))


_ABSENT: Any = object()


def _execute(session: tick_session.TickSession, call: Any, optional: bool) -> Any:
    import asyncio
    import inspect

    from ..core.effects import ABSENT

    if (call.port, call.method) == ("state", "compare_and_write"):
        return _compare_and_write(session, *call.args)
    if (call.port, call.method) == ("backend", "run"):
        request = call.args[0]
        env = {**dict(session.deps.options.env), **dict(request.env)}
        call = replace(call, args=(replace(request, env=env), *call.args[1:]))
    if optional:
        call = replace(call, default=ABSENT)
    if (call.port, call.method) == ("journal", "begin"):
        return _begin(session, call)
    result = session.execute(call)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return _ABSENT if result is ABSENT else result


async def _await(aw: Any) -> Any:
    return await aw


def _begin(session: tick_session.TickSession, call: Any) -> Any:
    """``journal.begin``; the tick re-opened on this same worker is already in its journal: it runs again."""
    try:
        return session.execute(call)
    except Exception as e:
        if "UNIQUE" not in str(e):
            raise
        session.deps.ports.journal.store.set_tick_status(call.kwargs["tick_id"], "running")
        return None


def _compare_and_write(session: tick_session.TickSession, path: str, expected: str | None, new: str) -> bool:
    """Write ``new`` to ``path`` only if its text still has the digest ``expected`` (None: the file is absent),
    under the writer's lock."""
    from ..core.files import update_file

    wrote = False

    def fn(current: str | None) -> str | None:
        nonlocal wrote
        if codec.text_digest(current) != expected:
            return current
        wrote = True
        return new

    update_file(session.deps.ports.state, path, fn)
    return wrote


def watch(session: tick_session.TickSession, ticker: Ticker) -> Any:
    """Relays the ticker's stop (cancellation) to the session's stop check, which the agent polls."""
    import threading

    done = threading.Event()

    def relay() -> None:
        while not done.wait(0.2):
            if ticker.stopped.is_set() and not ticker.shutdown.is_set():
                session.stopped.set()
                return
            if ticker.shutdown.is_set():
                session.stopped.set()
                return

    threading.Thread(target=relay, daemon=True, name="loop-port-stop").start()
    return done


@activity.defn(name="close_tick")
def close_tick(inp: CloseTickInput) -> RunTickOutput:
    """The tick is done: read the spine files as it left them, push a proposed branch, release the session."""
    ctx = context()
    session = session_of(inp.tick_id)
    try:
        with Ticker(lambda: None):
            return _close(ctx, session, inp)
    except (LoopError, OSError, subprocess.SubprocessError) as e:
        raise _fail(e) from None
    finally:
        tick_session.close(inp.tick_id)


def _close(ctx: Any, session: tick_session.TickSession, inp: CloseTickInput) -> RunTickOutput:
    t, out, root = inp.tick, dict(inp.result), session.root
    branches = []
    if out.get("branch") and out.get("outcome") == "fix-proposed":
        clones.push_branch(root, str(out["branch"]))
        branches.append(str(out["branch"]))
    escalation = None
    if out.get("outcome") == "escalated" and session.escalation_id is not None:
        local = session.escalation_id
        item, reason, title = _escalation_facts(session.runner.services, local)
        escalation = EscalationInfo(escalation_id=local, local_id=local, pattern=t.pattern, item=item,
                                    title=title, reason=reason, worker_queue=ctx.worker_queue)
    spine = [SpineFile(n, session.base[n], clones.read(root, n)) for n in session.spine_names]
    return RunTickOutput(result=out, base_commit=session.base_commit, spine=spine, escalation=escalation,
                         worker=ctx.identity, attempt=inp.generation, replayed=list(inp.replayed),
                         pushed_branches=branches, worker_queue=ctx.worker_queue)


@activity.defn(name="drop_tick")
def drop_tick(inp: DropTickInput) -> bool:
    """Release a session its workflow gave up on (the tick failed, or was re-opened on another worker)."""
    return tick_session.close(inp.tick_id, up_to=inp.generation) is not None


OPEN_ACTIVITIES = [open_tick]
SESSION_ACTIVITIES = [port_call, close_tick, drop_tick]
