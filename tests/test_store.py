"""The SQLite run store: leases, tick journal, events, budget, escalations, schedule, errors."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date, datetime, timedelta, timezone, UTC
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.adapters.store.sqlite import RunStore
from loop_runtime.adapters.store.schema import SCHEMA_VERSION
from loop_runtime.errors import StoreError

UTC = UTC
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = date(2026, 3, 10)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore.open(tmp_path)
    yield s
    s.close()


def begin(store: RunStore, tick_id: str, *, pattern: str = "triage", at: datetime = T0, owner: str = "me") -> None:
    store.begin_tick(tick_id=tick_id, run_id=f"run-{tick_id}", pattern=pattern, level="L1", backend="mock",
                     started_at=at, owner=owner)


# --------------------------------------------------------------------------- opening


def test_open_creates_a_git_ignored_wal_database(tmp_path: Path) -> None:
    """open() creates .loop-runtime/runtime.db in WAL mode and a .gitignore containing '*'."""
    with RunStore.open(tmp_path) as s:
        assert s.path == tmp_path / ".loop-runtime" / "runtime.db"
    assert (tmp_path / ".loop-runtime" / ".gitignore").read_text() == "*\n"
    conn = sqlite3.connect(tmp_path / ".loop-runtime" / "runtime.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


def test_open_keeps_an_existing_gitignore(tmp_path: Path) -> None:
    """A user's own .loop-runtime/.gitignore is never overwritten."""
    (tmp_path / ".loop-runtime").mkdir()
    (tmp_path / ".loop-runtime" / ".gitignore").write_text("runtime.db\n")
    RunStore.open(tmp_path).close()
    assert (tmp_path / ".loop-runtime" / ".gitignore").read_text() == "runtime.db\n"


def test_reopening_keeps_data_and_does_not_remigrate(tmp_path: Path) -> None:
    """Data survives a close/reopen; the schema version stays one row."""
    with RunStore.open(tmp_path) as s:
        s.set_next_due("triage", T0)
    with RunStore.open(tmp_path) as s:
        assert s.get_next_due("triage") == T0
        assert s.schema_version == SCHEMA_VERSION


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    """A runtime.db with a higher schema version than we know raises StoreError, untouched."""
    RunStore.open(tmp_path).close()
    db = tmp_path / ".loop-runtime" / "runtime.db"
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 5,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        RunStore.open(tmp_path)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION + 5
    conn.close()


def test_a_corrupt_database_is_a_store_error(tmp_path: Path) -> None:
    """Garbage in runtime.db is reported as StoreError, not sqlite3.DatabaseError."""
    (tmp_path / ".loop-runtime").mkdir()
    (tmp_path / ".loop-runtime" / "runtime.db").write_bytes(b"not a database" * 200)
    with pytest.raises(StoreError, match=r"runtime\.db"):
        RunStore.open(tmp_path)


def test_a_missing_project_root_is_a_store_error(tmp_path: Path) -> None:
    """Opening the store of a project root that does not exist names the path."""
    with pytest.raises(StoreError, match="does not exist"):
        RunStore.open(tmp_path / "nope")


def test_using_a_closed_store_is_a_store_error(tmp_path: Path) -> None:
    """Calls after close() raise StoreError."""
    s = RunStore.open(tmp_path)
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.get_next_due("x")


def test_naive_timestamps_are_refused(store: RunStore) -> None:
    """A naive datetime has no UTC meaning and is refused."""
    with pytest.raises(ValueError):
        store.set_next_due("p", datetime(2026, 1, 1))


def test_timestamps_are_stored_as_utc(store: RunStore) -> None:
    """An aware non-UTC time comes back as the same instant in UTC."""
    east = timezone(timedelta(hours=5))
    store.set_next_due("p", datetime(2026, 3, 10, 17, 0, tzinfo=east))
    due = store.get_next_due("p")
    assert due == T0 and due.tzinfo == UTC


# --------------------------------------------------------------------------- leases


