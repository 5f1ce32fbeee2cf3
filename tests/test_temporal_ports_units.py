"""Pieces of the per-port path that need no server: ``state.update`` as read → fn → compare-and-write, the
worker's compare-and-write, and what a re-opened tick replays."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("temporalio")

from loop_runtime.core.effects import PortCall  # noqa: E402
from loop_runtime.errors import LoopError  # noqa: E402
from loop_runtime.temporal.codec import text_digest  # noqa: E402
from loop_runtime.temporal.port_workflow import CAS_TRIES, PortDriver  # noqa: E402


class FakeFile:
    """A state file another process appends to between our read and our write, ``races`` times."""

    def __init__(self, text: str | None, races: int) -> None:
        self.text, self.races, self.calls = text, races, []

    async def call(self, call: PortCall) -> Any:
        self.calls.append(call)
        if call.method == "read":
            return self.text
        _path, expected, new = call.args
        if self.races:
            self.races -= 1
            self.text = (self.text or "") + "other\n"
            return False
        if text_digest(self.text) != expected:
            return False
        self.text = new
        return True


def driver(fake: FakeFile) -> PortDriver:
    d = PortDriver(SimpleNamespace(stop_reason=None, phase=""), SimpleNamespace(), "t-1", "r")
    d._call = fake.call  # type: ignore[method-assign]
    return d


def test_an_update_applies_its_function_to_the_text_another_writer_left() -> None:
    fake = FakeFile("a\n", races=2)
    call = PortCall("state", "update", ("loop-run-log.md", lambda old: (old or "") + "ours\n"), {}, "t-1:7:state.update")
    assert asyncio.run(driver(fake).execute(call)) == "a\nother\nother\nours\n"
    assert fake.text == "a\nother\nother\nours\n"  # nobody's line was lost
    keys = [c.key for c in fake.calls]
    assert len(keys) == len(set(keys))  # every try has its own idempotency key
    assert [c.method for c in fake.calls] == ["read", "compare_and_write"] * 3


def test_an_update_that_changes_nothing_writes_nothing() -> None:
    fake = FakeFile("same", races=0)
    call = PortCall("state", "update", ("f", lambda old: old), {}, "k")
    assert asyncio.run(driver(fake).execute(call)) == "same"
    assert [c.method for c in fake.calls] == ["read"]


def test_an_update_that_never_holds_still_fails_as_a_loop_error() -> None:
    fake = FakeFile("", races=CAS_TRIES + 5)
    call = PortCall("state", "update", ("f", lambda old: (old or "") + "x"), {}, "k")
    with pytest.raises(LoopError):
        asyncio.run(driver(fake).execute(call))


def test_the_clock_is_the_workflows_and_a_kill_signal_answers_the_stop_check_without_an_activity() -> None:
    fake = FakeFile("", races=0)
    d = driver(fake)
    d.owner.stop_reason = "kill"
    assert asyncio.run(d.execute(PortCall("stop", "check", (), {}, "k"))) == "kill"
    assert fake.calls == []


def test_the_workers_compare_and_write_writes_only_over_the_expected_text(tmp_path: Path) -> None:
    from loop_runtime.adapters.state_files import FileStateWriter
    from loop_runtime.temporal.port_activities import _compare_and_write

    state = FileStateWriter(tmp_path)
    session = SimpleNamespace(deps=SimpleNamespace(ports=SimpleNamespace(state=state)))
    assert _compare_and_write(session, "STATE.md", None, "one\n") is True  # type: ignore[arg-type]
    assert _compare_and_write(session, "STATE.md", None, "two\n") is False  # type: ignore[arg-type]
    assert _compare_and_write(session, "STATE.md", text_digest("zero\n"), "two\n") is False  # type: ignore[arg-type]
    assert _compare_and_write(session, "STATE.md", text_digest("one\n"), "two\n") is True  # type: ignore[arg-type]
    assert (tmp_path / "STATE.md").read_text() == "two\n"


def test_a_reopened_tick_replays_only_implementers_whose_worktree_can_be_rebuilt() -> None:
    d = PortDriver(SimpleNamespace(stop_reason=None), SimpleNamespace(), "t-1", "r")
    d.agents = {"triage": {"status": "ok"}, "implementer:1": {"status": "ok"}, "verifier:1": {"status": "ok"},
                "implementer:2": {"status": "ok"}}
    d.workspaces = {"1": {"attempt": 1, "run_id": "w1"}, "2": {"attempt": 2, "run_id": "w2"}}
    d.diffs = {"w1": "diff --git a/x b/x\n"}  # attempt 2's diff was never taken (the worker died first)
    replay, patches = d._resume()
    assert set(replay) == {"triage", "implementer:1", "verifier:1", "workspace:1"}
    assert patches == {"1": {"run_id": "w1", "patch": "diff --git a/x b/x\n"}}


def test_a_session_is_released_only_up_to_its_generation() -> None:
    from loop_runtime.temporal import tick_session

    lock = threading.Lock()
    lock.acquire()
    s = tick_session.TickSession(
        tick_id="t-9", generation=2, root=Path("."), project_key="k", pattern="p", plan=None, spine_names=[],
        base={}, base_commit="", deps=None, execute=None, runner=SimpleNamespace(close=lambda: None), lock=lock,
        ttl_s=600)
    tick_session._SESSIONS["t-9"] = s
    assert tick_session.close("t-9", up_to=1) is None  # an older generation's drop never closes a newer session
    assert tick_session.get("t-9") is s
    assert tick_session.close("t-9", up_to=2) is s and not lock.locked()
    with pytest.raises(tick_session.SessionLost):
        tick_session.get("t-9")
