"""Clocks: the one seam through which loop-runtime learns what time it is.

Every component that needs "now" takes a ``ports.Clock`` instead of calling
``datetime.now()`` itself, so the scheduler, the budget roll-over at 00:00 UTC and the
lease expiry can be driven through days of simulated time in a test that takes
milliseconds. ``SystemClock`` is the production clock; ``ManualClock`` is the public
fake (users test their own loops with it the way we test ours).

Both return *aware* UTC datetimes: naive datetimes are refused at the edge because a
naive "now" silently shifts UTC day boundaries by the machine's offset.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, UTC

__all__ = ["ManualClock", "SystemClock", "as_utc"]


def as_utc(dt: datetime) -> datetime:
    """Return ``dt`` converted to UTC; refuse naive datetimes (their day is ambiguous)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware (UTC), got naive {dt.isoformat()}")
    return dt.astimezone(UTC)


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to: the public fake for tests and simulations.

    ``sleep`` is an ``asyncio.sleep`` stand-in that advances this clock instead of
    waiting, then yields to the event loop a few times so tasks that became ready (a
    tick that just finished) run before time moves on. Hand it to
    ``Scheduler(sleep=clock.sleep)`` to simulate days of scheduling in milliseconds.
    """

    #: how many times ``sleep`` yields to other tasks after moving the clock
    YIELDS_PER_SLEEP = 8

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward (never backward) and return the new time."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: seconds must be >= 0, got {seconds}")
        self._now = self._now + timedelta(seconds=seconds)
        return self._now

    def set(self, dt: datetime) -> None:
        """Jump to ``dt`` (backwards too: tests use it to model a wall-clock step)."""
        self._now = as_utc(dt)

    async def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` (negative counts as 0) and let ready tasks run."""
        self.advance(max(0.0, seconds))
        for _ in range(self.YIELDS_PER_SLEEP):
            await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"
