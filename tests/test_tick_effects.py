"""The tick is sans-IO: every side effect is a PortCall a driver performs, and its phase moves only by advance().

What a Temporal workflow will rely on: a tick driven through a recording executor shows every
effect on every port of ``TickDeps`` (and touches no adapter itself), and the same tick replayed
from the recorded results gives the same result without performing anything.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loop_runtime import BudgetBreaker, MemoryStateWriter, MockBackend, TickDeps, build_plan
from loop_runtime.adapters.clock import ManualClock
from loop_runtime.adapters.mock import MemoryWorkspace, load_scenario
from loop_runtime.core.effects import (
    ABSENT,
    DirectExecutor,
    PortCall,
    PortMissing,
    Recorder,
    Replayer,
    drive,
)
from loop_runtime.core.effects import ReplayDiverged
from loop_runtime.core.engine import PORT_NAMES, TickHooks, TickPorts
from loop_runtime.core.lifecycle import IllegalTransition
from loop_runtime.core.tick import Tick
from loop_runtime.errors import GithubRefused
from loop_runtime.adapters.project_files import load_registry
from loop_runtime.formats.registry import find_pattern
from loop_runtime import ports as p

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
CORE = Path(__file__).resolve().parent.parent / "src" / "loop_runtime" / "core"


class Guard:
    def snapshot(self) -> str:
        return "snap"

    def changes(self, before: Any) -> tuple[str, ...]:
        return ()

    def restore(self, before: Any) -> tuple[str, ...]:
        return ()


class Tests:
    def run(self, worktree: str) -> p.TestRun:
        return p.TestRun(command="pytest -q", exit_code=0, passed=True, output="1 passed")


class Journal:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def begin(self, **kw: Any) -> None:
        self.calls.append("begin")

    def record(self, tick_id: str, phase: str, data: Any, at: datetime) -> None:
        self.calls.append(phase)

    def finish(self, tick_id: str, **kw: Any) -> None:
        self.calls.append("finish")

    def escalate(self, **kw: Any) -> str:
        return "esc-1"

    def event(self, kind: str, payload: Any, at: datetime, **kw: Any) -> None:
        pass


class Notifier:
    def __init__(self) -> None:
        self.notes: list[p.Notification] = []

    def notify(self, note: p.Notification) -> None:
        self.notes.append(note)


class RefusingPublisher:
    """Branch protection says no: the tick escalates and mirrors the escalation on the issue."""

    comment_escalations = True

    def __init__(self) -> None:
        self.comments: list[int] = []

    def publish(self, request: Any) -> Any:
        raise GithubRefused("merge refused: branch protection", 405)

    def comment(self, number: int, body: str) -> str:
        self.comments.append(number)
        return f"https://example.invalid/issues/{number}#c1"


def scenario() -> dict[str, Any]:
    s = copy.deepcopy(load_scenario("default"))
    s["triage"]["items"][0]["id"] = "#7"  # an issue number: the escalation is mirrored there
    return s


def every_port_deps() -> tuple[TickDeps, dict[str, Any]]:
    """A tick at L3 that uses every port: act, test, verify, promote, commit, publish (refused) → escalate."""
    ws = MemoryWorkspace()
    seen: dict[str, Any] = {"leases": [], "released": [], "events": [], "notifier": Notifier(),
                            "publisher": RefusingPublisher(), "journal": Journal()}

    def lease(item: str) -> Any:
        seen["leases"].append(item)
        return lambda: seen["released"].append(item)

    deps = TickDeps(
        backend=MockBackend(scenario(), memory=ws), state=MemoryStateWriter({}), budget=BudgetBreaker(100_000),
        clock=ManualClock(T0), workspace=ws, tests=Tests(), guard=Guard(), journal=seen["journal"],
        notifier=seen["notifier"], publisher=seen["publisher"],
        observe=lambda: "CI is red on main", stop=lambda: None, remote_pause=lambda: (),
        lease=lease, promotion_ready=lambda diff: True,
        on_event=lambda kind, payload: seen["events"].append(kind),
        tick_id="daily-triage-abc123def456", run_id="2026-11-25T09:00:00.000Z",
    )
    return deps, seen


class Tripwire:
    """Stands where an adapter would: any use of it by the tick fails the test."""

    def __getattr__(self, attr: str) -> Any:
        raise AssertionError(f"the tick touched an adapter directly: .{attr}")

    def _trip(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the tick called a hook directly")

    # the hook ports' methods exist (``TickHooks`` takes the object as the port) but must never run
    observe = check = labels = take = release = ready = emit = _trip


def tripwire_deps(real: TickDeps) -> TickDeps:
    """The same settings as ``real``, with every adapter replaced by a tripwire (the tick sees no adapter)."""
    ports = TickPorts(**{f.name: Tripwire() if getattr(real.ports, f.name) is not None else None
                         for f in dataclasses.fields(TickPorts)})
    hooks = TickHooks(**{f.name: Tripwire() if getattr(real.hooks, f.name) is not None else None
                         for f in dataclasses.fields(TickHooks)})
    return TickDeps(ports=ports, hooks=hooks, policy=real.policy, options=real.options)


def plan(level: str = "L3") -> Any:
    return build_plan(find_pattern(load_registry(Path("/nonexistent")), "daily-triage"), level)


def test_every_side_effect_of_a_tick_is_a_port_call_on_every_port() -> None:
    """Driven through a recorder, a whole tick touches no adapter itself; its effects cover every port."""
    deps, seen = every_port_deps()
    recorder = Recorder(DirectExecutor(deps))
    result = asyncio.run(drive(Tick(plan(), tripwire_deps(deps), "L3").run(), recorder))
    assert (result.outcome, result.escalation_id) == ("escalated", "esc-1")
    assert "merge-refused" in (result.note or "")
    ports = {c.port for c in recorder.calls}
    assert ports == set(PORT_NAMES), set(PORT_NAMES) ^ ports
    names = {c.name for c in recorder.calls}
    assert {"backend.run", "budget.reserve", "budget.settle", "budget.status", "state.read", "state.update",
            "workspace.prepare", "workspace.diff", "workspace.finish", "tests.run", "guard.snapshot",
            "guard.changes", "journal.begin", "journal.record", "journal.escalate", "journal.finish",
            "notifier.notify", "publisher.publish", "publisher.comment", "observer.observe", "stop.check",
            "remote_pause.labels", "lease.take", "lease.release", "promotion.ready", "events.emit",
            "clock.now"} <= names
    # what the adapters saw is what the recorder says they were asked
    assert seen["leases"] == ["#7"] and seen["released"] == ["#7"]
    assert seen["publisher"].comments == [7]
    assert [n.kind for n in seen["notifier"].notes] == ["escalation"]
    # the tick's own events are PortCalls; the backend streams its own (agent.*) while it runs
    tick_events = [k for k in seen["events"] if k.startswith("tick.")]
    assert sum(c.name == "events.emit" for c in recorder.calls) == len(tick_events) > 0
    assert any(k.startswith("agent.") for k in seen["events"])
    assert sum(c.name == "backend.run" for c in recorder.calls) == 3


def test_port_call_keys_are_deterministic_and_agent_calls_keyed_by_their_phase() -> None:
    deps, _ = every_port_deps()
    recorder = Recorder(DirectExecutor(deps))
    asyncio.run(drive(Tick(plan(), tripwire_deps(deps), "L3").run(), recorder))
    keys = [c.key for c in recorder.calls]
    assert len(keys) == len(set(keys))  # unique within the tick
    runs = [c.key for c in recorder.calls if c.name == "backend.run"]
    tick_id = deps.options.tick_id
    assert runs == [f"{tick_id}:agent:{k}:backend.run" for k in ("triage", "implementer:1", "verifier:1")]
    others = [c for c in recorder.calls if c.port != "backend" and not c.port == "budget"]
    assert all(re.fullmatch(rf"{tick_id}:\d+:{c.port}\.{c.method}", c.key) for c in others)
    # the same tick, again, asks the same effects under the same keys
    deps2, _ = every_port_deps()
    again = Recorder(DirectExecutor(deps2))
    asyncio.run(drive(Tick(plan(), tripwire_deps(deps2), "L3").run(), again))
    assert [c.key for c in again.calls] == keys


def test_a_tick_replays_identically_from_its_recorded_results() -> None:
    """What a durable driver does after a crash: no adapter runs, and the result is the same."""
    deps, seen = every_port_deps()
    recorder = Recorder(DirectExecutor(deps))
    first = asyncio.run(drive(Tick(plan(), tripwire_deps(deps), "L3").run(), recorder))
    replayer = Replayer(recorder.outcomes)
    again = asyncio.run(drive(Tick(plan(), tripwire_deps(deps), "L3").run(), replayer))
    assert again.as_json() == first.as_json()
    assert replayer.position == len(recorder.outcomes)  # every recorded effect asked for, in order
    assert len(seen["publisher"].comments) == 1  # nothing was performed again


def test_a_replay_that_asks_for_another_effect_is_refused() -> None:
    deps, _ = every_port_deps()
    recorder = Recorder(DirectExecutor(deps))
    asyncio.run(drive(Tick(plan(), tripwire_deps(deps), "L3").run(), recorder))
    other, _ = every_port_deps()
    other = dataclasses.replace(other, observe=None)  # one effect fewer: the tick diverges from the history
    with pytest.raises(ReplayDiverged):
        asyncio.run(drive(Tick(plan(), tripwire_deps(other), "L3").run(), Replayer(recorder.outcomes)))


def test_a_failed_effect_is_thrown_back_into_the_tick_where_it_was_awaited() -> None:
    """The backend fails → the tick settles the reservation in full (fail closed), as when called in place."""
    from loop_runtime.errors import BackendError

    deps, _ = every_port_deps()
    direct = DirectExecutor(deps)

    def failing(call: PortCall) -> Any:
        if call.name == "backend.run":
            raise BackendError("provider 500")
        return direct(call)

    recorder = Recorder(failing)
    with pytest.raises(BackendError):
        asyncio.run(drive(Tick(plan(), tripwire_deps(deps), "L3").run(), recorder))
    names = [c.name for c in recorder.calls]
    run = names.index("backend.run")
    assert "budget.settle" in names[run:]
    settle = next(c for c in recorder.calls[run:] if c.name == "budget.settle")
    assert settle.args[1] == settle.args[0].amount  # the whole reservation
    assert deps.ports.budget.status(T0).spent == settle.args[0].amount


def test_awaiting_anything_but_a_port_call_in_a_tick_is_refused() -> None:
    async def sneaky() -> None:
        await asyncio.sleep(0)

    with pytest.raises(TypeError, match="PortCall"):
        asyncio.run(drive(sneaky(), lambda call: None))


def test_optional_methods_yield_their_default_and_required_ones_fail() -> None:
    deps, _ = every_port_deps()
    direct = DirectExecutor(deps)
    assert direct(PortCall("workspace", "integrity", ("h",), default=())) == ()
    assert direct(PortCall("tests", "baseline", ("abc",), default=None)) is None
    assert direct(PortCall("workspace", "no_such", default=ABSENT)) is ABSENT
    with pytest.raises(PortMissing, match="workspace.no_such"):
        direct(PortCall("workspace", "no_such"))
    bare = TickDeps(backend=MockBackend(), state=MemoryStateWriter({}), budget=BudgetBreaker(None))
    with pytest.raises(PortMissing, match="guard.snapshot"):
        DirectExecutor(bare)(PortCall("guard", "snapshot"))


def test_the_port_proxy_knows_only_the_ports_of_tick_deps() -> None:
    deps, _ = every_port_deps()
    t = Tick(plan(), deps, "L3")
    call = t.ports.state.read("STATE.md")
    assert isinstance(call, PortCall) and (call.port, call.method, call.args) == ("state", "read", ("STATE.md",))
    with pytest.raises(AttributeError, match="no port 'stat'"):
        t.ports.stat  # noqa: B018


# -- the phase


def test_the_phase_is_read_only() -> None:
    deps, _ = every_port_deps()
    t = Tick(plan(), deps, "L3")
    assert t.phase == "idle"
    with pytest.raises(AttributeError):
        t.phase = "done"  # type: ignore[misc]
    with pytest.raises(IllegalTransition):
        t._advance("committed")  # idle → committed is no transition of the lifecycle
    assert t.phase == "idle"


def test_every_tick_phase_is_a_legal_transition_and_ends_in_a_final_state() -> None:
    """The act path's escalations (from triaging, committed …) are transitions of the table, not bypasses."""
    deps, _ = every_port_deps()
    t = Tick(plan(), tripwire_deps(deps), "L3")
    asyncio.run(drive(t.run(), DirectExecutor(deps)))
    assert t.phase == "done"


