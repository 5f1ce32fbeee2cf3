"""Status, the engine, the scheduler and the dashboard agree on every rule (issue 11).

Each reader used to work the rules out again: "cap + top-ups", the kill-switch files, the
effective level and runs today were computed in four places, and ``status`` could show L2
while the engine ran at L1. Now every reader calls the core's one function for each rule
(``core.levels.effective_level``, ``core.budget.judge``/``todays_cap``, ``core.killswitch.kill_state``,
``core.schedule.runs_today``). This test drives random states of a real project through all of
them and asserts they agree:

* budgets — the loop's cap, its settled spend, other tools' spend in the run log, today's
  top-ups, the repository's ``global_daily_cap`` with other loops' spend and its top-ups;
* kill switches — none, a root switch file (all loops or this one), a flag line (true or a
  false form) in the loop's state file, STATE.md or LOOP.md, ``paused: true``;
* the configured level (L0–L3), a git repository or a plain folder, a ``runs/day`` cap with
  runs logged, begun by the runtime, paused, or by other tools.

Readers, on the same state at the same (manual) time: the status document (``project_status``),
the dashboard's JSON (``/api/status``, ``/api/budget``), the scheduler's launch/skip decision, and
then one real tick of the mock backend through ``LoopRunner`` (store journal, state writer, git).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.adapters.clock import ManualClock
from loop_runtime.adapters.store.budget import GLOBAL
from loop_runtime.app.runner import LoopRunner, RunOptions
from loop_runtime.app.runtime import load_project
from loop_runtime.app.services import Services
from loop_runtime.app.status import project_status
from loop_runtime.core.schedule import LoopSchedule
from loop_runtime.formats.runlog import RunLogEntry, append_entry
from loop_runtime.scheduler import Scheduler
from tests.support.gitrepo import make_repo

starlette = pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from loop_runtime.app.rules import runs_counter  # noqa: E402
from loop_runtime.dashboard.app import create_app  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
PATTERN = "ci-sweeper"
STATE_FILE = "ci-sweeper-state.md"
NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
TOKEN = "rule-agreement-token-0123456789"

# ---------------------------------------------------------------------------- the random state


@dataclass(frozen=True)
class Kill:
    """Where a kill switch is, if anywhere: a root file, or a line in a file."""

    form: str  # none | file | line | paused
    name: str = ""  # the switch file, or the file holding the line
    token: str = ""  # loop-pause-all | loop-pause-ci-sweeper
    value: str = ""  # "", ": true", ": false" …


KILLS = st.one_of(
    st.just(Kill("none")),
    st.builds(Kill, form=st.just("file"), name=st.sampled_from(["loop-pause-all", f"loop-pause-{PATTERN}"])),
    st.builds(Kill, form=st.just("line"), name=st.sampled_from([STATE_FILE, "STATE.md", "LOOP.md"]),
              token=st.sampled_from(["loop-pause-all", f"loop-pause-{PATTERN}"]),
              value=st.sampled_from(["", ": true", ": on", ": false", ": off", ": no"])),
    st.just(Kill("paused", STATE_FILE)),
)


@dataclass(frozen=True)
class Own:
    """A tick this runtime began today: logged (as a run, or as paused) or not."""

    logged: bool
    paused: bool


@dataclass(frozen=True)
class World:
    level: str
    git: bool
    cap: int
    spent: int  # settled spend of the loop (in the loop's and the repository's ledger)
    external: tuple[int, ...]  # other tools' runs today in the run log, with their tokens
    topup: int
    global_cap: int | None
    others: int  # other loops' settled spend in the repository's ledger
    global_topup: int
    kill: Kill
    runs_cap: int | None
    own: tuple[Own, ...]


@st.composite
def worlds(draw: Any) -> World:
    cap = draw(st.integers(1_000, 200_000))
    global_cap = draw(st.one_of(st.none(), st.integers(cap // 2, cap * 3)))
    return World(
        level=draw(st.sampled_from(["L0", "L1", "L2", "L3"])),
        git=draw(st.booleans()),
        cap=cap,
        spent=draw(st.one_of(st.just(0), st.integers(0, cap * 13 // 10))),
        external=tuple(draw(st.lists(st.integers(0, cap // 2), max_size=2))),
        topup=draw(st.one_of(st.just(0), st.integers(1, cap))),
        global_cap=global_cap,
        others=0 if global_cap is None else draw(st.integers(0, global_cap * 12 // 10)),
        global_topup=0 if global_cap is None else draw(st.one_of(st.just(0), st.integers(1, global_cap))),
        kill=draw(KILLS),
        runs_cap=draw(st.one_of(st.none(), st.integers(1, 4))),
        own=tuple(draw(st.lists(st.builds(Own, st.booleans(), st.booleans()), max_size=3))),
    )


# ---------------------------------------------------------------------------- building it for real


def _files(w: World) -> dict[str, str]:
    toml = f'[patterns.{PATTERN}]\nlevel = "{w.level}"\ndaily_cap = {w.cap}\n'
    if w.global_cap is not None:
        toml = f"global_daily_cap = {w.global_cap}\n\n" + toml
    files = {
        "loop-runtime.toml": toml,
        "STATE.md": (FIXTURES / "STATE.md").read_text(),
        "LOOP.md": (FIXTURES / "LOOP.md").read_text(),
        STATE_FILE: (FIXTURES / "loop-init-starters__ci-sweeper-state.md.example").read_text(),
        "src/app.py": "x = 1\n",
    }
    if w.runs_cap is not None:
        files["loop-budget.md"] = ("## Daily limits\n\n| Loop | Max runs/day | Max tokens/day |\n|---|---|---|\n"
                                   f"| CI Sweeper | {w.runs_cap} | {w.cap} |\n")
    k = w.kill
    if k.form == "file":
        files[k.name] = "paused by a test\n"
    elif k.form == "line":
        files[k.name] = files[k.name].rstrip("\n") + f"\n\n- {k.token}{k.value}\n"
    elif k.form == "paused":
        files[k.name] = files[k.name].rstrip("\n") + "\n\npaused: true\n"
    return files


def _run_id(i: int) -> str:
    return (NOW - timedelta(hours=6) + timedelta(minutes=7 * i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _log(root: Path, entries: list[RunLogEntry]) -> None:
    text = None
    for e in entries:
        text = append_entry(text, e, now=NOW, project="agreement")
    if text is not None:
        (root / "loop-run-log.md").write_text(text)


def build_files(root: Path, w: World) -> None:
    """The project's files: a git repository, or a plain folder."""
    files = _files(w)
    if w.git:
        make_repo(root, files)
        return
    root.mkdir(parents=True)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def build_rows(root: Path, w: World, store: Any) -> None:
    """Today's run log and store rows: our earlier ticks, other tools' runs, settled spend, top-ups."""
    day = NOW.date()
    entries = []
    for i, own in enumerate(w.own):
        run_id, tick, at = _run_id(i), f"{PATTERN}-own{i}", NOW - timedelta(hours=6 - i)
        store.begin_tick(tick_id=tick, run_id=run_id, pattern=PATTERN, level=w.level, backend="mock",
                         started_at=at, owner="earlier-process")
        summary = {"haltReason": "paused"} if own.paused else {}
        store.finish_tick(tick, outcome="halted" if own.paused else "no-op", tokens=0, summary=summary,
                          finished_at=at)
        store.set_tick_status(tick, "halted" if own.paused else "finished")
        if own.logged:
            extras = {"note": "paused"} if own.paused else {}
            entries.append(RunLogEntry(run_id, PATTERN, 1, 0, 0, 0, 0, "no-op", extras))
    for j, tokens in enumerate(w.external):
        entries.append(RunLogEntry(_run_id(10 + j), PATTERN, 5, 1, 0, 0, tokens, "report-only",
                                   {"tool": "another-runtime"}))
    _log(root, sorted(entries, key=lambda e: e.run_id))
    for key, amount in ((PATTERN, w.spent), (GLOBAL, w.spent + w.others)):
        if amount:
            r = store.reserve(pattern=key, day=day, amount=amount, cap=10**15, tick_id=f"{PATTERN}-own0", now=NOW)
            store.settle(r.id, amount, NOW)
    if w.topup:
        store.add_topup(PATTERN, day, w.topup, "agreement", NOW)
    if w.global_topup:
        store.add_topup(GLOBAL, day, w.global_topup, "agreement", NOW)


