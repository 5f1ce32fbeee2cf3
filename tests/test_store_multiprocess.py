"""Several real processes on one project store: no overspend, one ticker per pattern, one approval.

Each test starts worker processes running this very file (``python <this file> <mode> ...``);
the workers wait for a start file so they hit the database at the same moment.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from datetime import date, datetime, UTC
from pathlib import Path

import pytest

from loop_runtime.adapters.store.sqlite import RunStore

pytestmark = pytest.mark.slow

DAY = date(2026, 3, 10)
WORKER_TIMEOUT_S = 120


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- workers (child side)


def _wait_for_go(root: Path) -> None:
    deadline = time.monotonic() + 60
    while not (root / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.002)


def worker_budget(root: Path, name: str, cap: int) -> dict[str, object]:
    """Reserve/settle on one pattern until the cap is exhausted."""
    rng = random.Random(name)
    with RunStore.open(root) as store:
        _wait_for_go(root)
        granted = settled = ops = 0
        while True:
            r = store.reserve(pattern="p", day=DAY, amount=rng.randint(1, 40), cap=cap, tick_id=name, now=_now())
            if r is None:
                break
            time.sleep(rng.random() * 0.002)  # the "agent call" runs while the reservation is open
            actual = rng.randint(r.amount // 2, r.amount)
            store.settle(r.id, actual, _now())
            granted, settled, ops = granted + r.amount, settled + actual, ops + 1
    return {"granted": granted, "settled": settled, "ops": ops}


def worker_lease(root: Path, name: str, rounds: int) -> dict[str, object]:
    """Tick pattern 'p' `rounds` times, only while holding its lease."""
    with RunStore.open(root) as store:
        _wait_for_go(root)
        for n in range(rounds):
            while not store.acquire_lease("p", name, 30.0, _now()):
                time.sleep(0.001)
            tick_id = f"{name}-{n}"
            store.add_event("enter", {"owner": name}, _now(), pattern="p", tick_id=tick_id)
            store.begin_tick(tick_id=tick_id, run_id=tick_id, pattern="p", level="L1", backend="mock",
                             started_at=_now(), owner=name)
            time.sleep(0.001)
            store.finish_tick(tick_id, outcome="no-op", tokens=0, summary={}, finished_at=_now())
            store.add_event("exit", {"owner": name}, _now(), pattern="p", tick_id=tick_id)
            store.release_lease("p", name)
    return {"rounds": rounds}


def worker_approve(root: Path, name: str, esc_id: str) -> dict[str, object]:
    """Try to approve one escalation; report whether this process won."""
    from loop_runtime.errors import StoreError

    with RunStore.open(root) as store:
        _wait_for_go(root)
        try:
            store.resolve_escalation(esc_id, status="approved", decided_by=name, reason="", at=_now())
        except StoreError as exc:
            return {"won": False, "error": str(exc)}
    return {"won": True}


def worker_open(root: Path, name: str) -> dict[str, object]:
    """Open a fresh project store at the same moment as the others (migration race)."""
    _wait_for_go(root)
    with RunStore.open(root) as store:
        store.add_event("opened", {"by": name}, _now())
        return {"version": store.schema_version}


def _child_main(argv: list[str]) -> None:
    mode, root, name, *rest = argv
    fn = {"budget": worker_budget, "lease": worker_lease, "approve": worker_approve, "open": worker_open}[mode]
    args: list[object] = [int(a) if a.isdigit() else a for a in rest]
    print(json.dumps(fn(Path(root), name, *args)))  # type: ignore[operator]


# --------------------------------------------------------------------------- parent side


def run_workers(root: Path, mode: str, names: list[str], *args: object) -> list[dict[str, object]]:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, mode, str(root), name, *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name in names
    ]
    time.sleep(0.3)  # let every worker reach its start line; correctness does not depend on it
    (root / "go").touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=WORKER_TIMEOUT_S)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_concurrent_reservers_never_overspend_the_cap(tmp_path: Path) -> None:
    """Four processes reserving/settling on one pattern with a small cap never pass it together."""
    RunStore.open(tmp_path).close()
    cap = 3000
    results = run_workers(tmp_path, "budget", [f"w{i}" for i in range(4)], cap)
    with RunStore.open(tmp_path) as store:
        assert store.open_reservations() == []
        spent = store.spent("p", DAY)
    assert spent == sum(int(r["settled"]) for r in results)  # type: ignore[call-overload]
    assert spent <= cap
    assert sum(int(r["ops"]) for r in results) > 50  # type: ignore[call-overload]
    assert sum(1 for r in results if int(r["ops"]) > 0) >= 2  # type: ignore[call-overload]


def test_a_pattern_is_ticked_by_one_process_at_a_time(tmp_path: Path) -> None:
    """Three processes contending for one pattern's lease never overlap their ticks."""
    RunStore.open(tmp_path).close()
    rounds = 15
    run_workers(tmp_path, "lease", ["a", "b", "c"], rounds)
    with RunStore.open(tmp_path) as store:
        events = store.events_since(0, limit=10_000)
        ticks = store.recent_ticks("p", limit=1000)
    assert len(events) == 2 * 3 * rounds and len(ticks) == 3 * rounds
    holder = None
    for ev in events:  # commit order: enter/exit must strictly alternate, same owner in a pair
        if ev.kind == "enter":
            assert holder is None, f"{ev.payload['owner']} entered while {holder} held the pattern"
            holder = ev.payload["owner"]
        else:
            assert holder == ev.payload["owner"]
            holder = None
    assert len({e.payload["owner"] for e in events}) == 3


def test_an_escalation_is_approved_by_exactly_one_process(tmp_path: Path) -> None:
    """Three processes approving the same escalation: one wins, the others get StoreError."""
    with RunStore.open(tmp_path) as store:
        esc = store.add_escalation(pattern="p", tick_id="t", run_id="r", item_id="i", title="t", diff="d",
                                   context={}, created_at=_now())
    results = run_workers(tmp_path, "approve", ["a", "b", "c"], esc)
    assert sorted(r["won"] for r in results) == [False, False, True]
    assert all("already approved" in str(r["error"]) for r in results if not r["won"])


def test_processes_opening_a_fresh_store_together_migrate_once(tmp_path: Path) -> None:
    """Four processes creating runtime.db at the same moment all succeed on one schema."""
    results = run_workers(tmp_path, "open", ["a", "b", "c", "d"])
    assert len({r["version"] for r in results}) == 1
    with RunStore.open(tmp_path) as store:
        assert len(store.events_since(0)) == 4


if __name__ == "__main__":
    _child_main(sys.argv[1:])