ASSIGNS_PHASE = re.compile(r"\.(_?phase)\s*=[^=]"  # t.phase = …, t._phase = …
                           r"|setattr(?:__)?\([^)]*[\'\"]_?phase[\'\"]"  # (object.__)setattr(t, "_phase", …)
                           r"|\[[\'\"]_?phase[\'\"]\]\s*=")  # vars(t)["_phase"] = …


def test_nothing_in_core_assigns_a_phase_but_advance() -> None:
    """A source check: the only assignments to a tick's phase are its start and ``Tick._advance``."""
    found = set()
    for path in CORE.glob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if ASSIGNS_PHASE.search(line):
                found.add((path.name, line.strip()))
    assert found == {("tick.py", 'self._phase = "idle"'), ("tick.py", "self._phase = advance(self._phase, dst)")}


# -- TickDeps


def test_tick_deps_are_grouped_and_still_built_and_read_flat() -> None:
    deps, _ = every_port_deps()
    assert deps.journal is deps.ports.journal and deps.secrets == deps.policy.secrets == ()
    assert deps.tick_id == deps.options.tick_id
    assert deps.stop() is None and deps.hooks.stop.check() is None  # a bare callable, wrapped as a port
    assert deps.observe() == deps.hooks.observer.observe() == "CI is red on main"
    moved = dataclasses.replace(deps, agent_timeout_s=5.0, journal=None)
    assert moved.options.agent_timeout_s == 5.0 and moved.ports.journal is None
    assert moved.ports.backend is deps.ports.backend and moved.hooks == deps.hooks
    assert "journal" not in moved.wired() and "journal" in deps.wired()
    with pytest.raises(TypeError, match="unexpected keyword argument 'jurnal'"):
        TickDeps(backend=MockBackend(), state=MemoryStateWriter({}), budget=BudgetBreaker(None), jurnal=None)
    with pytest.raises(TypeError):
        TickDeps(state=MemoryStateWriter({}), budget=BudgetBreaker(None))  # the backend is required


