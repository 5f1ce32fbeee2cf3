"""A fleet on one machine: repositories placed from the fleet file, one portfolio budget over all of
them (80% → L1, 100% → halt, top-ups, exact across processes), status grouped by repository."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.adapters.fleet import load_fleet, sync_repo
from loop_runtime.adapters.store.sqlite import RunStore
from loop_runtime.adapters.store.budget import PORTFOLIO, BudgetScope, StoreBudget
from loop_runtime.core.budget import assess, tightest, todays_cap
from loop_runtime.errors import ConfigError
from loop_runtime.ports import BudgetStatus
from tests.conftest import run_cli
from tests.support.gitrepo import git, make_repo

NOON = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def repo(path: Path, toml: str = '[patterns.issue-triage]\nlevel = "L1"\n') -> Path:
    return make_repo(path, {"README.md": "x\n", "loop-runtime.toml": toml})


def fleet_file(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "loop-fleet.toml"
    f.write_text(body)
    return f


def three_repos(tmp: Path, cap: int, toml: str = '[patterns.issue-triage]\nlevel = "L1"\n') -> Path:
    for name in ("api", "web", "ops"):
        repo(tmp / name, toml)
    return fleet_file(tmp / "fleet", f'portfolio_daily_cap = {cap}\n'
                      + "".join(f'[[repos]]\npath = "../{n}"\n' for n in ("api", "web", "ops")))


# --------------------------------------------------------------------------- placing repositories


def test_paths_are_relative_to_the_fleet_file_not_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    f = three_repos(tmp_path, 1000)
    monkeypatch.chdir(tmp_path / "api")
    loaded = load_fleet(f)
    assert [p.root for p in loaded.places] == [(tmp_path / n).resolve() for n in ("api", "web", "ops")]
    assert not loaded.problems()


@pytest.mark.parametrize("body, field", [
    ('[[repos]]\npath = "."\nname = "x"\n', "repos[0].path"),  # the fleet's own folder
    ('[[repos]]\npath = "./sub/.."\nname = "x"\n', "repos[0].path"),
    ('[[repos]]\npath = ".loop-fleet/repos/x"\n', "repos[0].path"),  # inside the work folder
    ('work_dir = ".."\n[[repos]]\npath = "../a"\n', "work_dir"),
    ('work_dir = "../../x"\n[[repos]]\npath = "../a"\n', "work_dir"),
])
def test_a_repository_at_the_fleets_own_folder_or_work_folder_is_refused(tmp_path: Path, body: str,
                                                                          field: str) -> None:
    repo(tmp_path / "a")
    (tmp_path / "fleet" / "sub").mkdir(parents=True)
    with pytest.raises(ConfigError) as e:
        load_fleet(fleet_file(tmp_path / "fleet", body))
    assert field in str(e.value) and "\n" not in str(e.value)


def test_the_same_repository_twice_through_a_symlink_or_nested_is_refused(tmp_path: Path) -> None:
    repo(tmp_path / "a")
    (tmp_path / "alias").symlink_to(tmp_path / "a")
    with pytest.raises(ConfigError, match=r"repos\[1\]\.path invalid.*same folder as repos\[0\]"):
        load_fleet(fleet_file(tmp_path / "fleet", '[[repos]]\npath = "../a"\n[[repos]]\npath = "../alias"\n'))
    repo(tmp_path / "a" / "inner")
    with pytest.raises(ConfigError, match=r"nested with repos\[0\]"):
        load_fleet(fleet_file(tmp_path / "fleet", '[[repos]]\npath = "../a"\n[[repos]]\npath = "../a/inner"\n'))


def test_a_vanished_repository_is_a_problem_status_shows_and_start_refuses(tmp_path: Path) -> None:
    f = three_repos(tmp_path, 1000)
    import shutil

    shutil.rmtree(tmp_path / "web")
    loaded = load_fleet(f)
    assert [p.name for p in loaded.places if p.problem] == ["web"]
    st_ = run_cli("status", "--fleet", str(f), "--json")
    assert st_.returncode == 0, st_.stderr
    doc = json.loads(st_.stdout)
    assert [r["name"] for r in doc["repos"]] == ["api", "web", "ops"]
    assert "not a directory" in doc["repos"][1]["error"] and doc["repos"][0]["loops"]
    start = run_cli("start", "--fleet", str(f), "--log-format", "none", timeout=60)
    assert start.returncode == 1 and "repos[1] (web)" in start.stderr and "Traceback" not in start.stderr


def test_a_url_repository_is_cloned_then_fetched_into_the_work_folder(tmp_path: Path) -> None:
    src = repo(tmp_path / "src")
    bare = tmp_path / "web.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(bare)], check=True)
    f = fleet_file(tmp_path / "fleet", f'[[repos]]\nurl = "file://{bare}"\n')
    loaded = load_fleet(f)
    assert loaded.places[0].problem and "not cloned" in loaded.places[0].problem
    placed = sync_repo(loaded.places[0])
    assert (placed.root / "loop-runtime.toml").exists() and placed.root.parent.parent == loaded.work_dir
    (src / "NEW.md").write_text("new\n")
    git(src, "add", "-A")
    git(src, "commit", "-qm", "new")
    git(src, "push", "-q", str(bare), "main")
    sync_repo(load_fleet(f).places[0])
    assert (placed.root / "NEW.md").exists()  # fetched and fast-forwarded
    assert not load_fleet(f).problems()


def test_a_failing_clone_names_the_url_without_credentials_or_prompting(tmp_path: Path) -> None:
    f = fleet_file(tmp_path / "fleet", f'[[repos]]\nurl = "file://{tmp_path}/missing.git"\nname = "gone"\n')
    from loop_runtime.errors import GitError

    with pytest.raises(GitError, match="git clone file://"):
        sync_repo(load_fleet(f).places[0])


# --------------------------------------------------------------------------- the budget rules (core)


statuses = st.builds(lambda cap, spent, reserved: BudgetStatus("2026-03-01", cap, spent, reserved),
                     st.one_of(st.none(), st.integers(1, 10**9)), st.integers(0, 2 * 10**9), st.integers(0, 10**6))


@settings(max_examples=300)
@given(st.lists(statuses, min_size=1, max_size=4))
def test_the_tightest_scope_decides_halt_and_downgrade_for_all(scopes: list[BudgetStatus]) -> None:
    verdict = assess(tightest(scopes))
    each = [assess(s) for s in scopes]
    assert verdict.halt == any(v.halt for v in each)
    assert (verdict.level_cap is not None or verdict.halt) == any(v.level_cap or v.halt for v in each)


@given(st.one_of(st.none(), st.integers(1, 10**12)), st.integers(-5, 10**9))
def test_todays_cap_is_cap_plus_topups_and_no_cap_stays_none(cap: int | None, topups: int) -> None:
    assert todays_cap(cap, topups) == (None if cap is None else cap + max(0, topups))


# --------------------------------------------------------------------------- the portfolio ledger


def ledgers(tmp: Path, cap: int) -> tuple[RunStore, RunStore, RunStore]:
    return (RunStore(tmp / "portfolio.db", secrets=()), RunStore(tmp / "a.db", secrets=()),
            RunStore(tmp / "b.db", secrets=()))


def budget(store: RunStore, ledger: RunStore, cap: int, tick: str = "t", loop_cap: int | None = None) -> StoreBudget:
    return StoreBudget(store, "issue-triage", loop_cap, tick, portfolio=BudgetScope(ledger, PORTFOLIO, cap, ref=tick))


def test_portfolio_at_80_percent_downgrades_every_loop_and_at_100_halts(tmp_path: Path) -> None:
    ledger, a, b = ledgers(tmp_path, 1000)
    ba, bb = budget(a, ledger, 1000, "a"), budget(b, ledger, 1000, "b")
    r = ba.reserve(800, NOON)
    ba.settle(r, 800, NOON)
    for other in (ba, bb):  # b spent nothing itself, yet the shared scope downgrades it
        v = assess(other.status(NOON))
        assert (v.halt, v.level_cap) == (False, "L1")
    r = bb.reserve(500, NOON)
    assert r is not None and r.amount == 200  # only what the portfolio has left
    bb.settle(r, 200, NOON)
    assert assess(ba.status(NOON)).halt and assess(bb.status(NOON)).halt
    assert ba.reserve(1, NOON) is None
    assert ledger.spent(PORTFOLIO, NOON.date()) == 1000


def test_per_loop_caps_still_apply_under_a_roomy_portfolio(tmp_path: Path) -> None:
    ledger, a, _ = ledgers(tmp_path, 10**6)
    ba = budget(a, ledger, 10**6, loop_cap=300)
    r = ba.reserve(1000, NOON)
    assert r.amount == 300
    ba.settle(r, 300, NOON)
    assert ba.reserve(1, NOON) is None
    # the refused inner reservation released its portfolio hold: nothing stays reserved out there
    assert ledger.reserved(PORTFOLIO, NOON.date()) == 0 and ledger.spent(PORTFOLIO, NOON.date()) == 300


def test_top_ups_raise_each_level(tmp_path: Path) -> None:
    ledger, a, _ = ledgers(tmp_path, 1000)
    a_budget = StoreBudget(a, "issue-triage", 500, "t", 700, portfolio=BudgetScope(ledger, PORTFOLIO, 600))
    day = NOON.date()
    for expected, topup in ((500, None), (600, ("issue-triage", a, 1000)), (700, (PORTFOLIO, ledger, 1000)),
                            (1500, ("*", a, 10_000))):
        if topup:
            topup[1].add_topup(topup[0], day, topup[2], "test", NOON)
        r = a_budget.reserve(10**6, NOON)
        got = r.amount if r else 0
        if r:
            a_budget.settle(r, 0, NOON)
        assert got == min(expected, 10**6), (topup, got)


def test_a_reservation_across_utc_midnight_settles_on_the_day_it_was_made(tmp_path: Path) -> None:
    ledger, a, _ = ledgers(tmp_path, 1000)
    ba = budget(a, ledger, 1000)
    before = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
    after = before + timedelta(seconds=2)
    r = ba.reserve(900, before)
    ba.settle(r, 900, after)
    assert ledger.spent(PORTFOLIO, date(2026, 3, 1)) == 900 == a.spent("issue-triage", date(2026, 3, 1))
    assert ledger.spent(PORTFOLIO, date(2026, 3, 2)) == 0
    assert assess(ba.status(after)).level_cap is None  # the new day starts empty
    assert ba.reserve(1000, after).amount == 1000


def test_a_huge_cap_is_exact_and_never_overflows(tmp_path: Path) -> None:
    from loop_runtime.formats.fleet import MAX_CAP

    ledger, a, _ = ledgers(tmp_path, MAX_CAP)
    ba = budget(a, ledger, MAX_CAP)
    r = ba.reserve(MAX_CAP, NOON)
    ba.settle(r, MAX_CAP - 1, NOON)
    assert ledger.spent(PORTFOLIO, NOON.date()) == MAX_CAP - 1
    assert ba.reserve(5, NOON).amount == 1


# --------------------------------------------------------------------------- CLI: run --fleet, status --fleet


def test_a_hand_run_tick_counts_against_the_portfolio_and_status_groups_by_repository(tmp_path: Path) -> None:
    f = three_repos(tmp_path, 5000)
    r = run_cli("run", "issue-triage", "--fleet", str(f), "--scenario", "report-only", cwd=tmp_path / "web")
    assert r.returncode == 0, r.stderr
    doc = json.loads(run_cli("status", "--fleet", str(f), "--json").stdout)
    assert doc["portfolio"]["spent"] == 4000 and doc["portfolio"]["state"] == "L1"  # 80%
    assert [(g["name"], [lp["pattern"] for lp in g["loops"]]) for g in doc["repos"]] == [
        ("api", ["issue-triage"]), ("web", ["issue-triage"]), ("ops", ["issue-triage"])]
    for g in doc["repos"]:  # every loop of every repository is at L1 because of the shared scope
        lvl = g["loops"][0]["level"]
        assert lvl["effective"] == "L1"
    text = run_cli("status", "--fleet", str(f)).stdout
    assert text.index("== api") < text.index("== web") < text.index("== ops") and "4,000 / 5,000" in text
    # a second hand-run tick in another repository gets only what is left, then everything halts
    r2 = run_cli("run", "issue-triage", "--fleet", str(f), "--scenario", "report-only", cwd=tmp_path / "ops")
    assert r2.returncode in (0, 2), r2.stderr
    with sqlite3.connect(tmp_path / "fleet" / ".loop-fleet" / "portfolio.db") as con:
        assert con.execute("select sum(settled) from reservations").fetchone()[0] <= 5000
    doc = json.loads(run_cli("status", "--fleet", str(f), "--json").stdout)
    assert all(g["loops"][0]["level"]["effective"] == "halted" for g in doc["repos"])
    assert "portfolio budget" in doc["repos"][0]["loops"][0]["level"]["reason"]
    r3 = run_cli("run", "issue-triage", "--fleet", str(f), "--scenario", "report-only", cwd=tmp_path / "api")
    assert r3.returncode == 2 and "halted" in r3.stdout


def test_run_fleet_outside_every_repository_is_refused(tmp_path: Path) -> None:
    f = three_repos(tmp_path, 5000)
    other = repo(tmp_path / "other")
    r = run_cli("run", "issue-triage", "--fleet", str(f), "--scenario", "noop", cwd=other)
    assert r.returncode == 1 and "not a repository of the fleet" in r.stderr


def test_fleet_overrides_set_levels_and_a_repository_cap(tmp_path: Path) -> None:
    repo(tmp_path / "api")
    f = fleet_file(tmp_path / "fleet", '[[repos]]\npath = "../api"\ndaily_cap = 3000\n'
                   '[repos.patterns.issue-triage]\nlevel = "L0"\n')
    doc = json.loads(run_cli("status", "--fleet", str(f), "--json").stdout)
    assert doc["repos"][0]["loops"][0]["level"]["configured"] == "L0"
    r = run_cli("run", "issue-triage", "--fleet", str(f), "--scenario", "report-only", "--level", "L1",
                cwd=tmp_path / "api")
    assert r.returncode == 2 and "halted" in r.stdout, r.stderr  # the 4,000-token call met the 3,000 cap
    with sqlite3.connect(tmp_path / "api" / ".loop-runtime" / "runtime.db") as con:
        assert con.execute("select sum(settled) from reservations where pattern='*'").fetchone()[0] <= 3000


# --------------------------------------------------------------------------- two daemons, one portfolio


def test_two_fleet_daemons_on_three_repositories_never_overspend_the_portfolio(tmp_path: Path) -> None:
    """Two real `start --fleet` processes, three repositories, three loops each, one small portfolio cap:
    the settled total stays within the cap (each reservation is granted only what is left)."""
    toml = "".join(f'[patterns.{p}]\nlevel = "L1"\n' for p in ("issue-triage", "daily-triage", "ci-sweeper"))
    f = three_repos(tmp_path, 9000, toml)
    slow = tmp_path / "slow.yaml"
    slow.write_text("triage: {decision: report, tokens: 2500, sleep_s: 0.5, items: [{id: A, title: a}]}\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "loop_runtime", "start", "--fleet", str(f), "--scenario",
                               str(slow), "--log-format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    db = tmp_path / "fleet" / ".loop-fleet" / "portfolio.db"

    def finished() -> int:
        total = 0
        for n in ("api", "web", "ops"):
            p = tmp_path / n / ".loop-runtime" / "runtime.db"
            if p.exists():
                con = sqlite3.connect(p, timeout=10)
                try:
                    total += con.execute("select count(*) from ticks where status != 'running'").fetchone()[0]
                except sqlite3.OperationalError:
                    pass  # being created by a daemon right now
                finally:
                    con.close()
        return total

    try:
        deadline = time.time() + 90
        while time.time() < deadline and finished() < 9:
            time.sleep(0.3)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        errs = [p.communicate(timeout=60)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    assert finished() >= 9, errs
    with sqlite3.connect(db) as con:
        settled, open_ = con.execute("select coalesce(sum(settled), 0), sum(settled is null) "
                                     "from reservations").fetchone()
    assert settled <= 9000 and not open_
    loop_sum = 0
    for n in ("api", "web", "ops"):
        with sqlite3.connect(tmp_path / n / ".loop-runtime" / "runtime.db") as con:
            loop_sum += con.execute("select coalesce(sum(settled), 0) from reservations "
                                    "where pattern != '*'").fetchone()[0]
    assert loop_sum == settled  # every token a loop spent is on the portfolio, once
    events = [json.loads(line) for e in errs for line in e.splitlines() if line.startswith("{")]
    halted = [e for e in events if e.get("event") == "tick" and e.get("haltReason") == "budget"]
    assert halted, "the cap was reached: some ticks must have halted on the budget"
    assert {e["pattern"].split("/")[0] for e in events if e.get("event") == "tick"} == {"api", "web", "ops"}


# --------------------------------------------------------------------------- the fleet dashboard


def test_the_fleet_dashboard_groups_every_repositorys_loops_and_shows_the_portfolio(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from loop_runtime.dashboard.fleet import create_fleet_app

    f = three_repos(tmp_path, 5000)
    (tmp_path / "web" / "README.md").write_text("<script>alert(1)</script>\n")
    with TestClient(create_fleet_app(load_fleet(f), token="t" * 32), base_url="http://127.0.0.1") as client:
        page = client.get("/")
        api = client.get("/api/fleet").json()
        rebinding = client.get("/", headers={"host": "evil.example"})
    assert page.status_code == 200
    html = page.text
    assert html.index('id="repo-api"') < html.index('id="repo-web"') < html.index('id="repo-ops"')
    assert html.count('data-pattern="issue-triage"') == 3 and "0 spent" in html and "5,000" in html
    assert [r["name"] for r in api["repos"]] == ["api", "web", "ops"] and api["portfolio"]["cap"] == 5000
    assert rebinding.status_code == 400  # DNS rebinding: only loopback host names


def test_a_dollar_cap_uses_the_backends_reported_cost_else_the_price_table(tmp_path: Path) -> None:
    from loop_runtime.adapters.fleet import PortfolioLedger
    from loop_runtime.core.budget import settle_call

    ledger, a, _ = ledgers(tmp_path, 10**9)
    link = PortfolioLedger(ledger, 10**9, "api", usd_cap=1.0)  # $1/day, tokens practically unlimited
    ba = StoreBudget(a, "issue-triage", None, "t", portfolio=link.scope("t", "claude"))
    r = ba.reserve(10**6, NOON)
    assert r.amount == 166_666  # $1 at the table's $6 per 1M tokens
    settle_call(ba, r, 50_000, NOON, cost_usd=0.90)  # the backend said what it cost: that is what counts
    assert link.usd_spent(NOON) == pytest.approx(0.90)
    assert assess(link.status(NOON)).level_cap == "L1"  # 90% of the dollars
    r = ba.reserve(10**6, NOON)
    assert r.amount == 16_666  # the $0.10 left
    settle_call(ba, r, 16_666, NOON)  # no reported cost: priced by the table
    assert link.usd_spent(NOON) == pytest.approx(1.0, abs=1e-5)
    assert ba.reserve(1, NOON) is None  # less than one token's price is left
    assert ledger.spent(PORTFOLIO, NOON.date()) == 66_666  # the token ledger still counts tokens


def test_top_ups_from_the_command_line_at_the_repository_and_portfolio_levels(tmp_path: Path) -> None:
    f = three_repos(tmp_path, 4000, '[patterns.issue-triage]\nlevel = "L1"\n')
    web = tmp_path / "web"
    r = run_cli("run", "issue-triage", "--fleet", str(f), "--scenario", "report-only", cwd=web)
    assert r.returncode == 0, r.stderr  # 4,000 of 4,000: the portfolio is spent
    doc = json.loads(run_cli("status", "--fleet", str(f), "--json").stdout)
    assert doc["portfolio"]["state"] == "halted"
    up = run_cli("topup", "@portfolio", "6000", "--fleet", str(f), "--reason", "release day", cwd=web)
    assert up.returncode == 0 and "the portfolio" in up.stdout, up.stderr
    doc = json.loads(run_cli("status", "--fleet", str(f), "--json").stdout)
    assert doc["portfolio"]["cap"] == 10_000 and doc["portfolio"]["state"] == "ok"
    assert run_cli("run", "issue-triage", "--fleet", str(f), "--scenario", "report-only", cwd=web).returncode == 0
    bad = [run_cli("topup", "@repo", "10", cwd=web), run_cli("topup", "@portfolio", "10", cwd=web),
           run_cli("topup", "@portfolio", "-5", "--fleet", str(f), cwd=web), run_cli("topup", "@fleet", "5", cwd=web)]
    assert all(b.returncode == 1 and "Traceback" not in b.stderr and len(b.stderr.strip().splitlines()) == 1
               for b in bad), [b.stderr for b in bad]
    (web / "loop-runtime.toml").write_text('global_daily_cap = 100\n[patterns.issue-triage]\nlevel = "L1"\n')
    assert run_cli("topup", "@repo", "50000", cwd=web).returncode == 0
    with sqlite3.connect(web / ".loop-runtime" / "runtime.db") as con:
        assert con.execute("select sum(tokens) from topups where pattern='*'").fetchone()[0] == 50000


def test_a_repository_vanishing_while_the_fleet_daemon_runs_fails_only_its_own_ticks(tmp_path: Path) -> None:
    """Real engine, three repositories, one-second cadence: web is deleted after the first round; its
    ticks fail and are logged, api and ops keep ticking, the daemon stops normally."""
    import asyncio
    import shutil

    from loop_runtime.fleet_daemon import serve_fleet

    f = three_repos(tmp_path, 10**6)
    scenario = tmp_path / "s.yaml"
    scenario.write_text("triage: {decision: report, tokens: 10, items: [{id: A, title: a}]}\n")
    seen: list[tuple[str, dict]] = []

    def on_log(kind: str, fields: dict) -> None:
        seen.append((kind, dict(fields)))
        done = {fl["pattern"] for k, fl in seen if k == "tick"}
        if {"api/issue-triage", "web/issue-triage", "ops/issue-triage"} <= done and (tmp_path / "web").exists():
            shutil.rmtree(tmp_path / "web")

    asyncio.run(serve_fleet(load_fleet(f), backend="mock", scenario=str(scenario), on_log=on_log, sync=False,
                            stop_after_s=8.0, interval_s=1))
    ticks = [fl["pattern"] for k, fl in seen if k == "tick"]
    assert ticks.count("api/issue-triage") >= 2 and ticks.count("ops/issue-triage") >= 2, seen
    assert ticks.count("web/issue-triage") == 1
    assert any(k == "tick.error" and fl["pattern"] == "web/issue-triage" for k, fl in seen), seen
    assert seen[-1][0] == "daemon.stop"


def test_portfolio_rows_of_a_crashed_tick_are_settled_in_full_and_live_ones_are_left(tmp_path: Path) -> None:
    from loop_runtime.app.fleet import settle_portfolio_orphans

    ledger, a, _ = ledgers(tmp_path, 10_000)
    crashed = StoreBudget(a, "issue-triage", None, "t1", portfolio=BudgetScope(ledger, PORTFOLIO, 10_000, ref="api/t1"))
    live = StoreBudget(a, "daily-triage", None, "t2", portfolio=BudgetScope(ledger, PORTFOLIO, 10_000, ref="api/t2"))
    crashed.reserve(3000, NOON)
    live.reserve(2000, NOON)
    a.settle(a.open_reservations("issue-triage")[0].id, 3000, NOON)  # the repository's own sweep settled it
    later = NOON + timedelta(minutes=5)
    assert settle_portfolio_orphans(ledger, {"api": a}, NOON) == []  # too young to judge
    swept = settle_portfolio_orphans(ledger, {"api": a}, later)
    assert [r.tick_id for r in swept] == ["api/t1"]
    assert ledger.spent(PORTFOLIO, NOON.date()) == 3000 and ledger.reserved(PORTFOLIO, NOON.date()) == 2000
    assert settle_portfolio_orphans(ledger, {}, later) == []  # another daemon's repositories: not ours to judge


def test_a_tick_in_its_own_thread_is_cancelled_there_and_finishes_its_cleanup() -> None:
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from loop_runtime.fleet_daemon import in_own_thread

    events: list[str] = []
    started = threading.Event()

    async def tick() -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # a checkpoint and a settle, after the cancel
            events.append(f"cleaned up in {threading.current_thread().name}")
            raise
        return "finished"

    async def main() -> None:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="tick") as ex:
            assert await in_own_thread(ex, lambda: asyncio.sleep(0, result="ok")) == "ok"
            task = asyncio.ensure_future(in_own_thread(ex, tick))
            while not started.is_set():
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert len(events) == 1 and events[0].startswith("cleaned up in tick")
