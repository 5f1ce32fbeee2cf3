"""Batches on the per-port path, without a server: the worker runs the tick ahead through its cheap calls
(``port_batch``) and the workflow's tick is answered from that record, call by call, checked key by key.

The property that matters: the workflow's tick gets exactly what it would get if each call were its own
activity (every answer through the codec), the worker's run of the tick takes the same branches, a retried
batch performs nothing twice, and a parting of the two runs is never taken as an answer."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("temporalio")

from loop_runtime.core.effects import REQUIRED, PortCall, drive  # noqa: E402
from loop_runtime.errors import LoopError  # noqa: E402
from loop_runtime.temporal import codec  # noqa: E402
from loop_runtime.temporal.port_batch import (  # noqa: E402
    MAX_BATCH_BYTES,
    Stepper,
    heads_activity,
    run_batch,
)
from loop_runtime.temporal.port_types import BatchStep, PortBatchInput, PortBatchOutput  # noqa: E402
from loop_runtime.temporal.port_workflow import Diverged, PortDriver  # noqa: E402

#: (port, method) the scripted tick calls; observer/tests head an activity of their own
CHEAP = [("journal", "record"), ("state", "read"), ("budget", "status"), ("events", "emit"), ("clock", "now")]
HEAVY = [("observer", "observe"), ("tests", "run"), ("workspace", "diff")]


class Ports:
    """The worker's adapters: answer each call from the script, counting what was performed."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.performed: list[str] = []

    def __call__(self, call: PortCall) -> Any:
        self.performed.append(call.key)
        answer = self.answers.get(call.key)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def session(ports: Ports) -> SimpleNamespace:
    kept: dict[str, Any] = {}

    def keep(obj: Any) -> str:
        ref = f"1:{len(kept) + 1}"
        kept[ref] = obj
        return ref

    return SimpleNamespace(execute=ports, kept=kept, keep=keep, stopped=threading.Event(), halt={"reason": "kill"},
                           stepper=None, escalation_id=None, deps=SimpleNamespace(options=SimpleNamespace(env={})))


def script_tick(script: list[tuple[str, str, str]], default: Any = REQUIRED):
    """A tick that awaits each scripted call in turn and keeps what it got (its transcript)."""

    async def tick() -> list[Any]:
        seen: list[Any] = []
        for port, method, key in script:
            try:
                seen.append(("ok", await PortCall(port, method, (key,), {}, key, default)))
            except LoopError as e:  # the tick's own handler: it goes on
                seen.append(("error", type(e).__name__, str(e)))
        return seen

    return tick()


def as_activities(script: list[tuple[str, str, str]], answers: dict[str, Any]) -> list[Any]:
    """The reference: each call performed alone and its answer sent through the codec (one activity per call)."""
    ports = Ports(answers)

    def execute(call: PortCall) -> Any:
        try:
            value = ports(call)
        except Exception as e:  # noqa: BLE001
            raise codec.decode_error(codec.encode_error(e)) from None
        return codec.decode(codec.encode(value))

    return asyncio.run(drive(script_tick(script), execute))


def batched(script: list[tuple[str, str, str]], answers: dict[str, Any]) -> tuple[list[Any], list[PortBatchOutput],
                                                                                 Ports]:
    """The workflow's tick answered from batches the worker ran ahead (``run_batch`` on a live session)."""
    ports = Ports(answers)
    s = session(ports)
    s.stepper = Stepper(script_tick(script))
    outputs: list[PortBatchOutput] = []
    d = PortDriver(SimpleNamespace(stop_reason=None, phase=""), SimpleNamespace(), "t", "r")
    d.batching = True

    async def batch(call: PortCall) -> PortBatchOutput:
        out = run_batch(s, PortBatchInput(tick_id="t", key=f"{call.key}:batch", head=call.name))  # type: ignore[arg-type]
        outputs.append(out)
        return out

    d._batch = batch  # type: ignore[method-assign]
    return asyncio.run(drive(script_tick(script), d.execute)), outputs, ports


calls = st.lists(st.tuples(st.sampled_from(CHEAP + HEAVY), st.sampled_from(["text", "err", "none", "tuple"])),
                 min_size=1, max_size=25)


def build(spec: list[tuple[tuple[str, str], str]]) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    script, answers = [], {}
    for i, ((port, method), kind) in enumerate(spec):
        key = f"t:{i + 1}:{port}.{method}"
        script.append((port, method, key))
        answers[key] = {"text": f"answer {i}", "err": OSError(f"disk {i}"), "none": None,
                        "tuple": (i, "x", {"k": [i]})}[kind]
    return script, answers