def test_a_lease_callable_becomes_take_and_release() -> None:
    from loop_runtime.core.hooks import as_hook

    released: list[str] = []
    lease = as_hook("lease", lambda item: (lambda: released.append(item)) if item != "none" else None)
    assert lease.take("#1") is True and lease.take("none") is False
    lease.release("none")  # nothing held: nothing happens
    lease.release("#1")
    lease.release("#1")  # released once
    assert released == ["#1"]
    with pytest.raises(TypeError, match="lease"):
        as_hook("lease", 42)


def test_a_failed_effect_replays_as_the_same_failure() -> None:
    """Discovery could not look (an exception in the history): the replay gets it thrown in the same place."""
    from loop_runtime.errors import DiscoveryUnavailable

    deps, _ = every_port_deps()

    def blind() -> str:
        raise DiscoveryUnavailable("GitHub answered 502 past the deadline")

    deps = dataclasses.replace(deps, observe=blind)
    recorder = Recorder(DirectExecutor(deps))
    first = asyncio.run(drive(Tick(plan(), tripwire_deps(deps), "L3").run(), recorder))
    assert first.outcome == "report-only"
    assert [o.call.name for o in recorder.outcomes if o.error] == ["observer.observe"]
    again = asyncio.run(drive(Tick(plan(), tripwire_deps(deps), "L3").run(), Replayer(recorder.outcomes)))
    assert again.as_json() == first.as_json()


