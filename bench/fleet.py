"""Benchmark: a fleet in one daemon with the real engine, and the run store at a million ticks.

Part 1 — scheduling (issue #16): ``--repos`` git repositories × 8 loops (every bundled
pattern, L1, mock backend with a small report scenario: real state files, run log, store
and git), all in ONE ``serve_fleet`` process with the cadence shortened to ``--interval``
seconds, for ``--duration`` seconds. Prints start-lateness p50/p99 (how long after its due
time each tick was launched; target p99 ≤ 1 s) and CPU per tick (this process plus its
git children).

Part 2 — store scale: a run store filled with ``--ticks`` finished ticks (and as many
events) spread over a year, then: ``status`` (the document ``status --json`` prints) and the
dashboard overview (``GET /``) timed ``--samples`` times each — p50/p95 (target p95 ≤ 100 ms);
then ``prune`` with the default 90-day retention: how long it takes and the file size
before/after.

    python bench/fleet.py                                   # small: 10 repos × 8 loops, 30 s; 1,000,000 ticks
    python bench/fleet.py --repos 50 --duration 180        # the issue's figure
    python bench/fleet.py --skip-store  /  --skip-fleet
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

PATTERNS = ("issue-pr-repair", "pr-babysitter", "daily-triage", "ci-sweeper", "post-merge-cleanup",
            "dependency-sweeper", "changelog-drafter", "issue-triage")
SCENARIO = "triage: {decision: report, tokens: 50, items: [{id: A, title: watch this}]}\n"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_fleet(tmp: Path, repos: int) -> Path:
    toml = "".join(f'[patterns.{p}]\nlevel = "L1"\n' for p in PATTERNS)
    lines = []
    for i in range(repos):
        r = tmp / f"repo{i:03d}"
        r.mkdir()
        git(r, "init", "-q", "-b", "main")
        git(r, "config", "user.email", "bench@example.com")
        git(r, "config", "user.name", "bench")
        (r / "README.md").write_text("bench\n")
        (r / "loop-runtime.toml").write_text(toml)
        git(r, "add", "-A")
        git(r, "commit", "-qm", "init")
        lines.append(f'[[repos]]\npath = "../repo{i:03d}"\n')
    (tmp / "fleet").mkdir()
    f = tmp / "fleet" / "loop-fleet.toml"
    f.write_text("portfolio_daily_cap = 1000000000\n" + "".join(lines))
    return f


def bench_fleet(args: argparse.Namespace) -> None:
    from loop_runtime.adapters.fleet import load_fleet
    from loop_runtime.fleet_daemon import serve_fleet

    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        f = make_fleet(tmp, args.repos)
        scenario = tmp / "scenario.yaml"
        scenario.write_text(SCENARIO)
        print(f"fleet: {args.repos} repositories × {len(PATTERNS)} loops, cadence {args.interval} s, "
              f"{args.duration} s (set-up {time.perf_counter() - t0:.1f} s)")
        late: list[float] = []  # due → the tick's own code began (launch lateness + event-loop queueing)
        first: list[float] = []  # the same for each loop's first tick (the start-up wave)
        due: dict[str, object] = {}
        seen: set[str] = set()
        ticks = errors = 0

        def on_log(kind: str, fields: dict) -> None:
            nonlocal ticks, errors
            if kind == "tick.start":
                due[fields["pattern"]] = fields["due"]
            elif kind == "tick.run":
                k = fields["pattern"]
                lag = (fields["at"] - due.pop(k)).total_seconds()
                (late if k in seen else first).append(lag)
                seen.add(k)
            elif kind == "tick":
                ticks += 1
            elif kind in ("tick.error", "store.error"):
                errors += 1
                if errors <= 3:
                    print(f"  {kind}: {fields}", file=sys.stderr)

        cpu0 = time.process_time()
        ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        w0 = time.perf_counter()
        asyncio.run(serve_fleet(load_fleet(f), backend="mock", scenario=str(scenario), on_log=on_log, sync=False,
                                stop_after_s=args.duration, interval_s=args.interval))
        wall = time.perf_counter() - w0
        ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = time.process_time() - cpu0
        children = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
        print(f"  ticks finished: {ticks}, started: {len(late) + len(first)}, errors: {errors}, wall {wall:.1f} s")
        print(f"  start lateness (steady state, {len(late)} ticks): p50 {pct(late, 0.5) * 1000:.0f} ms, "
              f"p99 {pct(late, 0.99) * 1000:.0f} ms, max {max(late, default=0) * 1000:.0f} ms  (target p99 ≤ 1000 ms)")
        print(f"  start lateness (first tick of each loop, {len(first)}): p50 {pct(first, 0.5) * 1000:.0f} ms, "
              f"p99 {pct(first, 0.99) * 1000:.0f} ms")
        if ticks:
            print(f"  CPU per tick: {own / ticks * 1000:.1f} ms in the daemon + {children / ticks * 1000:.1f} ms "
                  f"in git/children; daemon busy {own / wall * 100:.0f}% of one core")


def fill_store(path: Path, ticks: int, now: datetime) -> None:
    """Bulk rows as the store writes them (same columns and encodings), spread over 365 days."""
    from loop_runtime.adapters.store.sqlite import RunStore
    from loop_runtime.adapters.store.schema import to_ts

    RunStore(path, secrets=()).close()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA synchronous = OFF")
    con.execute("BEGIN")
    step = 365 * 86400 / ticks
    batch_t, batch_e = [], []
    for i in range(ticks):
        at = now - timedelta(seconds=i * step)
        ts = to_ts(at)
        pattern = PATTERNS[i % len(PATTERNS)]
        tid = f"{pattern}-{i:012x}"
        batch_t.append((tid, ts, pattern, "L1", "mock", "finished", "report-only", 50, ts, ts[:10], ts, "bench",
                        '{"haltReason": null}'))
        batch_e.append(("tick.end", pattern, tid, '{"outcome": "report-only"}', ts))
        if len(batch_t) >= 50_000:
            _flush(con, batch_t, batch_e)
    _flush(con, batch_t, batch_e)
    con.execute("COMMIT")
    con.close()


def _flush(con: sqlite3.Connection, t: list, e: list) -> None:
    con.executemany("INSERT INTO ticks (tick_id, run_id, pattern, level, backend, status, outcome, tokens, started_at, "
                    "started_day, finished_at, owner, summary) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", t)
    con.executemany("INSERT INTO events (kind, pattern, tick_id, payload, at) VALUES (?,?,?,?,?)", e)
    t.clear()
    e.clear()


def bench_store(args: argparse.Namespace) -> None:
    from loop_runtime.adapters.store.sqlite import RunStore
    from loop_runtime.app.runtime import load_project
    from loop_runtime.app.status import project_status

    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp_s:
        root = Path(tmp_s) / "repo"
        root.mkdir()
        git(root, "init", "-q", "-b", "main")
        (root / "loop-runtime.toml").write_text("".join(f'[patterns.{p}]\nlevel = "L1"\n' for p in PATTERNS))
        now = datetime.now(UTC)
        db = root / ".loop-runtime" / "runtime.db"
        db.parent.mkdir()
        t0 = time.perf_counter()
        fill_store(db, args.ticks, now)
        size0 = db.stat().st_size
        print(f"store: {args.ticks:,} ticks + {args.ticks:,} events over 365 days "
              f"({size0 / 1e6:.0f} MB, filled in {time.perf_counter() - t0:.0f} s)")
        project = load_project(root)
        store = RunStore.open(root)
        times = _timed(lambda: project_status(project, datetime.now(UTC), store), args.samples)
        print(f"  status (8 loops): p50 {pct(times, 0.5) * 1000:.1f} ms, p95 {pct(times, 0.95) * 1000:.1f} ms "
              "(target p95 ≤ 100 ms)")
        try:
            from starlette.testclient import TestClient

            from loop_runtime.dashboard.app import create_app

            app = create_app(project, token="b" * 32, store_factory=lambda p: store)
            with TestClient(app, base_url="http://127.0.0.1") as client:
                client.get("/")
                times = []
                for _ in range(args.samples):
                    t = time.perf_counter()
                    r = client.get("/")
                    times.append(time.perf_counter() - t)
                    assert r.status_code == 200, r.status_code
            print(f"  dashboard overview GET /: p50 {pct(times, 0.5) * 1000:.1f} ms, "
                  f"p95 {pct(times, 0.95) * 1000:.1f} ms (target p95 ≤ 100 ms)")
        except ImportError as e:
            print(f"  dashboard overview: skipped ({e})")
        t = time.perf_counter()
        report = store.prune(datetime.now(UTC), keep_days=90)
        took = time.perf_counter() - t
        store.close()
        print(f"  prune (90 days): {report.ticks:,} ticks and {report.events:,} events rolled up and deleted in "
              f"{took:.1f} s; file {size0 / 1e6:.0f} MB → {db.stat().st_size / 1e6:.0f} MB")
        store = RunStore.open(root)
        times = _timed(lambda: project_status(project, datetime.now(UTC), store), args.samples)
        store.close()
        print(f"  status after prune: p95 {pct(times, 0.95) * 1000:.1f} ms")


def _timed(fn, samples: int) -> list[float]:  # noqa: ANN001
    """Wall seconds of ``samples`` calls of ``fn``."""
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=int, default=10)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds the fleet daemon runs")
    ap.add_argument("--interval", type=int, default=10, help="every loop's cadence in seconds")
    ap.add_argument("--ticks", type=int, default=1_000_000, help="ticks in the store-scale part")
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--skip-fleet", action="store_true")
    ap.add_argument("--skip-store", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("GIT_TERMINAL_PROMPT", "0")
    if not args.skip_fleet:
        bench_fleet(args)
    if not args.skip_store:
        bench_store(args)


if __name__ == "__main__":
    main()
