"""The embedded scheduler: one asyncio process runs every enabled loop on its cadence.

``loop-runtime start`` builds one ``LoopSchedule`` per loop and hands the scheduler a
``run_tick(pattern)`` coroutine (the engine's tick). The scheduler only decides *when*;
the arithmetic lives in ``core.schedule`` and the tick itself in the engine.

How it runs:

* a min-heap of (due time, pattern); the loop sleeps until the earliest due time
  (at most ``max_sleep_s`` at once, so a wall-clock step is noticed), launches every
  tick that is due as its own ``asyncio`` task and persists the new next-due times
  to the store in one transaction, so a restart resumes from them (``first_due``:
  one catch-up at most, never a burst);
* a due time whose previous tick of the same loop is still running is skipped
  (``skip.overlap``) and the loop is rescheduled one interval later — ticks of one
  loop never overlap (cross-process exclusion is the engine's lease);
* ``runs/day``: a loop that already ran ``max_runs_per_day`` times this UTC day is
  skipped (``skip.runs-cap``) until 00:00 UTC (plus its jitter). Runs are counted by
  ``core.schedule.runs_today`` over the run log and the store's ticks, as the engine and
  ``status`` count them (``runs_today``: ``app.rules.runs_counter``; without it, the store's
  ticks alone);
* a tick that raises is logged (``tick.error``) and never stops the scheduler.

Stopping: ``request_stop()`` launches nothing new and wakes ``run()``;
``shutdown(grace_s)`` then waits up to ``grace_s`` for running ticks, cancels the
rest (the tick checkpoints and settles on ``CancelledError``) and finally settles
the budget reservations of ticks that are gone (``RunStore.settle_orphans``).
``install_signal_handlers`` wires SIGTERM/SIGINT to that; a second signal cancels
running ticks at once.

Time is injected: ``clock`` says what time it is and ``sleep`` waits. With a
``ManualClock`` and ``sleep=clock.sleep`` a test simulates days in milliseconds.

Log kinds passed to ``on_log(kind, fields)``: ``scheduler.start``, ``scheduler.stop``,
``tick.start`` (with ``late_s``), ``tick.done``, ``tick.error``, ``tick.cancelled``,
``skip.overlap``, ``skip.runs-cap``, ``store.error``, ``shutdown.start``,
``shutdown.settled``, ``shutdown.abandoned``, ``shutdown.done``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from .core.schedule import LoopSchedule, first_due, next_day_start, next_due, runs_cap_reached, runs_today, utc_day
from .errors import ConfigError, LoopError, StoreError
from .ports import Clock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .ports.store import Store

__all__ = ["Scheduler", "install_signal_handlers"]

_log = logging.getLogger("loop_runtime.scheduler")
_QUIET = frozenset({"tick.start", "tick.done"})

LogFn = Callable[[str, Mapping[str, Any]], None]
RunsToday = Callable[[str, date], int]
"""``(pattern, UTC day) → runs so far`` (``app.rules.runs_counter``)."""

CANCEL_WAIT_S = 10.0
"""After cancelling, how long (real time) to wait for ticks to finish their checkpoint."""


def _default_log(kind: str, fields: Mapping[str, Any]) -> None:
    _log.log(logging.DEBUG if kind in _QUIET else logging.INFO, "%s %s", kind, dict(fields))


def _error_text(exc: BaseException) -> str:
    from .core.redact import clip

    return clip(f"{type(exc).__name__}: {exc}", 300)


class Scheduler:
    """Runs each loop's ticks on its cadence; see the module docstring for the rules."""

    def __init__(
        self,
        specs: Sequence[LoopSchedule],
        run_tick: Callable[[str], Awaitable[Any]],
        *,
        store: Store,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_log: LogFn | None = None,
        max_sleep_s: float = 30.0,
        runs_today: RunsToday | None = None,
    ) -> None:
        self._specs: dict[str, LoopSchedule] = {}
        for spec in specs:
            if spec.pattern in self._specs:
                raise ConfigError("scheduler", "patterns", spec.pattern, message=f"duplicate loop: {spec.pattern!r}")
            self._specs[spec.pattern] = spec
        self._run_tick = run_tick
        self._store = store
        self._runs_today: RunsToday = runs_today or (lambda p, day: runs_today_of(store, p, day))
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._on_log = on_log or _default_log
        self._max_sleep_s = max_sleep_s
        self._heap: list[tuple[datetime, int, str]] = []
        self._seq = itertools.count()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._sleeper: asyncio.Task[None] | None = None
        self._stopping = False
        self._running = False
        self._closing: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ state

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def running_patterns(self) -> tuple[str, ...]:
        """Loops with a tick in flight right now."""
        return tuple(p for p, t in self._tasks.items() if not t.done())

    def due_times(self) -> dict[str, datetime]:
        """The next due time of every scheduled loop (for ``status`` and the dashboard)."""
        return {pattern: due for due, _, pattern in sorted(self._heap)}

    # ------------------------------------------------------------------ main loop

    async def run(self, until: datetime | None = None) -> None:
        """Launch ticks as they fall due until stopped (or until ``until`` has passed).

        Returns without waiting for ticks still running: call ``shutdown`` for that.
        """
        if self._running:
            raise RuntimeError("Scheduler.run() is already running")
        self._running = True
        try:
            self._seed()
            self._emit("scheduler.start", {"loops": len(self._specs), "until": until})
            while not self._stopping:
                now = self._clock.now()
                if until is not None and now >= until and (not self._heap or self._heap[0][0] > until):
                    break
                wake = self._heap[0][0] if self._heap else now + timedelta(seconds=self._max_sleep_s)
                if until is not None:
                    wake = min(wake, until)
                if wake > now:
                    await self._nap_until(wake)
                    continue
                self._launch_due(now, until)
        finally:
            self._running = False
            self._emit("scheduler.stop", {"running": list(self.running_patterns)})

    def _seed(self) -> None:
        """Build the heap from the stored next-due times (one catch-up at most after downtime)."""
        self._heap.clear()
        now = self._clock.now()
        for pattern, spec in self._specs.items():
            stored = self._store_call("get_next_due", partial(self._store.get_next_due, pattern))
            self._push(pattern, first_due(spec, now, stored))

    async def _nap_until(self, wake: datetime) -> None:
        """Sleep until ``wake``, measured when the nap really starts: ticks launched just before run their
        synchronous first steps ahead of it, and a duration computed before them would oversleep by that."""

        async def nap() -> None:
            seconds = (wake - self._clock.now()).total_seconds()
            if seconds > 0:
                await self._sleep(min(seconds, self._max_sleep_s))

        await self._nap_task(nap())

    async def _nap(self, seconds: float) -> None:
        """Sleep (interruptibly: ``request_stop`` cancels the nap)."""
        await self._nap_task(self._sleep(min(seconds, self._max_sleep_s)))

    async def _nap_task(self, coro: Any) -> None:
        self._sleeper = asyncio.ensure_future(coro)
        try:
            await asyncio.wait({self._sleeper})
        finally:
            self._sleeper = None

    def _launch_due(self, now: datetime, until: datetime | None) -> None:
        """Pop every loop due by ``now``, launch or skip it, persist the new due times."""
        updates: dict[str, datetime] = {}
        while self._heap and self._heap[0][0] <= now and not self._stopping:
            if until is not None and self._heap[0][0] > until:
                break
            due, _, pattern = heapq.heappop(self._heap)
            nxt = self._fire(self._specs[pattern], due, self._clock.now())
            self._push(pattern, nxt)
            updates[pattern] = nxt
        if updates:
            self._store_call("set_next_dues", lambda: self._store.set_next_dues(updates))

    def _fire(self, spec: LoopSchedule, due: datetime, now: datetime) -> datetime:
        """Launch one due tick (or skip it); return the loop's next due time."""
        pattern = spec.pattern
        following = next_due(spec, now, self._rng.random())
        if pattern in self._tasks and not self._tasks[pattern].done():
            self._skip("skip.overlap", pattern, now, {"due": due, "next_due": following})
            return following
        if spec.max_runs_per_day is not None:
            runs = self._store_call("runs_today", lambda: self._runs_today(pattern, utc_day(now)), (LoopError,))
            if runs is None:  # store or run log unreadable: fail closed, try again one interval later
                return following
            if runs_cap_reached(spec, runs):
                resume = next_day_start(now) + timedelta(seconds=round(self._rng.random() * spec.jitter_s))
                fields = {"due": due, "runs": runs, "cap": spec.max_runs_per_day, "next_due": resume}
                self._skip("skip.runs-cap", pattern, now, fields)
                return resume
        self._tasks[pattern] = asyncio.ensure_future(self._tick(pattern))
        self._emit("tick.start", {"pattern": pattern, "due": due, "late_s": (now - due).total_seconds()})
        return following

    async def _tick(self, pattern: str) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self._run_tick(pattern)
        except asyncio.CancelledError:
            self._emit("tick.cancelled", {"pattern": pattern})
            raise
        except Exception as exc:  # a failing tick is logged, never fatal to the scheduler
            error = _error_text(exc)
            self._emit("tick.error", {"pattern": pattern, "error": error})
            event = partial(self._store.add_event, "tick.error", {"error": error}, self._clock.now(), pattern=pattern)
            self._store_call("add_event", event)
        else:
            self._emit("tick.done", {"pattern": pattern, "duration_s": loop.time() - started})

    def _skip(self, kind: str, pattern: str, now: datetime, fields: Mapping[str, Any]) -> None:
        self._emit(kind, {"pattern": pattern, **fields})
        self._store_call("add_event", lambda: self._store.add_event(kind, fields, now, pattern=pattern))

    def _push(self, pattern: str, due: datetime) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), pattern))

    def _store_call(self, what: str, call: Callable[[], Any], errors: tuple[type[Exception], ...] = (StoreError,)) -> Any:
        """Run a store call; a ``StoreError`` (or one of ``errors``) is logged (``store.error``) and yields None."""
        try:
            return call()
        except errors as exc:
            self._emit("store.error", {"call": what, "error": _error_text(exc)})
            return None

    def _emit(self, kind: str, fields: Mapping[str, Any]) -> None:
        try:
            self._on_log(kind, fields)
        except Exception:  # a broken log sink must not stop scheduling
            _log.exception("on_log failed for %s", kind)

    # ------------------------------------------------------------------ stopping

    def request_stop(self) -> None:
        """Launch no new ticks; wake ``run()`` so it returns."""
        self._stopping = True
        if self._sleeper is not None and not self._sleeper.done():
            self._sleeper.cancel()

    def begin_shutdown(self, grace_s: float) -> asyncio.Future[None]:
        """Start ``shutdown`` once (idempotent) and return its future; safe from a signal handler."""
        self.request_stop()
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shutdown(grace_s))
        return self._closing

    async def shutdown(self, grace_s: float) -> None:
        """Stop, let running ticks finish for up to ``grace_s``, cancel the rest, settle orphans."""
        await asyncio.shield(self.begin_shutdown(grace_s))

    def cancel_running(self) -> None:
        """Cancel every running tick now (a second SIGTERM/SIGINT)."""
        for task in self._tasks.values():
            if not task.done():
                task.cancel()

    async def _shutdown(self, grace_s: float) -> None:
        pending = {t for t in self._tasks.values() if not t.done()}
        self._emit("shutdown.start", {"running": list(self.running_patterns), "grace_s": grace_s})
        if pending:
            pending = await self._wait_grace(pending, grace_s)
        if pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=CANCEL_WAIT_S)
            if pending:
                self._emit("shutdown.abandoned", {"running": list(self.running_patterns)})
        live = {p for p, t in self._tasks.items() if not t.done()}
        now = self._clock.now()
        settled = self._store_call("settle_orphans", lambda: self._store.settle_orphans(set(), now))
        if settled:
            tokens = sum(r.settled or 0 for r in settled)
            self._emit("shutdown.settled", {"reservations": [r.id for r in settled], "tokens": tokens})
        self._emit("shutdown.done", {"abandoned": sorted(live)})

    async def _wait_grace(self, pending: set[asyncio.Task[None]], grace_s: float) -> set[asyncio.Task[None]]:
        """Wait until every task is done or ``grace_s`` (measured by the injected sleep) passed."""
        timer: asyncio.Future[None] = asyncio.ensure_future(self._sleep(max(0.0, grace_s)))
        try:
            while pending and not timer.done():
                done, _ = await asyncio.wait(pending | {timer}, return_when=asyncio.FIRST_COMPLETED)
                pending = pending - done
        finally:
            timer.cancel()
        return {t for t in pending if not t.done()}


def runs_today_of(store: Store, pattern: str, day: date) -> int:
    """``core.schedule.runs_today`` over the store's ticks alone (a scheduler given no run log)."""
    return runs_today((), store.tick_run_ids(pattern, day))


def install_signal_handlers(
    scheduler: Scheduler, loop: asyncio.AbstractEventLoop, grace_s: float
) -> Callable[[], None]:
    """SIGTERM/SIGINT → graceful shutdown with ``grace_s``; a second signal cancels ticks now.

    Returns a function that removes the handlers. Where the loop cannot install signal
    handlers (Windows, non-main thread) this is a no-op.
    """
    installed: list[signal.Signals] = []

    def handle(sig: signal.Signals) -> None:
        if scheduler.stopping:
            _log.warning("%s again: cancelling running ticks now", sig.name)
            scheduler.cancel_running()
            return
        _log.warning("%s: stopping (grace %.0f s)", sig.name, grace_s)
        scheduler.begin_shutdown(grace_s)

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, handle, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(sig)

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return remove