# ---------------------------------------------------------------------------- the readers


def scheduler_decision(project: Any, store: Any, clock: ManualClock) -> dict[str, Any]:
    """Launch or skip, as the daemon's scheduler decides it now (its run_tick only records the launch)."""
    plan = project.plan(PATTERN)
    logs: list[tuple[str, dict[str, Any]]] = []
    launched: list[str] = []

    async def run_tick(pattern: str) -> None:
        launched.append(pattern)

    sched = Scheduler([LoopSchedule.for_interval(PATTERN, plan.interval_s, plan.max_runs_per_day)], run_tick,
                      store=store, clock=clock, sleep=clock.sleep, on_log=lambda k, f: logs.append((k, dict(f))),
                      runs_today=runs_counter(project, store))

    async def main() -> None:
        await sched.run(until=clock.now())
        await sched.shutdown(grace_s=60)

    asyncio.run(main())
    skips = [f for k, f in logs if k == "skip.runs-cap"]
    return {"launched": bool(launched), "runs": skips[0]["runs"] if skips else None}


def dashboard_view(project: Any, store: Any, clock: ManualClock) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dashboard's status and budget documents for the loop, over HTTP."""
    services = Services.open(project, clock=clock, store=store)
    app = create_app(project, token=TOKEN, services=services)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        status = client.get("/api/status").json()
        budget = client.get("/api/budget").json()
    (loop,) = [lp for lp in status["loops"] if lp["pattern"] == PATTERN]
    (chart,) = [lp for lp in budget["loops"] if lp["pattern"] == PATTERN]
    return loop, chart