def test_lease_is_exclusive_until_it_expires(store: RunStore) -> None:
    """One owner holds a pattern's lease; another gets it only after expiry."""
    assert store.acquire_lease("triage", "a", 60, T0)
    assert not store.acquire_lease("triage", "b", 60, T0 + timedelta(seconds=59))
    assert store.lease_holder("triage", T0 + timedelta(seconds=59)) == "a"
    assert store.lease_holder("triage", T0 + timedelta(seconds=60)) is None
    assert store.acquire_lease("triage", "b", 60, T0 + timedelta(seconds=61))
    assert store.lease_holder("triage", T0 + timedelta(seconds=61)) == "b"


def test_lease_is_reentrant_and_per_pattern(store: RunStore) -> None:
    """The holder may re-acquire; other patterns are independent."""
    assert store.acquire_lease("triage", "a", 60, T0)
    assert store.acquire_lease("triage", "a", 60, T0 + timedelta(seconds=10))
    assert store.acquire_lease("ci", "b", 60, T0)


def test_renew_extends_only_the_holders_lease(store: RunStore) -> None:
    """renew_lease works for the holder and fails once another owner took the lease."""
    store.acquire_lease("triage", "a", 60, T0)
    assert store.renew_lease("triage", "a", 60, T0 + timedelta(seconds=50))
    assert not store.acquire_lease("triage", "b", 60, T0 + timedelta(seconds=100))
    assert store.acquire_lease("triage", "b", 60, T0 + timedelta(seconds=111))
    assert not store.renew_lease("triage", "a", 60, T0 + timedelta(seconds=112))


def test_release_frees_the_lease_only_for_its_owner(store: RunStore) -> None:
    """release_lease by a non-holder is a no-op; by the holder it frees the pattern."""
    store.acquire_lease("triage", "a", 60, T0)
    store.release_lease("triage", "b")
    assert store.lease_holder("triage", T0) == "a"
    store.release_lease("triage", "a")
    assert store.lease_holder("triage", T0) is None
    assert store.acquire_lease("triage", "b", 60, T0)


# --------------------------------------------------------------------------- ticks


def test_tick_lifecycle_and_journal(store: RunStore) -> None:
    """A tick is begun running, journals phases in order and finishes with its outcome."""
    begin(store, "t1")
    store.record_phase("t1", "triage", {"decision": "act", "at": T0}, T0)
    store.record_phase("t1", "implement", {"files": ["a.py"]}, T0 + timedelta(seconds=5))
    assert [t.tick_id for t in store.open_ticks()] == ["t1"]
    store.finish_tick("t1", outcome="fix-proposed", tokens=1234, summary={"items": 1},
                      finished_at=T0 + timedelta(minutes=2))
    tick = store.get_tick("t1")
    assert tick is not None
    assert (tick.status, tick.outcome, tick.tokens, tick.owner) == ("finished", "fix-proposed", 1234, "me")
    assert tick.summary == {"items": 1}
    assert tick.finished_at == T0 + timedelta(minutes=2)
    phases = store.phases("t1")
    assert [p.phase for p in phases] == ["triage", "implement"]
    assert phases[0].data == {"decision": "act", "at": "2026-03-10T12:00:00.000000Z"}
    assert store.open_ticks() == []


def test_a_halted_outcome_marks_the_tick_halted(store: RunStore) -> None:
    """finish_tick with outcome 'halted' sets status halted."""
    begin(store, "t1")
    store.finish_tick("t1", outcome="halted", tokens=0, summary={}, finished_at=T0)
    assert store.get_tick("t1").status == "halted"


def test_duplicate_tick_ids_are_refused(store: RunStore) -> None:
    """begin_tick twice with one tick_id raises StoreError."""
    begin(store, "t1")
    with pytest.raises(StoreError):
        begin(store, "t1")


def test_phases_of_an_unknown_tick_are_refused(store: RunStore) -> None:
    """The journal only accepts phases of a begun tick."""
    with pytest.raises(StoreError):
        store.record_phase("ghost", "triage", {}, T0)


