"""The per-port path on a real Temporal dev server: the core's tick runs in the workflow, every port call is
one activity on the worker that opened the tick (issue 16, item 4)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.support.gitrepo import git
from tests.support.temporal import arun, client_for, run_log_entries, show, wait_for
from tests.test_act_path import FIXED
from tests.test_temporal import (  # noqa: F401 — fixtures
    kill_a_running_agent,
    ACT,
    budget,
    normal,
    project,
    queue,
    result_of,
    scenario,
    start_tick,
    temporal_server,
    tick_input,
    workers,
)

temporalio = pytest.importorskip("temporalio")

PER_PORT = {"LOOP_RUNTIME_TEMPORAL_PER_PORT": "1"}


def history_activities(addr: str, wid: str) -> list[tuple[str, str]]:
    """(activity type, port call) of every activity the tick workflow scheduled, in order (all its runs): a
    ``port_call``'s call, a ``port_batch``'s head (the call it was scheduled for)."""
    return [(name, call) for name, call, _steps in _activities(addr, wid)]


def performed_calls(addr: str, wid: str) -> list[str]:
    """Every port call the worker performed for the tick, in order: each ``port_call``, and every call of each
    ``port_batch`` (from its recorded output; a batch that never completed — its worker died — by its head)."""
    out: list[str] = []
    for name, call, steps in _activities(addr, wid):
        if name == "port_call":
            out.append(call)
        elif name == "port_batch":
            out.extend(steps if steps is not None else [call])
    return out


def _activities(addr: str, wid: str) -> list[tuple[str, str, list[str] | None]]:
    from temporalio.api.enums.v1 import EventType

    from loop_runtime.temporal.port_types import PortBatchInput, PortBatchOutput, PortCallInput

    async def go() -> list[tuple[str, str, list[str] | None]]:
        client = await client_for(addr)
        out: list[tuple[str, str, list[str] | None]] = []
        index: dict[int, int] = {}
        handle = client.get_workflow_handle(wid)
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                attrs = event.activity_task_completed_event_attributes
                at = index.get(attrs.scheduled_event_id)
                if at is not None and out[at][0] == "port_batch":
                    [done] = await client.data_converter.decode(attrs.result.payloads, [PortBatchOutput])
                    out[at] = (out[at][0], out[at][1], [s.name for s in done.steps])
                continue
            if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                continue
            attrs = event.activity_task_scheduled_event_attributes
            name = attrs.activity_type.name
            call = ""
            if name == "port_call":
                [payload] = await client.data_converter.decode(attrs.input.payloads, [PortCallInput])
                call = f"{payload.port}.{payload.method}"
            elif name == "port_batch":
                [batch] = await client.data_converter.decode(attrs.input.payloads, [PortBatchInput])
                call = batch.head
            index[event.event_id] = len(out)
            out.append((name, call, None))
        return out

    return arun(go())


def test_a_scheduled_per_port_tick_writes_the_same_state_file_and_run_log_as_the_embedded_runtime(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """A schedule synced with the per-port path on: the tick's state machine runs in the workflow, the state
    file and run log it pushes are the bytes `loop-runtime run` writes (but for times), and the history has one
    activity per heavy effect of the tick (discovery, the agent) between `open_tick` and `close_tick`, the cheap
    calls that follow each one performed in the same activity (`port_batch`): a handful of activities, not one
    per journal record."""
    addr = temporal_server.address
    bare, checkout = project(tmp_path, addr, queue)
    sync = run_cli("schedule", "sync", "--json", cwd=checkout, env=PER_PORT)
    assert sync.returncode == 0, sync.stderr
    doc = json.loads(sync.stdout)
    workers("w1")

    async def trigger() -> None:
        client = await client_for(addr)
        await client.get_schedule_handle(f"loop-{doc['projectKey']}-ci-sweeper").trigger()

    arun(trigger())
    wait_for(lambda: run_log_entries(show(bare, "loop-run-log.md")), 180, what="the pushed run log")

    embedded = tmp_path / "embedded" / "origin"
    subprocess.run(["git", "clone", "-q", str(bare), str(embedded)], check=True)
    git(embedded, "reset", "-q", "--hard", "HEAD~1")
    ran = run_cli("run", "ci-sweeper", cwd=embedded)
    assert ran.returncode == 0, ran.stderr
    for rel in ("ci-sweeper-state.md", "loop-run-log.md"):
        assert normal(show(bare, rel)) == normal((embedded / rel).read_text()), rel
    [entry] = run_log_entries(show(bare, "loop-run-log.md"))
    assert entry["outcome"] == "report-only" and entry["pattern"] == "ci-sweeper"

    wid = _tick_workflow_id(addr, doc["projectKey"])
    acts = wait_for(lambda: _finished(addr, wid) and history_activities(addr, wid), 60, what="the history")
    names = [a for a, _ in acts]
    heads = [c for a, c in acts if a in ("port_call", "port_batch")]
    calls = performed_calls(addr, wid)
    assert names[0] == "open_tick" and "close_tick" in names and "run_tick" not in names
    assert names.index("close_tick") == len(heads) + 1  # every effect between open and close is a port activity
    for want in ("state.read", "budget.status", "observer.observe", "backend.run", "budget.reserve",
                 "budget.settle", "journal.begin", "journal.record", "journal.finish", "state.update"):
        assert want in calls, (want, sorted(set(calls)))
    assert "observer.observe" in heads and "backend.run" in heads  # discovery and the agent: each its own activity
    assert "clock.now" not in heads[1:] and "journal.record" not in heads  # bookkeeping rides along
    assert len(heads) <= 4 < len(calls)  # the first calls, discovery, the triage agent: not one per call
    assert calls.count("backend.run") == 1  # triage only (L1: report)
    _replays(addr, wid)


def _tick_workflow_id(addr: str, key: str) -> str:
    async def go() -> str:
        client = await client_for(addr)
        async for wf in client.list_workflows("WorkflowType = 'LoopTick'"):
            if wf.id.startswith(f"loop-tick-{key}-"):
                return wf.id
        raise AssertionError("no tick workflow found")

    return arun(go())


def _history_length(addr: str, wid: str) -> int:
    async def go() -> int:
        client = await client_for(addr)
        return sum([1 async for _ in client.get_workflow_handle(wid).fetch_history_events()])

    return arun(go())


def _finished(addr: str, wid: str) -> bool:
    async def go() -> bool:
        client = await client_for(addr)
        desc = await client.get_workflow_handle(wid).describe()
        return desc.status is not None and desc.status.name != "RUNNING"

    return arun(go())


def _replays(addr: str, wid: str) -> None:
    """The workflow code is deterministic: its history replays in the sandbox without a mismatch."""
    from temporalio.worker import Replayer

    from loop_runtime.temporal.worker import workflow_classes, workflow_runner

    async def go() -> None:
        client = await client_for(addr)
        history = await client.get_workflow_handle(wid).fetch_history()
        await Replayer(workflows=workflow_classes(), workflow_runner=workflow_runner()).replay_workflow(history)

    arun(go())


def test_an_act_tick_on_the_per_port_path_proposes_the_fix_and_every_effect_is_an_activity(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """L2: discovery, triage, the implementer in a worktree on the worker, the diff gates, tests, the verifier
    and the commit — each its own activity — and the proposed branch is pushed."""
    addr = temporal_server.address
    bare, _checkout = project(tmp_path, addr, queue, patterns='[patterns.ci-sweeper]\nlevel = "L2"\n')
    doc = {"triage": ACT, "implementer": [{"files": {"calc.py": FIXED}, "tokens": 3000}],
           "verifier": [{"verdict": "APPROVE", "tokens": 1000}]}
    inp = tick_input(bare, scenario=scenario(tmp_path, "act", doc), level="L2", per_port=True)
    workers("w1")
    arun(start_tick(addr, queue, inp, "tick-act"))
    summary = result_of(addr, "tick-act")
    assert summary.outcome == "fix-proposed", summary
    calls = performed_calls(addr, "tick-act")
    heads = [c for a, c in history_activities(addr, "tick-act") if a in ("port_call", "port_batch")]
    assert calls.count("backend.run") == 3 == heads.count("backend.run")  # triage, implementer, verifier
    for want in ("workspace.prepare", "workspace.diff", "tests.run", "guard.snapshot", "workspace.finish"):
        assert want in calls and want in heads, (want, sorted(set(calls)), heads)  # each its own activity
    branches = git(bare, "for-each-ref", "refs/heads/loop/", "--format=%(refname:short)").split()
    assert len(branches) == 1 and show(bare, "calc.py", branches[0]) == FIXED
    [entry] = run_log_entries(show(bare, "loop-run-log.md"))
    assert entry["outcome"] == "fix-proposed"
    st = budget(addr, f"{inp.project_key}/ci-sweeper")
    assert sorted(st.settled.values()) == [1000, 1000, 3000] and not st.open
    _replays(addr, "tick-act")
    print(f"an L2 tick: {len(calls)} port calls, {_history_length(addr, 'tick-act')} history events")


def test_the_kill_signal_stops_a_running_agent_on_the_per_port_path(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """`loop-runtime kill` signals the tick; the worker running the `backend.run` batch is told (`port_stop`), its
    stop check says "kill", the agent stops (well before its 120 s), and the tick records the halt."""
    summary, stopped_in, _done_in, bare = kill_a_running_agent(temporal_server.address, queue, workers, tmp_path,
                                                                per_port=True)
    assert summary.outcome == "halted" and "kill" in summary.note, summary
    assert summary.attempts == 1  # told to stop (``port_stop``), the worker's tick halted and said so: no re-open
    print(f"agent stopped {stopped_in:.1f} s after the kill")  # ≤ 5 s on an idle machine; no wall-clock assert
    assert stopped_in < 60  # the 120 s agent did not run out
    [entry] = wait_for(lambda: run_log_entries(show(bare, "loop-run-log.md")), 60, what="the halted tick's record")
    assert entry["note"] == "halted: kill"


def _kill_mid_tick(addr: str, queue: str, workers: Any, tmp_path: Path, slow: str) -> tuple[Any, Any, Path, Any]:
    """Worker A runs the tick until the ``slow`` agent is running, then is SIGKILLed; worker B takes over."""
    bare, _checkout = project(tmp_path, addr, queue, patterns='[patterns.ci-sweeper]\nlevel = "L2"\n')
    doc: dict[str, Any] = {"triage": ACT, "implementer": [{"files": {"calc.py": FIXED}, "tokens": 3000}],
                           "verifier": [{"verdict": "APPROVE", "tokens": 1000}]}
    doc[slow] = [{**doc[slow][0], "sleep_s": 120}]
    scen = scenario(tmp_path, f"slow-{slow}", doc)
    inp = tick_input(bare, scenario=scen, level="L2", heartbeat_timeout_s=5, per_port=True)
    a = workers("a")
    wid = f"tick-kill-{slow}"
    arun(start_tick(addr, queue, inp, wid))
    scope = f"{inp.project_key}/ci-sweeper"
    done_before = {"implementer": 1, "verifier": 2}[slow]

    def slow_agent_running() -> bool:
        try:
            st = budget(addr, scope)
        except Exception:
            return False
        return len(st.settled) == done_before and len(st.open) == 1

    wait_for(slow_agent_running, 150, what=f"the {slow}'s reservation")
    wait_for(lambda: _agent_started(addr, wid, done_before + 1), 60, what=f"the {slow} agent running")
    a.kill9()
    doc[slow] = [{k: v for k, v in doc[slow][0].items() if k != "sleep_s"}]  # the re-run answers at once
    Path(scen).write_text(json.dumps(doc))
    workers("b")
    return result_of(addr, wid), budget(addr, scope), bare, wid


def _agent_started(addr: str, wid: str, nth: int) -> bool:
    """The tick's ``nth`` ``backend.run`` is scheduled and its activity is running on a worker."""
    from temporalio.api.enums.v1 import PendingActivityState

    runs = [c for a, c in history_activities(addr, wid) if c == "backend.run"]
    if len(runs) < nth:
        return False

    async def go() -> bool:
        client = await client_for(addr)
        desc = await client.get_workflow_handle(wid).describe()
        return any(p.activity_type.name in ("port_call", "port_batch") and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                   for p in desc.raw_description.pending_activities)

    return arun(go())


