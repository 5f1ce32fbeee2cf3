"""Store retention: events and finished ticks older than ``retention_days`` are summed into daily
rollups and deleted; charts and spend keep the old days; the file gives its pages back."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from loop_runtime.adapters.store.sqlite import RunStore
from loop_runtime.adapters.store.schema import MIGRATIONS, SCHEMA_VERSION

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def fill(store: RunStore, days: int, per_day: int, *, phases: int = 2, pad: str = "") -> None:
    for back in range(days):
        at = NOW - timedelta(days=back, hours=1)
        for i in range(per_day):
            tid = f"t-{back}-{i}"
            store.begin_tick(tick_id=tid, run_id=f"r{back}-{i}", pattern="p", level="L1", backend="mock",
                             started_at=at, owner="me")
            for k in range(phases):
                store.record_phase(tid, f"phase{k}", {"pad": pad}, at)
            r = store.reserve(pattern="p", day=at.date(), amount=100, cap=10**9, tick_id=tid, now=at)
            store.settle(r.id, 10 + i, at)
            store.finish_tick(tid, outcome="no-op" if i % 2 else "report-only", tokens=10 + i, summary={},
                              finished_at=at)
            store.add_event("tick.end", {"pad": pad}, at, pattern="p", tick_id=tid)


def count(store: RunStore, sql: str) -> int:
    con = sqlite3.connect(store.path)
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def test_old_ticks_and_events_become_rollups_and_recent_ones_stay(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runtime.db", secrets=())
    fill(store, days=120, per_day=3)
    old_day = (NOW - timedelta(days=100)).date()
    spent_before = store.spent("p", old_day)
    store.begin_tick(tick_id="stuck", run_id="rs", pattern="p", level="L1", backend="mock",
                     started_at=NOW - timedelta(days=200), owner="me")  # running: recovery needs it
    store.add_escalation(pattern="p", tick_id="t-110-0", run_id="r", item_id="A", title="t", diff="d",
                         context={}, created_at=NOW - timedelta(days=110))
    report = store.prune(NOW, keep_days=90)
    cutoff = (NOW - timedelta(days=90)).date()
    kept_days = (NOW.date() - cutoff).days + 1  # the cutoff day itself is kept whole, and today
    assert report.ticks == 3 * (120 - kept_days) and report.events == report.ticks
    assert count(store, "select count(*) from ticks where started_day < '%s' and status != 'running'" % cutoff) == 0
    assert count(store, "select count(*) from ticks") == 3 * kept_days + 1
    assert store.get_tick("stuck") is not None and store.list_escalations("open")
    assert count(store, "select count(*) from phases where tick_id not in (select tick_id from ticks)") == 0
    # the rollups keep what charts need: per day, loop and outcome; spend stays readable for pruned days
    rows = [r for r in store.rollups("p") if r[0] == str(old_day)]
    assert sorted((k, c, t) for _, _, k, c, t in rows) == [("spend", 3, 33), ("tick:no-op", 1, 11),
                                                         ("tick:report-only", 2, 22)]
    assert store.spent("p", old_day) == spent_before == 33
    assert store.spent("p", NOW.date()) == 33  # today untouched
    again = store.prune(NOW, keep_days=90)
    assert (again.ticks, again.events, again.reservations) == (0, 0, 0)
    assert store.spent("p", old_day) == 33  # pruning twice never double-counts


def test_the_store_file_stays_bounded_under_retention(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runtime.db", secrets=())
    fill(store, days=40, per_day=25, phases=3, pad="x" * 400)
    store.prune(NOW, keep_days=365)  # nothing old yet: a checkpoint only
    full = store.path.stat().st_size
    store.prune(NOW, keep_days=5)
    assert count(store, "pragma auto_vacuum") == 2 and count(store, "pragma freelist_count") == 0
    assert store.path.stat().st_size < full * 0.3


def test_a_store_made_before_retention_is_migrated_and_then_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for stmt in MIGRATIONS[0]:
        con.execute(stmt)
    con.execute("INSERT INTO schema_version VALUES (1)")
    con.close()
    store = RunStore(path, secrets=())
    assert store.schema_version == SCHEMA_VERSION == 2
    fill(store, days=30, per_day=10, pad="y" * 300)
    assert count(store, "pragma auto_vacuum") == 0
    r = store.prune(NOW, keep_days=3)
    assert r.ticks == 10 * 26 and count(store, "pragma auto_vacuum") == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "90"])
def test_keep_days_must_be_a_whole_number_of_days(tmp_path: Path, bad: object) -> None:
    with RunStore(tmp_path / "runtime.db", secrets=()) as store, pytest.raises(ValueError):
        store.prune(NOW, keep_days=bad)  # type: ignore[arg-type]


def test_retention_days_is_a_project_setting_with_a_90_day_default() -> None:
    from loop_runtime.errors import ConfigError
    from loop_runtime.formats.project_config import parse_project_config

    assert parse_project_config("").retention_days == 90
    assert parse_project_config("retention_days = 30\n").retention_days == 30
    with pytest.raises(ConfigError, match="retention_days invalid: 0"):
        parse_project_config("retention_days = 0\n")


def test_history_chart_keeps_pruned_days(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runtime.db", secrets=())
    fill(store, days=10, per_day=2)
    day = (NOW - timedelta(days=6)).date()
    before = store.spent("p", day)
    store.prune(NOW, keep_days=3)
    assert store.runs_on_day("p", day) == 0 and store.spent("p", day) == before == 21
    assert isinstance(date.fromisoformat(store.rollups()[0][0]), date)