def test_set_tick_status(store: RunStore) -> None:
    """set_tick_status accepts the five statuses and refuses others and unknown ticks."""
    begin(store, "t1")
    store.set_tick_status("t1", "resumable")
    assert store.get_tick("t1").status == "resumable"
    with pytest.raises(StoreError, match="valid"):
        store.set_tick_status("t1", "paused")
    with pytest.raises(StoreError):
        store.set_tick_status("ghost", "crashed")
    with pytest.raises(StoreError):
        store.finish_tick("ghost", outcome="no-op", tokens=0, summary={}, finished_at=T0)


def test_tick_queries(store: RunStore) -> None:
    """recent_ticks is newest first, last_tick per pattern, run ids and run counts per UTC day."""
    begin(store, "a1", pattern="a", at=T0 - timedelta(days=1))
    begin(store, "a2", pattern="a", at=T0)
    begin(store, "a3", pattern="a", at=T0 + timedelta(hours=11, minutes=59))
    begin(store, "b1", pattern="b", at=T0 + timedelta(minutes=1))
    assert [t.tick_id for t in store.recent_ticks()] == ["a3", "b1", "a2", "a1"]
    assert [t.tick_id for t in store.recent_ticks("a", limit=2)] == ["a3", "a2"]
    assert store.last_tick("b").tick_id == "b1"
    assert store.last_tick("none") is None
    assert store.get_tick("none") is None
    assert store.tick_run_ids("a", DAY) == {"run-a2", "run-a3"}
    assert store.runs_on_day("a", DAY) == 2
    assert store.runs_on_day("a", DAY - timedelta(days=1)) == 1
    assert [t.tick_id for t in store.open_ticks("b")] == ["b1"]


# --------------------------------------------------------------------------- events