def engine_tick(project: Any, store: Any, clock: ManualClock) -> tuple[Any, dict[str, Any] | None]:
    """One real tick (mock backend, report-only triage) and the level its journal recorded."""
    runner = LoopRunner(Services.open(project, clock=clock, store=store), project.plan(PATTERN),
                        RunOptions(scenario="noop", clock=clock))
    result = asyncio.run(runner.tick())
    recorded = [p.data for p in store.phases(result.tick_id) if p.phase == "level"]
    return result, (recorded[-1] if recorded else None)


# ---------------------------------------------------------------------------- the property


@contextmanager
def world(w: World) -> Iterator[tuple[Any, Any, ManualClock, dict[str, Any]]]:
    """The project of ``w`` on disk, its open store, the manual clock, and the loop's status entry."""
    from loop_runtime.adapters.store.sqlite import RunStore

    tmp = Path(tempfile.mkdtemp(prefix="agree-"))
    root = tmp / "repo"
    store = None
    try:
        build_files(root, w)
        store = RunStore.open(root)
        build_rows(root, w, store)
        clock = ManualClock(NOW)
        project = load_project(root)
        (lp,) = [x for x in project_status(project, clock.now(), store)["loops"] if x["pattern"] == PATTERN]
        yield project, store, clock, lp
    finally:
        if store is not None:
            store.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _capped(lp: dict[str, Any]) -> bool:
    return lp["runs"]["max"] is not None and lp["runs"]["today"] >= lp["runs"]["max"]


@settings(max_examples=40)
@given(worlds())
def test_status_scheduler_and_dashboard_agree_with_the_rules(w: World) -> None:
    """Status against a hand-worked oracle; the dashboard's JSON and charts and the scheduler against status."""
    with world(w) as (project, store, clock, lp):
        _expect_rules(w, lp)

        dash, chart = dashboard_view(project, store, clock)
        assert (dash["level"], dash["budget"], dash["runs"], dash["killSwitch"]) == (
            lp["level"], lp["budget"], lp["runs"], lp["killSwitch"])
        assert chart["burnDown"]["cap"] == lp["budget"]["cap"] == chart["history"]["cap"][-1]
        assert chart["burnDown"]["spent"][-1] == lp["budget"]["spent"] == chart["history"]["tokens"][-1]

        decision = scheduler_decision(project, store, clock)
        assert decision["launched"] is not _capped(lp), (decision, lp["runs"])
        if _capped(lp):
            assert decision["runs"] == lp["runs"]["today"]


@settings(max_examples=25)
@given(worlds())
def test_the_engine_agrees_with_status(w: World) -> None:
    """One real tick right after ``status``: paused, capped, halted or at the level (and reason) status showed."""
    with world(w) as (project, store, clock, lp):
        result, level = engine_tick(project, store, clock)
        _expect_engine(lp, _capped(lp), result, level)


# ---------------------------------------------------------------------------- what each must say


def _engaged(k: Kill) -> bool:
    if k.form in ("file", "paused"):
        return True
    return k.form == "line" and k.value in ("", ": true", ": on")


def _expect_rules(w: World, lp: dict[str, Any]) -> None:
    """The status document against the rules worked out by hand for ``w`` (an independent oracle)."""
    cap = w.cap + w.topup
    spent = w.spent + sum(w.external)
    assert lp["budget"]["cap"] == cap and lp["budget"]["spent"] == spent
    engaged = _engaged(w.kill)
    assert lp["killSwitch"]["engaged"] is engaged
    own_frac = spent / cap
    g_frac = ((w.spent + w.others) / (w.global_cap + w.global_topup)) if w.global_cap is not None else -1.0
    frac = max(own_frac, g_frac)
    level = lp["level"]
    if engaged:
        assert level["effective"] == "paused" and level["reason"].startswith("kill switch (")
    elif frac >= 1.0:
        assert level["effective"] == "halted", (level, frac)
        assert level["reason"].startswith("repository budget:" if g_frac > own_frac else "budget:")
    else:
        expect = w.level
        if frac >= 0.8 and w.level in ("L2", "L3"):
            expect = "L1"
        elif w.level in ("L2", "L3") and not w.git:
            expect = "L1"
        assert level["effective"] == expect, (level, frac, w)
        if expect == w.level:
            assert level["reason"] == "loop-runtime.toml"
    logged = {_run_id(i) for i, o in enumerate(w.own) if not o.paused}
    external = {_run_id(10 + j) for j in range(len(w.external))}
    assert lp["runs"] == {"today": len(logged | external), "max": w.runs_cap}


def _expect_engine(lp: dict[str, Any], capped: bool, result: Any, level: dict[str, Any] | None) -> None:
    """The tick against the status document taken just before it."""
    status = lp["level"]
    if status["effective"] == "paused":
        assert result.outcome == "halted" and result.halt_reason == "paused"
        assert lp["killSwitch"]["source"] in result.as_json().get("note", "") + " ".join(result.lines)
        return
    if capped:
        assert result.outcome == "halted" and result.halt_reason == "runs-cap", result.as_json()
        return
    if status["effective"] == "halted":
        assert result.outcome == "halted" and result.halt_reason == "budget", result.as_json()
        return
    assert level is not None, result.as_json()
    assert (level["effective"], level["reason"]) == (status["effective"], status["reason"])
