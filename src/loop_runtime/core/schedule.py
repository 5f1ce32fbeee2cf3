"""Next-due arithmetic for the scheduler: pure functions, no clock, no I/O.

Rules (the scheduler driver, ``loop_runtime.scheduler``, carries them out):

* **Interval.** A loop runs every ``interval_s`` seconds. For a cadence range such as
  ``5m-15m`` the documented default (R7) is the *slower* end, 900 s: an unattended
  loop should err on the side of spending less; ``core.cadence.schedule_interval_s``
  makes that choice, this module receives the number.
* **Jitter.** Each next due time adds ``round(u × jitter_s)`` with ``u`` drawn
  uniformly from [0, 1) by the driver's RNG, so loops started together drift apart
  and do not hit a provider at the same second. The default jitter is
  ``min(10 % of the interval, 300 s)`` (``default_jitter_s``): small enough that a
  ``5m`` loop still runs about every 5 minutes, capped so a daily loop is not
  shifted by hours.
* **Restart, no burst.** After a restart the next due time comes from the store. If
  it is still ahead, it is kept (capped at one interval + jitter from now, so a loop
  whose cadence was shortened does not wait out the old long interval); if it is
  in the past, the loop runs *once* now — missed runs are never replayed.
* **Runs per day.** ``runs/day`` from ``loop-budget.md`` caps the ticks started in one
  UTC day; a capped loop resumes at the next 00:00 UTC (``next_day_start``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, UTC

from ..errors import ConfigError

__all__ = [
    "LoopSchedule",
    "default_jitter_s",
    "first_due",
    "next_day_start",
    "next_due",
    "runs_cap_reached",
    "utc_day",
]

MAX_DEFAULT_JITTER_S = 300
"""Upper bound of the default jitter: a daily loop moves by at most 5 minutes."""


def default_jitter_s(interval_s: int) -> int:
    """The documented default jitter: 10 % of the interval, at most 300 s."""
    _check_int("schedule", "interval_s", interval_s, 1)
    return min(interval_s // 10, MAX_DEFAULT_JITTER_S)


def _check_int(where: str, field: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(where, field, value, message=f"{field} invalid: {value!r} (must be an integer >= {minimum})")


@dataclass(frozen=True)
class LoopSchedule:
    """When one loop runs: its interval, how much jitter, and its daily run cap."""

    pattern: str
    interval_s: int
    jitter_s: int
    max_runs_per_day: int | None

    def __post_init__(self) -> None:
        where = f"schedule[{self.pattern}]"
        _check_int(where, "interval_s", self.interval_s, 1)
        _check_int(where, "jitter_s", self.jitter_s, 0)
        if self.max_runs_per_day is not None:
            _check_int(where, "max_runs_per_day", self.max_runs_per_day, 0)

    @classmethod
    def for_interval(cls, pattern: str, interval_s: int, max_runs_per_day: int | None = None) -> LoopSchedule:
        """A schedule with the default jitter for ``interval_s``."""
        return cls(pattern, interval_s, default_jitter_s(interval_s), max_runs_per_day)


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"schedule times must be timezone-aware (UTC), got naive {dt.isoformat()}")
    return dt.astimezone(UTC)


def utc_day(dt: datetime) -> date:
    """The UTC calendar day of ``dt`` (budgets and runs/day roll over at 00:00 UTC)."""
    return _utc(dt).date()


def first_due(spec: LoopSchedule, now: datetime, stored_next_due: datetime | None) -> datetime:
    """When a loop should first run after (re)start: at most ONE catch-up, never a burst.

    A stored due time still ahead of ``now`` is kept, capped at ``now + interval +
    jitter`` (a cadence shortened since it was stored takes effect at once). A due
    time in the past, or none, means "run now": however many runs were missed, the
    loop runs once and then resumes its normal cadence.
    """
    now = _utc(now)
    if stored_next_due is None:
        return now
    stored = _utc(stored_next_due)
    if stored <= now:
        return now
    return min(stored, now + timedelta(seconds=spec.interval_s + spec.jitter_s))


def next_due(spec: LoopSchedule, started_at: datetime, jitter_unit: float) -> datetime:
    """``started_at + interval + round(jitter_unit × jitter_s)``; ``jitter_unit`` in [0, 1)."""
    if not 0.0 <= jitter_unit < 1.0:
        raise ValueError(f"jitter_unit must be in [0, 1), got {jitter_unit}")
    return _utc(started_at) + timedelta(seconds=spec.interval_s + round(jitter_unit * spec.jitter_s))


def runs_today(logged: Iterable[str], begun: Iterable[str] = ()) -> int:
    """THE count of a loop's runs today for its ``runs/day`` cap: distinct run ids the run log shows
    (``formats.runlog.run_ids_on_day``: other tools' runs too, paused ones left out) together with the
    ones this runtime began (the store's ticks, logged or not yet). The scheduler, the engine and
    ``status`` all count this way; before, the scheduler counted the store and the tick the run log."""
    return len(set(logged) | set(begun))


def runs_cap_reached(spec: LoopSchedule, runs_today: int) -> bool:
    """True when the loop already ran its ``runs/day`` today (no cap → never)."""
    return spec.max_runs_per_day is not None and runs_today >= spec.max_runs_per_day


def next_day_start(now: datetime) -> datetime:
    """00:00 UTC of the day after ``now``: where a loop capped for today resumes."""
    return datetime.combine(utc_day(now) + timedelta(days=1), time(0, 0), tzinfo=UTC)
