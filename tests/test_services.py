"""``app.services.Services``: one project's composition root, built once and shared by every driver."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loop_runtime.app import actions
from loop_runtime.app.runtime import load_project
from loop_runtime.app.services import Services, using
from loop_runtime.errors import ConfigError, GateDenied
from tests.support.gitrepo import make_repo

STORE = Path(".loop-runtime") / "runtime.db"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"src/a.py": "x = 1\n"})


def test_the_store_is_opened_once_lazily_and_closed_by_whoever_opened_it(repo: Path) -> None:
    services = Services.open(repo)
    assert not (repo / STORE).exists()  # building services creates nothing
    assert services.existing_store() is None and not (repo / STORE).exists()  # looking creates nothing either
    store = services.store
    assert services.store is store and services.existing_store() is store  # once, the same connection
    services.close()
    with pytest.raises(Exception):
        store.list_escalations("open")  # closed: it was ours
    again = Services.open(repo)
    assert again.existing_store() is not None  # the file exists now
    again.close()


def test_a_store_handed_in_stays_open_when_the_services_close(repo: Path) -> None:
    from loop_runtime.adapters.store.sqlite import RunStore

    store = RunStore.open(repo)
    try:
        with Services.open(load_project(repo), store=store) as services:
            assert services.store is store
        assert store.list_escalations("open") == []  # still usable: the caller owns it
    finally:
        store.close()


def test_using_shares_the_callers_services_and_builds_closed_ones_otherwise(repo: Path) -> None:
    project = load_project(repo)
    with Services.open(project) as mine:
        with using(mine) as same:
            assert same is mine
        with using(project) as built:
            assert built is not mine and built.project is project


def test_state_writers_keep_the_levels_allowlist_and_a_file_writer_its_one_file(repo: Path) -> None:
    services = Services.open(repo)
    l1 = services.state_writer("L1", "STATE.md")
    l1.write("STATE.md", "# State\n")
    with pytest.raises(GateDenied):
        l1.write("loop-ledger.json", "{}")
    services.state_writer("L2", "STATE.md").write("loop-ledger.json", "{}\n")
    one = services.file_writer("loop-pause-all")
    one.write("loop-pause-all", "paused\n")
    with pytest.raises(GateDenied):
        one.write("src/a.py", "x = 2\n")
    assert (repo / "src/a.py").read_text() == "x = 1\n"


def test_a_kill_switch_symlinked_out_of_the_project_is_refused_not_followed(repo: Path, tmp_path: Path) -> None:
    """kill writes through the state writer: a switch file that is a link outside the root is not written."""
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    os.symlink(outside, repo / "loop-pause-all")
    with pytest.raises(ConfigError, match="escapes the project root"):
        actions.kill(load_project(repo), None, reason="lunch")
    assert outside.read_text() == "keep me\n"


def test_actions_accept_the_services_and_share_their_store(repo: Path) -> None:
    with Services.open(repo) as services:
        store = services.store
        name = actions.kill(services, None, reason="lunch")
        assert (repo / name).read_text().startswith("paused by ")
        cleared, remaining = actions.resume(services, None)
        assert cleared == [name] and remaining == []
        kinds = [e.kind for e in store.events_since(0)]
        assert kinds == ["kill", "resume"]
        assert services.store is store  # no second connection was opened


def test_a_budget_notifier_is_deduplicated_through_the_store(repo: Path) -> None:
    from datetime import UTC, datetime

    from loop_runtime.adapters.clock import ManualClock
    from loop_runtime.adapters.notify import RecordingNotifier
    from loop_runtime.ports import Notification

    inner = RecordingNotifier()
    clock = ManualClock(datetime(2026, 3, 10, 23, 0, tzinfo=UTC))
    with Services.open(repo, clock=clock, notifier=inner) as services:
        notifier = services.budget_notifier()
        assert notifier is not None
        for _ in range(3):
            notifier.notify(Notification("budget-80", "over 80%", "", pattern="daily-triage"))
        notifier.notify(Notification("escalation", "held", "", pattern="daily-triage"))
        clock.advance(3600 * 2)  # past 00:00 UTC: a new day, one more budget note
        notifier.notify(Notification("budget-80", "over 80%", "", pattern="daily-triage"))
    assert [n.kind for n in inner.notes] == ["budget-80", "escalation", "budget-80"]
    assert Services.open(repo).budget_notifier() is None  # no notifier configured: none


def test_begun_runs_leave_out_ticks_the_kill_switch_paused(repo: Path) -> None:
    """The journal's runs for runs/day (``StoreJournal.run_ids_on_day``): every tick begun that day but paused
    ones, which did no work — whether or not the run log has their line yet."""
    from datetime import UTC, datetime, timedelta

    from loop_runtime.adapters.store.journal import StoreJournal

    day = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    with Services.open(repo) as services:
        store = services.store
        for i, reason in enumerate(["paused", None, "budget", "paused"]):
            at = day + timedelta(minutes=i)
            store.begin_tick(tick_id=f"t{i}", run_id=f"r{i}", pattern="p", level="L1", backend="mock",
                             started_at=at, owner="x")
            store.finish_tick(f"t{i}", outcome="halted" if reason else "no-op", tokens=0,
                              summary={"haltReason": reason} if reason else {}, finished_at=at)
        store.begin_tick(tick_id="y", run_id="ry", pattern="p", level="L1", backend="mock",
                         started_at=day - timedelta(days=1), owner="x")
        journal = StoreJournal(store, "me")
        assert journal.run_ids_on_day("p", day.date()) == {"r1", "r2"}
        assert journal.run_ids_on_day("p", (day - timedelta(days=1)).date()) == {"ry"}
        assert journal.run_ids_on_day("other", day.date()) == set()
