"""Benchmark: 8 processes reserving and settling on one pattern with a small cap.

Each worker process opens the same project store and, round after round (one UTC day
per round), reserves a random amount, optionally holds it open like an agent call,
settles a random actual usage ≤ the grant, and moves to the next day once ``reserve``
returns None. Every reservation of a day passes through ``BEGIN IMMEDIATE``, so the
number that matters is the overspend: settled tokens beyond the day's cap (target 0;
the issue allows at most one reservation, reported as "beyond one reservation").

Baseline, measured in the same run: one process doing the same work alone (no
contention); the ratio shows what cross-process locking costs in throughput.

    python bench/budget_contention.py                     # 8 processes, 40 days, cap 2,000
    python bench/budget_contention.py --procs 4 --days 10
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, UTC
from pathlib import Path

from loop_runtime.adapters.store.sqlite import RunStore

FIRST_DAY = date(2026, 1, 1)
PATTERN = "contended"


def worker(root: Path, name: str, days: int, cap: int, max_amount: int, hold_ms: float) -> dict[str, float]:
    """Reserve/settle through ``days`` rounds; return op counts and busy time."""
    rng = random.Random(name)
    ops = 0
    with RunStore.open(root) as store:
        while not (root / "go").exists():
            time.sleep(0.001)
        t0 = time.perf_counter()
        for d in range(days):
            day = FIRST_DAY + timedelta(days=d)
            while True:
                now = datetime.now(UTC)
                r = store.reserve(pattern=PATTERN, day=day, amount=rng.randint(1, max_amount), cap=cap,
                                  tick_id=name, now=now)
                ops += 1
                if r is None:
                    break
                if hold_ms:
                    time.sleep(rng.random() * hold_ms / 1000)
                store.settle(r.id, rng.randint(r.amount // 2, r.amount), now)
                ops += 1
        elapsed = time.perf_counter() - t0
    return {"ops": ops, "seconds": elapsed}


def run_processes(root: Path, procs: int, args: argparse.Namespace) -> tuple[list[dict[str, float]], float]:
    RunStore.open(root).close()  # create and migrate once, before the race
    cmd = [sys.executable, __file__, "--worker", str(root), "--days", str(args.days), "--cap", str(args.cap),
           "--max-amount", str(args.max_amount), "--hold-ms", str(args.hold_ms)]
    children = [subprocess.Popen([*cmd, "--name", f"w{i}"], stdout=subprocess.PIPE, text=True) for i in range(procs)]
    time.sleep(0.5)  # let every worker open the store and wait at the start line
    t0 = time.perf_counter()
    (root / "go").touch()
    results = []
    for child in children:
        out, _ = child.communicate(timeout=600)
        if child.returncode != 0:
            raise SystemExit(f"worker failed with exit code {child.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results, time.perf_counter() - t0


def audit(root: Path, days: int, cap: int, max_amount: int) -> dict[str, int]:
    """Per-day settled spend against the cap, straight from the store."""
    with RunStore.open(root) as store:
        spent = [store.spent(PATTERN, FIRST_DAY + timedelta(days=d)) for d in range(days)]
        still_open = len(store.open_reservations())
    over = [max(0, s - cap) for s in spent]
    return {
        "max_spent": max(spent),
        "min_spent": min(spent),
        "overspend": max(over),
        "overspend_beyond_one": max(max(0, s - cap - max_amount) for s in spent),
        "days_over": sum(1 for o in over if o),
        "open": still_open,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--days", type=int, default=40, help="rounds; each round is one budget day")
    parser.add_argument("--cap", type=int, default=2000)
    parser.add_argument("--max-amount", type=int, default=50)
    parser.add_argument("--hold-ms", type=float, default=0.0, help="hold each reservation open up to this long")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--name", default="w", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.name, args.days, args.cap, args.max_amount, args.hold_ms)))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
        root = Path(tmp) / "contended"
        root.mkdir()
        results, wall = run_processes(root, args.procs, args)
        report = audit(root, args.days, args.cap, args.max_amount)
        base_root = Path(tmp) / "alone"
        base_root.mkdir()
        base_results, base_wall = run_processes(base_root, 1, args)
        base_report = audit(base_root, args.days, args.cap, args.max_amount)

    ops = sum(int(r["ops"]) for r in results)
    base_ops = sum(int(r["ops"]) for r in base_results)
    print(f"budget contention bench: {args.procs} processes, {args.days} days, cap {args.cap:,} tokens/day, "
          f"reservations of 1-{args.max_amount}, hold ≤ {args.hold_ms:.0f} ms")
    print(f"  ops (reserve + settle): {ops:,} in {wall:.2f} s = {ops / wall:,.0f} ops/s; "
          f"per process {', '.join(str(int(r['ops'])) for r in results)}")
    print(f"  settled per day: {report['min_spent']:,}-{report['max_spent']:,} of {args.cap:,}; "
          f"open reservations left {report['open']}")
    print(f"  overspend beyond the cap: {report['overspend']} tokens (days over: {report['days_over']}); "
          f"beyond one reservation: {report['overspend_beyond_one']} (target 0: "
          f"{'PASS' if report['overspend'] == 0 else 'FAIL'})")
    print(f"baseline (1 process alone): {base_ops:,} ops in {base_wall:.2f} s = {base_ops / base_wall:,.0f} ops/s; "
          f"overspend {base_report['overspend']}")
    print(f"ratio contended/alone throughput: {(ops / wall) / (base_ops / base_wall):.2f}x")
    return 0 if report["overspend"] == 0 and report["open"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