@settings(max_examples=60, deadline=None)
@given(calls)
def test_the_workflows_tick_gets_from_batches_exactly_what_one_activity_per_call_gives(spec: Any) -> None:
    script, answers = build(spec)
    want = as_activities(script, answers)
    got, outputs, ports = batched(script, answers)
    assert got == want
    assert ports.performed == [k for _p, _m, k in script]  # every call performed once, in order
    for out in outputs:  # a batch runs up to, never into, the next heavy call
        assert not any(heads_activity(*s.name.split(".")) for s in out.steps[1:])
    heavy = sum(1 for p, m, _k in script[1:] if heads_activity(p, m))
    assert len(outputs) == 1 + heavy


def test_a_ports_error_reaches_both_runs_of_the_tick_as_the_workflow_rebuilds_it() -> None:
    script = [("state", "read", "t:1:state.read"), ("journal", "record", "t:2:journal.record")]
    got, [out], _ = batched(script, {"t:1:state.read": OSError("disk full"), "t:2:journal.record": None})
    assert got[0] == ("error", "PortCallError", "OSError: disk full")  # not an OSError in one run only
    assert out.steps[0].error == codec.encode_error(OSError("disk full")) and out.ended


def test_a_retried_batch_returns_its_record_and_performs_nothing_again() -> None:
    script = [("clock", "now", "t:1:clock.now"), ("journal", "record", "t:2:journal.record"),
              ("observer", "observe", "t:3:observer.observe"), ("journal", "record", "t:4:journal.record")]
    ports = Ports({"t:1:clock.now": "now", "t:3:observer.observe": ("item",)})
    s = session(ports)
    s.stepper = Stepper(script_tick(script))
    first = run_batch(s, PortBatchInput(tick_id="t", key="b1", head="clock.now"))  # type: ignore[arg-type]
    again = run_batch(s, PortBatchInput(tick_id="t", key="b1", head="clock.now"))  # type: ignore[arg-type]
    assert first == again and [st.name for st in first.steps] == ["clock.now", "journal.record"]
    assert ports.performed == ["t:1:clock.now", "t:2:journal.record"]
    second = run_batch(s, PortBatchInput(tick_id="t", key="b2", head="observer.observe"))  # type: ignore[arg-type]
    assert [st.key for st in second.steps] == ["t:3:observer.observe", "t:4:journal.record"] and second.ended