def test_a_tick_built_from_its_spec_alone_runs_the_same() -> None:
    """``TickSpec`` (policy, options, wired port names) is all a tick reads: what a workflow builds it from."""
    deps, _ = every_port_deps()
    spec = deps.spec()
    assert spec.wired() == frozenset(PORT_NAMES)
    first = asyncio.run(drive(Tick(plan(), spec, "L3").run(), DirectExecutor(deps)))
    deps2, _ = every_port_deps()
    second = asyncio.run(drive(Tick(plan(), tripwire_deps(deps2), "L3").run(), DirectExecutor(deps2)))
    assert first.as_json() == second.as_json()


def test_hooks_given_as_a_group_are_wrapped_too() -> None:
    hooks = TickHooks(observer=lambda: "seen", stop=lambda: "kill")
    assert hooks.observer.observe() == "seen" and hooks.stop.check() == "kill"
    assert TickHooks(observer=hooks.observer).observer is hooks.observer  # a port is used as it is


# -- the shared rules


def test_without_a_worktree_an_l2_tick_reports_for_the_one_reason_status_gives() -> None:
    from loop_runtime.core.levels import NO_WORKTREE

    deps = TickDeps(backend=MockBackend(load_scenario("default")), state=MemoryStateWriter({}),
                    budget=BudgetBreaker(None), clock=ManualClock(T0))
    result = asyncio.run(drive(Tick(plan("L2"), deps, "L2").run(), DirectExecutor(deps)))
    assert (result.effective_level, result.level_reason, result.outcome) == ("L1", NO_WORKTREE, "report-only")


class BegunJournal(Journal):
    """A journal that knows the runs this runtime began today (the store's ticks)."""

    def __init__(self, begun: list[str]) -> None:
        super().__init__()
        self.begun = begun

    def run_ids_on_day(self, pattern: str, day: Any) -> list[str]:
        return list(self.begun)


def test_the_runs_cap_counts_begun_runs_with_the_logged_ones_but_never_the_tick_itself() -> None:
    p = dataclasses.replace(plan("L1"), max_runs_per_day=2)
    run_id = "2026-11-25T09:00:00.000Z"

    def tick(begun: list[str]) -> Any:
        deps = TickDeps(backend=MockBackend(load_scenario("noop")), state=MemoryStateWriter({}),
                        budget=BudgetBreaker(None), clock=ManualClock(T0), journal=BegunJournal(begun), run_id=run_id)
        return asyncio.run(drive(Tick(p, deps, "L1").run(), DirectExecutor(deps)))

    assert tick([run_id, "2026-11-25T08:00:00.000Z"]).outcome == "no-op"  # itself + one other: 1 of 2
    capped = tick(["2026-11-25T07:00:00.000Z", "2026-11-25T08:00:00.000Z"])
    assert (capped.outcome, capped.halt_reason) == ("halted", "runs-cap")
