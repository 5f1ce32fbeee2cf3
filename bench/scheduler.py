"""Benchmark: 1,000 loops on short cadences in one scheduler process.

Runs the real ``Scheduler`` (real clock, real ``asyncio.sleep``, real SQLite store in a
temporary project) with mock tick functions, and reports start lateness (how long after
its due time each tick started: p50/p99/max, target p99 ≤ 1 s) and CPU per tick.

Baseline, measured in the same run: the naive design — one asyncio task per loop that
sleeps until its next due time and launches the tick, with no store and no heap. The
ratios say what the store persistence and bookkeeping cost.

    python bench/scheduler.py                 # 1,000 loops for 60 s
    python bench/scheduler.py --seconds 10    # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any

from loop_runtime.adapters.clock import SystemClock
from loop_runtime.adapters.store.sqlite import RunStore
from loop_runtime.core.schedule import LoopSchedule
from loop_runtime.scheduler import Scheduler


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def make_specs(loops: int, lo: int, hi: int, seed: int) -> list[LoopSchedule]:
    rng = random.Random(seed)
    return [LoopSchedule(f"loop-{i:04d}", rng.randint(lo, hi), 1 if hi > 1 else 0, None) for i in range(loops)]


async def mock_tick(work_ms: float) -> None:
    """A tick that yields to the loop and (optionally) waits like an I/O-bound agent call."""
    await asyncio.sleep(random.random() * work_ms / 1000 if work_ms else 0)


class LatenessProbe:
    """Measures lateness where it matters: when the tick function actually starts running.

    The scheduler's ``tick.start`` log gives each launch's due time; the tick compares it
    with the wall clock when its own code first runs (after the launch batch and the
    event loop's hand-over), so queueing inside the scheduler is counted too.
    """

    def __init__(self, clock: SystemClock, work_ms: float) -> None:
        self.clock, self.work_ms = clock, work_ms
        self.due: dict[str, datetime] = {}
        self.late: list[float] = []
        self.steady: list[float] = []  # every tick but each loop's first (the start-up burst)
        self.seen: set[str] = set()

    def on_start(self, fields: Mapping[str, Any]) -> None:
        self.due[str(fields["pattern"])] = fields["due"]

    async def tick(self, pattern: str) -> None:
        late = (self.clock.now() - self.due[pattern]).total_seconds()
        self.late.append(late)
        if pattern in self.seen:
            self.steady.append(late)
        self.seen.add(pattern)
        await mock_tick(self.work_ms)


async def run_scheduler(specs: list[LoopSchedule], seconds: float, work_ms: float, root: Path) -> dict[str, Any]:
    store = RunStore.open(root)
    clock = SystemClock()
    probe = LatenessProbe(clock, work_ms)
    counts = {"skip.overlap": 0, "tick.error": 0, "store.error": 0}

    def on_log(kind: str, fields: Mapping[str, Any]) -> None:
        if kind == "tick.start":
            probe.on_start(fields)
        elif kind in counts:
            counts[kind] += 1

    sched = Scheduler(specs, probe.tick, store=store, clock=clock, rng=random.Random(1), on_log=on_log)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    until = datetime.now(UTC) + timedelta(seconds=seconds)
    await sched.run(until=until)
    await sched.shutdown(grace_s=5)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    store.close()
    return {"late": probe.late, "steady": probe.steady, "cpu": cpu, "wall": wall, **counts}


async def run_baseline(specs: list[LoopSchedule], seconds: float, work_ms: float) -> dict[str, Any]:
    """One task per loop sleeping until its due time: no store, no heap, no overlap check."""
    late: list[float] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    ticks: set[asyncio.Task[None]] = set()

    async def timed_tick(due: float) -> None:
        late.append(loop.time() - due)
        await mock_tick(work_ms)

    async def one(spec: LoopSchedule, rng: random.Random) -> None:
        due = loop.time()
        while due <= end:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            task = asyncio.ensure_future(timed_tick(due))
            ticks.add(task)
            task.add_done_callback(ticks.discard)
            due = now + spec.interval_s + round(rng.random() * spec.jitter_s)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(s, random.Random(i)) for i, s in enumerate(specs)))
    if ticks:
        await asyncio.wait(ticks)
    return {"late": late, "cpu": time.process_time() - cpu0, "wall": time.perf_counter() - wall0}


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def report(args: argparse.Namespace, sched: dict[str, Any], base: dict[str, Any]) -> None:
    n, nb = len(sched["late"]), len(base["late"])
    p50, p99, mx = (percentile(sched["late"], q) for q in (50, 99, 100))
    b50, b99 = percentile(base["late"], 50), percentile(base["late"], 99)
    cpu_tick = sched["cpu"] / max(n, 1)
    base_tick = base["cpu"] / max(nb, 1)
    print(f"scheduler bench: {args.loops} loops, cadence {args.min_interval}-{args.max_interval} s, "
          f"{args.seconds:.0f} s, mock tick ≤ {args.work_ms:.0f} ms, SQLite WAL store")
    print(f"  ticks launched: {n} ({n / sched['wall']:.0f}/s); overlap skips {sched['skip.overlap']}, "
          f"tick errors {sched['tick.error']}, store errors {sched['store.error']}")
    verdict = "PASS" if p99 <= 1.0 else "FAIL"
    mean = statistics.fmean(sched["late"]) if n else 0.0
    print(f"  start lateness: p50 {ms(p50)}, p99 {ms(p99)}, max {ms(mx)}, mean {ms(mean)}"
          f"  (target p99 ≤ 1 s: {verdict})")
    s50, s99 = percentile(sched["steady"], 50), percentile(sched["steady"], 99)
    print(f"  steady state (each loop's first, start-up tick excluded): p50 {ms(s50)}, p99 {ms(s99)}")
    print(f"  CPU per tick: {cpu_tick * 1e6:.0f} µs; process CPU {100 * sched['cpu'] / sched['wall']:.0f}% of one core")
    print(f"baseline (one asyncio task per loop, no store), {args.baseline_seconds:.0f} s: {nb} ticks, "
          f"lateness p50 {ms(b50)}, p99 {ms(b99)}, CPU per tick {base_tick * 1e6:.0f} µs")
    print(f"ratios scheduler/baseline: CPU per tick {cpu_tick / base_tick:.2f}x, "
          f"p99 lateness {p99 / b99 if b99 > 0 else float('inf'):.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline-seconds", type=float, default=None, help="default: a quarter of --seconds, ≥ 3 s")
    parser.add_argument("--min-interval", type=int, default=1)
    parser.add_argument("--max-interval", type=int, default=5)
    parser.add_argument("--work-ms", type=float, default=5.0, help="each mock tick waits up to this long")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.baseline_seconds is None:
        args.baseline_seconds = max(3.0, args.seconds / 4)
    specs = make_specs(args.loops, args.min_interval, args.max_interval, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        sched = asyncio.run(run_scheduler(specs, args.seconds, args.work_ms, Path(tmp)))
    base = asyncio.run(run_baseline(specs, args.baseline_seconds, args.work_ms))
    report(args, sched, base)
    return 0 if percentile(sched["late"], 99) <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