def test_a_batch_is_cut_at_its_size_limit_between_two_calls_never_inside_one() -> None:
    n = 12
    script = [("state", "read", f"t:{i}:state.read") for i in range(n)]
    answers = {k: "x" * (MAX_BATCH_BYTES // 3) for _p, _m, k in script}
    got, outputs, ports = batched(script, answers)
    assert len(outputs) > 1 and all(len(o.steps) >= 1 for o in outputs)
    assert [s.key for o in outputs for s in o.steps] == [k for _p, _m, k in script]
    assert got == as_activities(script, answers) and len(ports.performed) == n


def test_the_kill_signal_the_workflow_got_is_what_the_workers_stop_check_says() -> None:
    s = session(Ports({}))

    def stop_check(call: PortCall) -> Any:
        return s.halt["reason"] if s.stopped.is_set() else None

    s.execute = stop_check
    s.stepper = Stepper(script_tick([("stop", "check", "t:1:stop.check")]))
    out = run_batch(s, PortBatchInput(tick_id="t", key="b", head="stop.check", stop="kill-all"))  # type: ignore[arg-type]
    assert codec.decode(out.steps[0].result) == "kill-all" and s.stopped.is_set()


def test_an_answer_for_another_call_is_a_parting_the_tick_cannot_swallow() -> None:
    """The worker's record names another call (another key): the workflow's tick is not answered from it; the
    tick is re-opened (``Diverged`` is a ``WorkerLost``: a BaseException, past the tick's ``except Exception``)."""
    d = PortDriver(SimpleNamespace(stop_reason=None, phase=""), SimpleNamespace(), "t", "r")
    d.batching = True

    async def batch(call: PortCall) -> PortBatchOutput:
        return PortBatchOutput(steps=[BatchStep(key="t:9:state.read", name="state.read", result="theirs")])

    d._batch = batch  # type: ignore[method-assign]

    async def tick() -> Any:
        try:
            return await PortCall("state", "read", ("f",), {}, "t:1:state.read")
        except Exception:  # noqa: BLE001 — what a careless tick would do
            return "swallowed"

    with pytest.raises(Diverged):
        asyncio.run(drive(tick(), d.execute))
    assert d.lost  # no further call of this generation is answered


def test_a_worker_tick_that_ended_answers_no_more_calls() -> None:
    d = PortDriver(SimpleNamespace(stop_reason=None, phase=""), SimpleNamespace(), "t", "r")
    d.batching = True

    async def batch(call: PortCall) -> PortBatchOutput:
        return PortBatchOutput(steps=[], ended=True)

    d._batch = batch  # type: ignore[method-assign]
    with pytest.raises(Diverged):
        asyncio.run(drive(script_tick([("journal", "record", "t:1:journal.record")]), d.execute))


def test_a_session_that_never_got_a_call_gives_the_worker_back_sooner_than_an_idle_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same tick opened on two workers (an ``open_tick`` answer lost, retried elsewhere): the workflow
    talks to one; the other's session gets no call and is closed after ``UNUSED_TTL_S``, not ``IDLE_TTL_S``."""
    from pathlib import Path

    from loop_runtime.temporal import tick_session

    def make(tid: str) -> Any:
        s = tick_session.TickSession(
            tick_id=tid, generation=1, root=Path("."), project_key="k", pattern="p", plan=None, spine_names=[],
            base={}, base_commit="", deps=None, execute=None, runner=SimpleNamespace(close=lambda: None),
            lock=threading.Lock(), ttl_s=tick_session.IDLE_TTL_S)
        tick_session._SESSIONS[tid] = s
        return s

    unused, used = make("t-unused"), make("t-used")
    tick_session.get("t-used")
    clock = [unused.used + tick_session.UNUSED_TTL_S + 1]
    monkeypatch.setattr(tick_session.time, "monotonic", lambda: clock[0])
    used.used = clock[0] - tick_session.UNUSED_TTL_S - 1  # as idle as the unused one
    try:
        tick_session.expire()
        assert "t-unused" not in tick_session._SESSIONS and tick_session._SESSIONS.get("t-used") is used
        assert tick_session.count() >= 1
    finally:
        tick_session.close("t-used")
        tick_session.close("t-unused")


@pytest.mark.parametrize("poison", [
    {"$dc": "os:system", "fields": {}},  # a class outside loop_runtime's value modules
    {"$dc": "loop_runtime.adapters.store:Store", "fields": {}},  # ours, but an adapter (I/O)
    {"$error": "builtins:SystemExit", "message": "x"},
    {"$opaque": "1:1", "extra": 1},  # a malformed tag
])
def test_a_poisoned_answer_in_a_batch_builds_nothing_and_fails_the_tick(poison: Any) -> None:
    """What a batch carries is decoded by the strict codec, as a single call's answer is: a tree naming a class
    the codec does not allow is refused (``CodecError`` out of the tick: the workflow fails it, never retries)."""
    d = PortDriver(SimpleNamespace(stop_reason=None, phase=""), SimpleNamespace(), "t", "r")
    d.batching = True

    async def batch(call: PortCall) -> PortBatchOutput:
        return PortBatchOutput(steps=[BatchStep(key=call.key, name=call.name, result=poison)])

    d._batch = batch  # type: ignore[method-assign]
    with pytest.raises(codec.CodecError):
        asyncio.run(drive(script_tick([("state", "read", "t:1:state.read")]), d.execute))


def test_a_session_closed_mid_tick_ends_the_workers_run_of_it_and_a_new_session_starts_afresh() -> None:
    """A dropped or re-opened tick's session goes with its half-run tick: nothing of it is reused by the
    session that opens the tick again (which builds its own run from the start)."""
    from pathlib import Path

    from loop_runtime.temporal import tick_session

    script = [("journal", "record", "t:1:journal.record"), ("observer", "observe", "t:2:observer.observe")]
    s = tick_session.TickSession(
        tick_id="t-mid", generation=1, root=Path("."), project_key="k", pattern="p", plan=None, spine_names=[],
        base={}, base_commit="", deps=None, execute=Ports({}), runner=SimpleNamespace(close=lambda: None),
        lock=threading.Lock(), ttl_s=600)
    s.stepper = Stepper(script_tick(script))
    tick_session._SESSIONS["t-mid"] = s
    out = run_batch(s, PortBatchInput(tick_id="t-mid", key="b1", head="journal.record"))
    assert not out.ended and s.stepper.pending.key == "t:2:observer.observe"
    coro = s.stepper.coro
    assert tick_session.close("t-mid") is s
    assert coro.cr_frame is None  # the half-run tick is closed, not left to the garbage collector
    with pytest.raises(tick_session.SessionLost):
        tick_session.get("t-mid")