def test_events_are_numbered_and_readable_since_an_id(store: RunStore) -> None:
    """Event ids grow; events_since returns later events in order, up to the limit."""
    ids = [store.add_event("tick.start", {"n": n}, T0, pattern="p", tick_id=f"t{n}") for n in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    later = store.events_since(ids[1])
    assert [e.payload["n"] for e in later] == [2, 3, 4]
    assert (later[0].kind, later[0].pattern, later[0].tick_id, later[0].at) == ("tick.start", "p", "t2", T0)
    assert [e.id for e in store.events_since(0, limit=2)] == ids[:2]


# --------------------------------------------------------------------------- budget


def test_reserve_grants_up_to_the_remaining_cap(store: RunStore) -> None:
    """reserve grants min(amount, remaining) and None when nothing remains."""
    r1 = store.reserve(pattern="p", day=DAY, amount=600, cap=1000, tick_id="t", now=T0)
    r2 = store.reserve(pattern="p", day=DAY, amount=600, cap=1000, tick_id="t", now=T0)
    assert (r1.amount, r2.amount) == (600, 400)
    assert store.reserve(pattern="p", day=DAY, amount=1, cap=1000, tick_id="t", now=T0) is None
    assert store.reserved("p", DAY) == 1000 and store.spent("p", DAY) == 0


def test_settling_frees_what_was_not_used(store: RunStore) -> None:
    """Settling below the reservation returns the difference to the day's budget."""
    r1 = store.reserve(pattern="p", day=DAY, amount=1000, cap=1000, tick_id="t", now=T0)
    store.settle(r1.id, 300, T0)
    assert store.spent("p", DAY) == 300 and store.reserved("p", DAY) == 0
    r2 = store.reserve(pattern="p", day=DAY, amount=5000, cap=1000, tick_id="t", now=T0)
    assert r2.amount == 700


def test_settle_is_idempotent(store: RunStore) -> None:
    """Settling twice keeps the first actual value."""
    r = store.reserve(pattern="p", day=DAY, amount=500, cap=1000, tick_id="t", now=T0)
    store.settle(r.id, 200, T0)
    store.settle(r.id, 500, T0)
    assert store.spent("p", DAY) == 200
    assert store.open_reservations() == []


def test_settle_of_an_unknown_reservation_is_a_store_error(store: RunStore) -> None:
    """Settling an id that was never reserved raises StoreError."""
    with pytest.raises(StoreError, match="no reservation"):
        store.settle(999, 1, T0)


def test_an_overshoot_is_settled_at_the_actual_usage(store: RunStore) -> None:
    """An agent that used more than its reservation is charged what it really used."""
    r = store.reserve(pattern="p", day=DAY, amount=100, cap=1000, tick_id="t", now=T0)
    store.settle(r.id, 150, T0)
    assert store.spent("p", DAY) == 150


def test_external_spend_and_topups_count(store: RunStore) -> None:
    """External run-log spend reduces, and human top-ups raise, today's headroom."""
    store.set_external_spent("p", DAY, 700)
    store.set_external_spent("p", DAY, 800)  # replaced, not added
    assert store.external_spent("p", DAY) == 800
    assert store.reserve(pattern="p", day=DAY, amount=500, cap=1000, tick_id="t", now=T0).amount == 200
    assert store.reserve(pattern="p", day=DAY, amount=500, cap=1000, tick_id="t", now=T0) is None
    store.add_topup("p", DAY, 250, "release week", T0)
    assert store.topups("p", DAY) == 250
    assert store.reserve(pattern="p", day=DAY, amount=500, cap=1000, tick_id="t", now=T0).amount == 250
    [rec] = store.topup_records("p")
    assert (rec.day, rec.tokens, rec.reason, rec.at) == (DAY, 250, "release week", T0)
    with pytest.raises(ValueError):
        store.add_topup("p", DAY, 0, "nothing", T0)


def test_budget_rolls_over_at_the_utc_day(store: RunStore) -> None:
    """Spend is per UTC day: a new day starts with the full cap."""
    r = store.reserve(pattern="p", day=DAY, amount=1000, cap=1000, tick_id="t", now=T0)
    store.settle(r.id, 1000, T0)
    assert store.reserve(pattern="p", day=DAY, amount=1, cap=1000, tick_id="t", now=T0) is None
    tomorrow = DAY + timedelta(days=1)
    assert store.reserve(pattern="p", day=tomorrow, amount=1000, cap=1000, tick_id="t", now=T0).amount == 1000
    assert store.reserve(pattern="other", day=DAY, amount=10, cap=1000, tick_id="t", now=T0).amount == 10


def test_reserve_refuses_a_non_positive_amount(store: RunStore) -> None:
    """Reserving zero or negative tokens is a programming error."""
    with pytest.raises(ValueError):
        store.reserve(pattern="p", day=DAY, amount=0, cap=1000, tick_id="t", now=T0)


def test_open_reservations_filter_by_pattern(store: RunStore) -> None:
    """open_reservations lists unsettled reservations, optionally for one pattern."""
    a = store.reserve(pattern="a", day=DAY, amount=10, cap=100, tick_id="ta", now=T0)
    b = store.reserve(pattern="b", day=DAY, amount=20, cap=100, tick_id="tb", now=T0)
    assert [r.id for r in store.open_reservations()] == [a.id, b.id]
    assert store.open_reservations("b") == [b]
    assert (b.pattern, b.day, b.amount, b.tick_id, b.settled) == ("b", DAY, 20, "tb", None)


def test_settle_orphans_fails_closed_at_the_full_amount(store: RunStore) -> None:
    """A reservation whose tick died is settled at its full amount."""
    begin(store, "dead", pattern="p")
    r = store.reserve(pattern="p", day=DAY, amount=400, cap=1000, tick_id="dead", now=T0)
    settled = store.settle_orphans(set(), T0)
    assert [(x.id, x.settled) for x in settled] == [(r.id, 400)]
    assert store.spent("p", DAY) == 400 and store.reserved("p", DAY) == 0
    assert store.settle_orphans(set(), T0) == []


def test_settle_orphans_uses_the_journaled_usage(store: RunStore) -> None:
    """When the journal recorded the call's usage, the orphan is settled at that figure."""
    begin(store, "dead", pattern="p")
    r1 = store.reserve(pattern="p", day=DAY, amount=400, cap=1000, tick_id="dead", now=T0)
    r2 = store.reserve(pattern="p", day=DAY, amount=400, cap=1000, tick_id="dead", now=T0)
    store.record_phase("dead", "agent", {"reservation_id": r1.id, "usage": {"total": 120}}, T0)
    store.record_phase("dead", "agent", {"reservation_id": r2.id, "tokens": 50}, T0)
    settled = {x.id: x.settled for x in store.settle_orphans(set(), T0)}
    assert settled == {r1.id: 120, r2.id: 50}
    assert store.spent("p", DAY) == 170


def test_settle_orphans_leaves_live_ticks_alone(store: RunStore) -> None:
    """Reservations of live ticks — ours, or running under another process's lease — stay open."""
    begin(store, "mine", pattern="p")
    begin(store, "theirs", pattern="q", owner="other")
    store.acquire_lease("q", "other", 60, T0)
    mine = store.reserve(pattern="p", day=DAY, amount=10, cap=1000, tick_id="mine", now=T0)
    theirs = store.reserve(pattern="q", day=DAY, amount=10, cap=1000, tick_id="theirs", now=T0)
    no_tick = store.reserve(pattern="p", day=DAY, amount=10, cap=1000, tick_id="never-begun", now=T0)
    assert [r.id for r in store.settle_orphans({"mine"}, T0)] == [no_tick.id]
    assert {r.id for r in store.open_reservations()} == {mine.id, theirs.id}
    # once the other process's lease expires, its reservation is an orphan too
    assert [r.id for r in store.settle_orphans({"mine"}, T0 + timedelta(seconds=61))] == [theirs.id]


# Invariant: whatever sequence of reserves and settles (actual ≤ granted) happens in a day,
# settled + open reservations never exceed cap + top-ups − external spend.
@settings(max_examples=40, deadline=None)
@given(
    cap=st.integers(1, 5000),
    external=st.integers(0, 3000),
    ops=st.lists(
        st.tuples(st.sampled_from(["reserve", "settle", "topup"]), st.integers(1, 2000), st.floats(0, 1)),
        max_size=30,
    ),
)
def test_reservations_never_pass_the_cap(tmp_path_factory: pytest.TempPathFactory, cap: int, external: int,
                                         ops: list[tuple[str, int, float]]) -> None:
    """No sequence of reserve/settle/top-up ever lets settled + reserved pass the cap."""
    with RunStore.open(tmp_path_factory.mktemp("prop")) as s:
        s.set_external_spent("p", DAY, external)
        topped = 0
        for op, n, frac in ops:
            if op == "reserve":
                r = s.reserve(pattern="p", day=DAY, amount=n, cap=cap, tick_id="t", now=T0)
                assert r is None or 0 < r.amount <= n
            elif op == "settle" and s.open_reservations():
                r = s.open_reservations()[0]
                s.settle(r.id, int(r.amount * frac), T0)
            elif op == "topup":
                s.add_topup("p", DAY, n, "prop", T0)
                topped += n
            assert s.spent("p", DAY) + s.reserved("p", DAY) <= max(0, cap + topped - external)


def test_threads_sharing_one_store_do_not_overspend(store: RunStore) -> None:
    """Eight threads reserving on one connection never pass the cap together."""
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            r = store.reserve(pattern="p", day=DAY, amount=7, cap=1000, tick_id="t", now=T0)
            if r is None:
                return
            store.settle(r.id, r.amount, T0)
            with lock:
                granted.append(r.amount)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 1000 == store.spent("p", DAY)


# --------------------------------------------------------------------------- escalations


def add_esc(store: RunStore, item: str = "item-1", tick: str = "t1") -> str:
    return store.add_escalation(
        pattern="p", tick_id=tick, run_id="r1", item_id=item, title="Fix flaky test",
        diff="diff --git a/x b/x\n", context={"reason": "risky path"}, created_at=T0,
    )


def test_escalation_ids_are_short_stable_and_idempotent(store: RunStore) -> None:
    """Ids look like esc-<8 hex>; recording the same (tick, item) twice returns the same id."""
    esc = add_esc(store)
    assert esc.startswith("esc-") and len(esc) == 12 and int(esc[4:], 16) >= 0
    assert add_esc(store) == esc
    assert add_esc(store, item="item-2") != esc
    assert len(store.list_escalations()) == 2


def test_escalation_round_trip_and_resolution(store: RunStore) -> None:
    """An open escalation keeps its diff and context; resolving records who, why and the result."""
    esc = add_esc(store)
    rec = store.get_escalation(esc)
    assert (rec.status, rec.diff, rec.context, rec.created_at) == (
        "open", "diff --git a/x b/x\n", {"reason": "risky path"}, T0
    )
    store.resolve_escalation(esc, status="approved", decided_by="ana", reason="looks fine", at=T0,
                             result={"commit": "abc"})
    rec = store.get_escalation(esc)
    assert (rec.status, rec.decided_by, rec.reason, rec.decided_at, rec.result) == (
        "approved", "ana", "looks fine", T0, {"commit": "abc"}
    )
    assert store.list_escalations() == []
    assert [e.id for e in store.list_escalations("approved")] == [esc]
    assert [e.id for e in store.list_escalations(None)] == [esc]


def test_an_escalation_cannot_be_decided_twice(store: RunStore) -> None:
    """A second approve (or a reject after approve) raises StoreError and changes nothing."""
    esc = add_esc(store)
    store.resolve_escalation(esc, status="approved", decided_by="ana", reason="", at=T0)
    with pytest.raises(StoreError, match="already approved"):
        store.resolve_escalation(esc, status="rejected", decided_by="bob", reason="no", at=T0)
    assert store.get_escalation(esc).decided_by == "ana"


def test_resolving_unknown_or_with_a_bad_status_fails(store: RunStore) -> None:
    """Unknown ids and statuses other than approved/rejected are StoreErrors."""
    with pytest.raises(StoreError, match="no escalation"):
        store.resolve_escalation("esc-00000000", status="approved", decided_by="a", reason="", at=T0)
    esc = add_esc(store)
    with pytest.raises(StoreError, match="status invalid"):
        store.resolve_escalation(esc, status="open", decided_by="a", reason="", at=T0)  # type: ignore[arg-type]
    assert store.get_escalation("esc-ffffffff") is None


# --------------------------------------------------------------------------- schedule


def test_next_due_times_persist(store: RunStore) -> None:
    """set_next_due / set_next_dues store one due time per pattern; the last write wins."""
    assert store.get_next_due("a") is None
    store.set_next_due("a", T0)
    store.set_next_dues({"a": T0 + timedelta(hours=1), "b": T0 + timedelta(hours=2)})
    store.set_next_dues({})
    assert store.get_next_due("a") == T0 + timedelta(hours=1)
    assert store.get_next_due("b") == T0 + timedelta(hours=2)


def test_recent_patterns_are_the_patterns_of_the_newest_ticks_only(store: RunStore) -> None:
    """``list``/``status`` ask which loops have a story here without reading whole tick rows."""
    from datetime import timedelta

    for i, pattern in enumerate(["old", "a", "b", "a", "c"]):
        begin(store, f"t{i}", pattern=pattern, at=T0 + timedelta(minutes=i))
    assert store.recent_patterns(200) == {"old", "a", "b", "c"}
    assert store.recent_patterns(3) == {"b", "a", "c"}  # the newest three ticks: c, a, b
    assert store.recent_patterns(3) == {t.pattern for t in store.recent_ticks(None, 3)}