def test_a_worker_killed_during_the_implementer_is_replaced_without_billing_the_triage_again(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """Worker A dies while the implementer runs: the implementer's activity misses its heartbeats, the tick is
    opened again on worker B and re-driven from the start — the triage answered from the workflow's own record
    (no `backend.run`, no reservation), the lost implementer's reservation charged in full (fail closed), the
    implementer and verifier run on B — and one fix is proposed."""
    summary, st, bare, wid = _kill_mid_tick(temporal_server.address, queue, workers, tmp_path, "implementer")
    assert summary.outcome == "fix-proposed", summary
    assert summary.attempts == 2 and "triage" in summary.replayed and "implementer:1" not in summary.replayed
    assert not st.open and st.spent == sum(st.settled.values())
    first = sorted(v for k, v in st.settled.items() if ":1:" in k)
    second = sorted(v for k, v in st.settled.items() if ":2:" in k)
    assert len(first) == 2 and 1000 in first  # the triage once, and the killed implementer's reservation
    assert second == [1000, 3000]  # only the implementer and the verifier ran again: the triage was not billed
    calls = performed_calls(temporal_server.address, wid)
    assert calls.count("backend.run") == 4, " ".join(calls)  # A: triage, implementer; B: implementer, verifier
    opens = [a for a, _ in history_activities(temporal_server.address, wid) if a == "open_tick"]
    assert len(opens) == 2
    [entry] = run_log_entries(show(bare, "loop-run-log.md"))
    assert entry["outcome"] == "fix-proposed"
    branches = git(bare, "for-each-ref", "refs/heads/loop/", "--format=%(refname:short)").split()
    assert len(branches) == 1 and show(bare, "calc.py", branches[0]) == FIXED
    _replays(temporal_server.address, wid)


def test_a_worker_killed_during_the_verifier_replays_the_implementer_and_rebuilds_its_worktree_from_the_diff(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """Worker A dies while the verifier runs: on B the triage and the implementer are replayed (no agent call),
    the implementer's worktree is recreated from the diff the tick took right after it (in the history), and
    only the verifier runs again; the proposed branch holds the implementer's fix."""
    summary, st, bare, wid = _kill_mid_tick(temporal_server.address, queue, workers, tmp_path, "verifier")
    assert summary.outcome == "fix-proposed", summary
    assert {"triage", "implementer:1"} <= set(summary.replayed)
    assert not st.open
    first = sorted(v for k, v in st.settled.items() if ":1:" in k)
    second = [v for k, v in st.settled.items() if ":2:" in k]
    assert len(first) == 3 and 1000 in first and 3000 in first
    assert second == [1000]
    branches = git(bare, "for-each-ref", "refs/heads/loop/", "--format=%(refname:short)").split()
    assert len(branches) == 1 and show(bare, "calc.py", branches[0]) == FIXED
    [entry] = run_log_entries(show(bare, "loop-run-log.md"))
    assert entry["outcome"] == "fix-proposed"


def test_the_whole_tick_activity_is_kept_as_the_fallback_path(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """`per_port=False` (or `LOOP_RUNTIME_TEMPORAL_PER_PORT=0` at `schedule sync`): the tick is one `run_tick`
    activity, as before the per-port path, with the same outcome."""
    addr = temporal_server.address
    bare, _checkout = project(tmp_path, addr, queue, patterns='[patterns.ci-sweeper]\nlevel = "L2"\n')
    doc = {"triage": ACT, "implementer": [{"files": {"calc.py": FIXED}, "tokens": 3000}],
           "verifier": [{"verdict": "APPROVE", "tokens": 1000}]}
    inp = tick_input(bare, scenario=scenario(tmp_path, "act", doc), level="L2", per_port=False)
    workers("w1")
    arun(start_tick(addr, queue, inp, "tick-whole"))
    summary = result_of(addr, "tick-whole")
    assert summary.outcome == "fix-proposed", summary
    names = [a for a, _ in history_activities(addr, "tick-whole")]
    assert "run_tick" in names and "port_call" not in names and "port_batch" not in names and "open_tick" not in names


KEY = "q5mC1bqI0r7mO0Jb8m0Y3D9bq1VxQn9y6m5h2b5c7Ts="


@pytest.mark.parametrize(("value", "key", "expected"), [
    (None, None, False), (None, KEY, True), ("1", None, True), ("yes", None, True),
    ("0", KEY, False), ("off", KEY, False), ("false", None, False)])
def test_the_per_port_path_is_on_when_payloads_are_encrypted_and_the_operator_can_choose(
        monkeypatch: pytest.MonkeyPatch, value: str | None, key: str | None, expected: bool) -> None:
    """The per-port history holds prompts, diffs and secret values: by default it is used only when they are
    encrypted (``LOOP_RUNTIME_TEMPORAL_KEY``); ``LOOP_RUNTIME_TEMPORAL_PER_PORT`` decides either way."""
    from loop_runtime.temporal.encryption import KEY_ENV
    from loop_runtime.temporal.schedules import PER_PORT_ENV, per_port_default
    from loop_runtime.temporal.types import TickInput

    for name, v in ((PER_PORT_ENV, value), (KEY_ENV, key)):
        if v is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, v)
    assert per_port_default() is expected
    assert TickInput(repo_url="r", project_key="k", pattern="p").per_port is True


def test_a_worker_killed_between_two_calls_of_a_batch_is_replaced_and_nothing_is_billed_twice(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """Worker A dies (like `kill -9`) right after the triage's `budget.settle`, inside the batch headed by that
    `backend.run`: the batch never answered, so the workflow never learnt the triage ended. The tick is opened
    again on worker B and the triage runs there; A's tokens were settled once by A (they were spent), B's once,
    no reservation stays open, one run-log entry is pushed, and the history replays."""
    addr = temporal_server.address
    bare, _checkout = project(tmp_path, addr, queue)
    inp = tick_input(bare, scenario=scenario(tmp_path, "report", {"triage": {"decision": "report", "summary": "ok",
                                                                             "tokens": 1000}}),
                     heartbeat_timeout_s=5, per_port=True)
    a = workers("a", env={"LOOP_RUNTIME_FAULT_AT": "temporal:batch:budget.settle"})
    wid = "tick-kill-in-batch"
    arun(start_tick(addr, queue, inp, wid))
    wait_for(lambda: a.proc.poll() is not None, 150, what="worker A to die after the settle")
    workers("b")
    summary = result_of(addr, wid)
    assert summary.outcome == "report-only" and summary.attempts == 2, summary
    st = budget(addr, f"{inp.project_key}/ci-sweeper")
    assert not st.open and sorted(st.settled.values()) == [1000, 1000] and st.spent == 2000
    assert len([k for k in st.settled if ":1:" in k]) == 1 and len([k for k in st.settled if ":2:" in k]) == 1
    calls = performed_calls(addr, wid)
    assert calls.count("backend.run") == 2 and calls.count("budget.settle") == 1  # A's batch never answered
    [entry] = wait_for(lambda: run_log_entries(show(bare, "loop-run-log.md")), 60, what="the run log")
    assert entry["outcome"] == "report-only"
    _replays(addr, wid)
