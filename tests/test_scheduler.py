"""The asyncio scheduler under a controllable clock: days are simulated in milliseconds.

Every test drives ``Scheduler`` with a ``ManualClock`` and ``sleep=clock.sleep`` (the clock
jumps instead of waiting), a real ``RunStore`` in ``tmp_path`` and tick functions that
record when they started. The last test is a real process stopped by SIGTERM.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone, UTC
from pathlib import Path
from typing import Any

import pytest

from loop_runtime.adapters.clock import ManualClock, SystemClock
from loop_runtime.adapters.store.sqlite import RunStore
from loop_runtime.core.schedule import LoopSchedule
from loop_runtime.errors import ConfigError
from loop_runtime.ports import Clock
from loop_runtime.scheduler import Scheduler

UTC = UTC
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class Sim:
    """A scheduler, a manual clock, a store and a tick that records its starts in the store."""

    def __init__(self, root: Path, specs: list[LoopSchedule], *, start: datetime = T0,
                 duration_s: float = 0.0, tick: Callable[[str], Any] | None = None, seed: int = 7) -> None:
        self.clock = ManualClock(start)
        self.store = RunStore.open(root)
        self.duration_s = duration_s
        self.starts: list[tuple[str, datetime]] = []
        self.logs: list[tuple[str, dict[str, Any]]] = []
        self.running: dict[str, int] = {}
        self.max_running: dict[str, int] = {}
        self.sched = Scheduler(
            specs, tick or self.tick, store=self.store, clock=self.clock, sleep=self.clock.sleep,
            rng=random.Random(seed), on_log=lambda kind, fields: self.logs.append((kind, dict(fields))),
        )

    async def tick(self, pattern: str) -> None:
        now = self.clock.now()
        self.starts.append((pattern, now))
        self.running[pattern] = self.running.get(pattern, 0) + 1
        self.max_running[pattern] = max(self.max_running.get(pattern, 0), self.running[pattern])
        tick_id = f"{pattern}-{len(self.starts)}"
        self.store.begin_tick(tick_id=tick_id, run_id=tick_id, pattern=pattern, level="L1", backend="mock",
                              started_at=now, owner="sim")
        try:
            end = now + timedelta(seconds=self.duration_s)
            while self.clock.now() < end:
                await asyncio.sleep(0)
            self.store.finish_tick(tick_id, outcome="no-op", tokens=0, summary={}, finished_at=self.clock.now())
        finally:
            self.running[pattern] -= 1

    def run(self, until: datetime) -> None:
        async def main() -> None:
            await self.sched.run(until=until)
            await self.sched.shutdown(grace_s=3600)

        asyncio.run(main())

    def start_times(self, pattern: str | None = None) -> list[datetime]:
        return [at for p, at in self.starts if pattern is None or p == pattern]

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [fields for k, fields in self.logs if k == kind]


def gaps(times: list[datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


@pytest.fixture
def sims(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[Sim] = []

    def make(*args: Any, **kwargs: Any) -> Sim:
        sim = Sim(tmp_path, *args, **kwargs)
        made.append(sim)
        return sim

    yield make
    for sim in made:
        sim.store.close()


# --------------------------------------------------------------------------- clocks


def test_manual_clock_moves_only_when_told() -> None:
    """ManualClock: now() is fixed until advance()/set(); it refuses naive times and going back by advance."""
    clock = ManualClock(T0)
    assert isinstance(clock, Clock)
    assert clock.now() == T0
    assert clock.advance(90) == T0 + timedelta(seconds=90)
    clock.set(T0 - timedelta(days=1))
    assert clock.now() == T0 - timedelta(days=1)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        ManualClock(datetime(2026, 1, 1))
    east = timezone(timedelta(hours=2))
    assert ManualClock(datetime(2026, 1, 1, 2, tzinfo=east)).now() == datetime(2026, 1, 1, tzinfo=UTC)


def test_manual_clock_sleep_advances_instead_of_waiting() -> None:
    """ManualClock.sleep moves the clock by the requested time (negative counts as zero)."""
    clock = ManualClock(T0)
    asyncio.run(clock.sleep(86400))
    asyncio.run(clock.sleep(-5))
    assert clock.now() == T0 + timedelta(days=1)


def test_system_clock_is_aware_utc() -> None:
    """SystemClock returns an aware UTC datetime close to time.time()."""
    now = SystemClock().now()
    assert now.utcoffset() == timedelta(0)
    assert abs(now.timestamp() - time.time()) < 60


# --------------------------------------------------------------------------- cadence


def test_ticks_follow_the_cadence(sims) -> None:  # type: ignore[no-untyped-def]
    """An hourly loop without jitter starts at once and then exactly every hour, never late."""
    sim = sims([LoopSchedule("hourly", 3600, 0, None)])
    sim.run(until=T0 + timedelta(hours=5))
    assert sim.start_times() == [T0 + timedelta(hours=h) for h in range(6)]
    assert {f["late_s"] for f in sim.kinds("tick.start")} == {0.0}


def test_jitter_stays_within_its_bounds(sims) -> None:  # type: ignore[no-untyped-def]
    """With jitter, every gap is within [interval, interval + jitter] and the gaps vary."""
    sim = sims([LoopSchedule("j", 600, 60, None)])
    sim.run(until=T0 + timedelta(days=1))
    g = gaps(sim.start_times())
    assert len(g) > 100
    assert all(600 <= x <= 660 for x in g)
    assert len(set(g)) > 10


def test_a_cadence_range_runs_at_its_slower_end_plus_jitter(sims) -> None:  # type: ignore[no-untyped-def]
    """A 5m-15m loop is scheduled every 15 minutes plus at most the default jitter."""
    from loop_runtime.core.cadence import parse_cadence, schedule_interval_s

    spec = LoopSchedule.for_interval("r", schedule_interval_s(parse_cadence("5m-15m")))
    sim = sims([spec])
    sim.run(until=T0 + timedelta(hours=6))
    assert all(900 <= x <= 990 for x in gaps(sim.start_times()))


def test_many_loops_each_keep_their_own_cadence(sims) -> None:  # type: ignore[no-untyped-def]
    """Loops with different cadences interleave; each keeps its own interval."""
    sim = sims([LoopSchedule("fast", 300, 0, None), LoopSchedule("slow", 3600, 0, None)])
    sim.run(until=T0 + timedelta(hours=2))
    assert len(sim.start_times("fast")) == 25 and set(gaps(sim.start_times("fast"))) == {300.0}
    assert len(sim.start_times("slow")) == 3 and set(gaps(sim.start_times("slow"))) == {3600.0}


# --------------------------------------------------------------------------- overlap


def test_a_tick_never_overlaps_its_previous_tick(sims) -> None:  # type: ignore[no-untyped-def]
    """A 25-minute tick on a 10-minute cadence: the due times inside it are skipped and logged."""
    sim = sims([LoopSchedule("slowtick", 600, 0, None)], duration_s=1500)
    sim.run(until=T0 + timedelta(hours=1))
    assert sim.max_running["slowtick"] == 1
    assert sim.start_times() == [T0, T0 + timedelta(minutes=30), T0 + timedelta(minutes=60)]
    skips = sim.kinds("skip.overlap")
    assert [s["due"] for s in skips] == [T0 + timedelta(minutes=m) for m in (10, 20, 40, 50)]
    stored = [e for e in sim.store.events_since(0, 1000) if e.kind == "skip.overlap"]
    assert len(stored) == 4 and stored[0].pattern == "slowtick"


def test_different_loops_may_run_at_the_same_time(sims) -> None:  # type: ignore[no-untyped-def]
    """Overlap is per loop: two long-running loops both start on time."""
    sim = sims([LoopSchedule("a", 600, 0, None), LoopSchedule("b", 600, 0, None)], duration_s=300)
    sim.run(until=T0 + timedelta(minutes=30))
    assert sim.start_times("a") == sim.start_times("b") == [T0 + timedelta(minutes=m) for m in (0, 10, 20, 30)]
    assert sim.kinds("skip.overlap") == []


# --------------------------------------------------------------------------- runs/day and UTC days


def test_runs_per_day_cap_waits_for_the_next_utc_day(sims) -> None:  # type: ignore[no-untyped-def]
    """With runs/day 3 an hourly loop runs three times, then resumes at 00:00 UTC."""
    start = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)
    sim = sims([LoopSchedule("capped", 3600, 0, 3)], start=start)
    sim.run(until=datetime(2026, 3, 11, 5, 0, tzinfo=UTC))
    hours = [(t.day, t.hour) for t in sim.start_times()]
    assert hours == [(10, 20), (10, 21), (10, 22), (11, 0), (11, 1), (11, 2)]
    caps = sim.kinds("skip.runs-cap")
    assert [(c["due"].day, c["due"].hour) for c in caps] == [(10, 23), (11, 3)]
    assert caps[0]["next_due"] == datetime(2026, 3, 11, tzinfo=UTC)
    assert caps[0]["runs"] == 3 and caps[0]["cap"] == 3
    assert sim.store.runs_on_day("capped", date(2026, 3, 10)) == 3


def test_the_day_rolls_over_at_midnight_utc(sims) -> None:  # type: ignore[no-untyped-def]
    """A 1/day loop that ran at 23:30 UTC runs again at 00:30 UTC: a new UTC day, a new allowance."""
    sim = sims([LoopSchedule("daily", 3600, 0, 1)], start=datetime(2026, 3, 10, 23, 30, tzinfo=UTC))
    sim.run(until=datetime(2026, 3, 12, 0, 30, tzinfo=UTC))
    assert sim.start_times() == [
        datetime(2026, 3, 10, 23, 30, tzinfo=UTC),
        datetime(2026, 3, 11, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 12, 0, 0, tzinfo=UTC),
    ]


def test_capped_loops_resume_with_jitter_after_midnight(sims) -> None:  # type: ignore[no-untyped-def]
    """A capped loop with jitter resumes within [00:00, 00:00 + jitter] UTC."""
    sim = sims([LoopSchedule("c", 3600, 300, 1)], start=datetime(2026, 3, 10, 22, 0, tzinfo=UTC))
    sim.run(until=datetime(2026, 3, 11, 1, 0, tzinfo=UTC))
    second = sim.start_times()[1]
    midnight = datetime(2026, 3, 11, tzinfo=UTC)
    assert midnight <= second <= midnight + timedelta(seconds=300)


# --------------------------------------------------------------------------- restart


def test_restart_after_downtime_runs_one_catch_up_not_a_burst(tmp_path: Path) -> None:
    """After 5 h of downtime a 10-minute loop ticks once at restart, then on its cadence."""
    spec = LoopSchedule("ten", 600, 0, None)
    first = Sim(tmp_path, [spec])
    first.run(until=T0 + timedelta(hours=1))
    assert len(first.start_times()) == 7
    first.store.close()

    restart = T0 + timedelta(hours=6)
    second = Sim(tmp_path, [spec], start=restart)
    second.run(until=restart + timedelta(minutes=30))
    assert second.start_times() == [restart + timedelta(minutes=m) for m in (0, 10, 20, 30)]
    second.store.close()


def test_restart_before_the_due_time_waits_for_it(tmp_path: Path) -> None:
    """A restart 20 minutes into an hourly loop's interval waits the remaining 40 minutes."""
    spec = LoopSchedule("hourly", 3600, 0, None)
    first = Sim(tmp_path, [spec])
    first.run(until=T0)
    assert first.store.get_next_due("hourly") == T0 + timedelta(hours=1)
    first.store.close()

    restart = T0 + timedelta(minutes=20)
    second = Sim(tmp_path, [spec], start=restart)
    second.run(until=T0 + timedelta(hours=2))
    assert second.start_times() == [T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    second.store.close()


def test_next_due_is_persisted_after_each_launch(sims) -> None:  # type: ignore[no-untyped-def]
    """The store holds each loop's next due time, equal to the scheduler's own."""
    sim = sims([LoopSchedule("a", 600, 60, None), LoopSchedule("b", 900, 0, None)])
    sim.run(until=T0 + timedelta(hours=3))
    due = sim.sched.due_times()
    assert set(due) == {"a", "b"}
    assert {p: sim.store.get_next_due(p) for p in due} == due


# --------------------------------------------------------------------------- failures


def test_a_failing_tick_is_logged_and_the_loop_goes_on(sims) -> None:  # type: ignore[no-untyped-def]
    """A tick that raises is logged as tick.error (and stored as an event); later ticks still run."""
    calls: list[datetime] = []

    async def boom(pattern: str) -> None:
        calls.append(sim.clock.now())
        raise RuntimeError("agent exploded")

    sim = sims([LoopSchedule("bad", 600, 0, None)], tick=boom)
    sim.run(until=T0 + timedelta(minutes=30))
    assert len(calls) == 4
    errors = sim.kinds("tick.error")
    assert len(errors) == 4 and errors[0]["error"] == "RuntimeError: agent exploded"
    assert [e.kind for e in sim.store.events_since(0)].count("tick.error") == 4


def test_an_unreadable_store_is_logged_not_fatal(sims) -> None:  # type: ignore[no-untyped-def]
    """With the store gone, the scheduler logs store.error and keeps ticking uncapped loops."""
    sim = sims([LoopSchedule("a", 600, 0, None)], tick=lambda p: asyncio.sleep(0))
    sim.store.close()
    sim.run(until=T0 + timedelta(minutes=20))
    assert len(sim.kinds("tick.start")) == 3
    assert {f["call"] for f in sim.kinds("store.error")} >= {"get_next_due", "set_next_dues"}


def test_duplicate_loops_are_a_config_error(tmp_path: Path) -> None:
    """Two schedules for one pattern are refused."""
    with RunStore.open(tmp_path) as store, pytest.raises(ConfigError, match="duplicate loop"):
        Scheduler([LoopSchedule("a", 60, 0, None)] * 2, lambda p: asyncio.sleep(0), store=store,
                  clock=ManualClock(T0))


# --------------------------------------------------------------------------- stopping


def test_shutdown_lets_a_running_tick_finish_within_the_grace(sims) -> None:  # type: ignore[no-untyped-def]
    """A tick that completes during the grace period is not cancelled; nothing new starts."""
    release = asyncio.Event()
    done: list[str] = []

    async def tick(pattern: str) -> None:
        sim.starts.append((pattern, sim.clock.now()))
        await release.wait()
        done.append(pattern)

    sim = sims([LoopSchedule("a", 60, 0, None)], tick=tick)

    async def main() -> None:
        runner = asyncio.ensure_future(sim.sched.run())
        while not sim.starts:
            await asyncio.sleep(0)
        sim.sched.request_stop()
        await runner
        stopping = asyncio.ensure_future(sim.sched.shutdown(grace_s=60))
        release.set()
        await stopping

    asyncio.run(main())
    assert done == ["a"] and len(sim.starts) == 1
    assert sim.kinds("tick.cancelled") == []
    assert sim.kinds("shutdown.done") == [{"abandoned": []}]


def test_shutdown_cancels_after_the_grace_and_settles_reservations(sims) -> None:  # type: ignore[no-untyped-def]
    """A tick still running after the grace is cancelled (it checkpoints); its open reservation is settled in full."""
    day = date(2026, 3, 10)

    async def tick(pattern: str) -> None:
        store = sim.store
        store.begin_tick(tick_id="t1", run_id="r1", pattern=pattern, level="L2", backend="mock",
                         started_at=sim.clock.now(), owner="me")
        store.reserve(pattern=pattern, day=day, amount=5000, cap=100_000, tick_id="t1", now=sim.clock.now())
        try:
            await asyncio.Event().wait()  # an agent call that never returns
        except asyncio.CancelledError:
            store.record_phase("t1", "checkpoint", {"phase": "implementing"}, sim.clock.now())
            store.set_tick_status("t1", "resumable")
            raise

    sim = sims([LoopSchedule("a", 60, 0, None)], tick=tick)

    async def main() -> None:
        runner = asyncio.ensure_future(sim.sched.run())
        while not sim.kinds("tick.start"):
            await asyncio.sleep(0)
        await sim.sched.shutdown(grace_s=30)
        await runner

    asyncio.run(main())
    assert len(sim.kinds("tick.start")) == 1
    assert sim.kinds("tick.cancelled") == [{"pattern": "a"}]
    assert [p.phase for p in sim.store.phases("t1")] == ["checkpoint"]
    assert sim.store.get_tick("t1").status == "resumable"
    assert sim.store.open_reservations() == [] and sim.store.spent("a", day) == 5000
    assert sim.kinds("shutdown.settled")[0]["tokens"] == 5000


def test_request_stop_wakes_a_sleeping_scheduler(tmp_path: Path) -> None:
    """run() returns promptly on request_stop even while it sleeps on the real clock."""
    with RunStore.open(tmp_path) as store:
        started: list[str] = []

        async def tick(pattern: str) -> None:
            started.append(pattern)

        sched = Scheduler([LoopSchedule("daily", 86400, 0, None)], tick, store=store, clock=SystemClock())

        async def main() -> None:
            runner = asyncio.ensure_future(sched.run())
            while not started:
                await asyncio.sleep(0.01)
            sched.request_stop()
            await asyncio.wait_for(runner, timeout=10)
            await sched.shutdown(grace_s=1)

        asyncio.run(main())
        assert started == ["daily"]


def test_a_second_signal_cancels_running_ticks_at_once(tmp_path: Path) -> None:
    """First SIGTERM starts a graceful shutdown; a second one cancels the running tick without waiting."""
    from loop_runtime.scheduler import install_signal_handlers

    clock = ManualClock(T0)
    logs: list[tuple[str, dict[str, Any]]] = []

    async def sleep(seconds: float) -> None:
        if seconds >= 3600:  # the grace period: never elapses by itself in this test
            await asyncio.Event().wait()
        await clock.sleep(seconds)

    async def tick(pattern: str) -> None:
        await asyncio.Event().wait()

    class FakeLoop:
        def __init__(self) -> None:
            self.handlers: dict[int, Callable[[], None]] = {}

        def add_signal_handler(self, sig: int, fn: Callable[..., None], *args: Any) -> None:
            self.handlers[sig] = lambda: fn(*args)

        def remove_signal_handler(self, sig: int) -> bool:
            return self.handlers.pop(sig, None) is not None

    loop = FakeLoop()
    with RunStore.open(tmp_path) as store:
        sched = Scheduler([LoopSchedule("a", 60, 0, None)], tick, store=store, clock=clock, sleep=sleep,
                          on_log=lambda kind, fields: logs.append((kind, dict(fields))))

        async def main() -> None:
            remove = install_signal_handlers(sched, loop, grace_s=86400)  # type: ignore[arg-type]
            assert set(loop.handlers) == {signal.SIGTERM, signal.SIGINT}
            runner = asyncio.ensure_future(sched.run())
            while not any(k == "tick.start" for k, _ in logs):
                await asyncio.sleep(0)
            loop.handlers[signal.SIGTERM]()
            await runner
            for _ in range(20):
                await asyncio.sleep(0)
            assert sched.stopping and sched.running_patterns == ("a",)
            loop.handlers[signal.SIGINT]()
            await sched.shutdown(grace_s=1)  # joins the shutdown already under way
            remove()
            assert loop.handlers == {}

        asyncio.run(main())
    kinds = [k for k, _ in logs]
    assert kinds.count("tick.cancelled") == 1 and kinds.count("shutdown.start") == 1
    assert dict(logs)["shutdown.start"]["grace_s"] == 86400


SIGNAL_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from loop_runtime.adapters.clock import SystemClock
    from loop_runtime.adapters.store.sqlite import RunStore
    from loop_runtime.core.schedule import LoopSchedule
    from loop_runtime.scheduler import Scheduler, install_signal_handlers

    root = Path(sys.argv[1])

    async def main():
        store = RunStore.open(root)
        clock = SystemClock()

        async def tick(pattern):
            store.begin_tick(tick_id="t1", run_id="r1", pattern=pattern, level="L1", backend="mock",
                             started_at=clock.now(), owner="proc")
            (root / "started").touch()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                store.record_phase("t1", "checkpoint", {"why": "signal"}, clock.now())
                store.set_tick_status("t1", "resumable")
                raise

        sched = Scheduler([LoopSchedule("p", 3600, 0, None)], tick, store=store, clock=clock)
        install_signal_handlers(sched, asyncio.get_running_loop(), grace_s=0.2)
        await sched.run()
        await sched.shutdown(grace_s=0.2)
        store.close()
        print("clean exit")

    asyncio.run(main())
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_scheduler_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM/SIGINT: no new ticks, the running tick is checkpointed, the process exits 0."""
    script = tmp_path / "daemon.py"
    script.write_text(SIGNAL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the scheduler never started its tick"
            time.sleep(0.02)
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "clean exit" in out
    with RunStore.open(tmp_path) as store:
        tick = store.get_tick("t1")
        assert tick is not None and tick.status == "resumable"
        assert [p.phase for p in store.phases("t1")] == ["checkpoint"]
