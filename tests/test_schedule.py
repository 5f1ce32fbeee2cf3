"""Next-due arithmetic (core.schedule): cadence, jitter, restart without burst, runs/day, UTC days."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone, UTC

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.core.schedule import (
    LoopSchedule,
    default_jitter_s,
    first_due,
    next_day_start,
    next_due,
    runs_cap_reached,
    utc_day,
)
from loop_runtime.errors import ConfigError

UTC = UTC
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

aware_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
specs = st.builds(
    LoopSchedule,
    pattern=st.just("loop"),
    interval_s=st.integers(1, 7 * 86400),
    jitter_s=st.integers(0, 3600),
    max_runs_per_day=st.none() | st.integers(0, 500),
)


def test_default_jitter_is_ten_percent_capped_at_five_minutes() -> None:
    """The documented default jitter: 10% of the interval, never more than 300 s."""
    assert default_jitter_s(300) == 30
    assert default_jitter_s(900) == 90
    assert default_jitter_s(3000) == 300
    assert default_jitter_s(86400) == 300
    assert default_jitter_s(5) == 0


def test_for_interval_uses_the_default_jitter() -> None:
    """LoopSchedule.for_interval fills in the default jitter."""
    assert LoopSchedule.for_interval("a", 3600, 4) == LoopSchedule("a", 3600, 300, 4)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("interval_s", {"interval_s": 0}),
        ("interval_s", {"interval_s": 1.5}),
        ("jitter_s", {"jitter_s": -1}),
        ("max_runs_per_day", {"max_runs_per_day": -2}),
        ("max_runs_per_day", {"max_runs_per_day": True}),
    ],
)
def test_bad_schedule_values_raise_config_error_naming_the_field(field: str, kwargs: dict[str, object]) -> None:
    """A bad interval, jitter or cap is a ConfigError naming the loop and the field."""
    values: dict[str, object] = {"pattern": "p", "interval_s": 60, "jitter_s": 0, "max_runs_per_day": None}
    values.update(kwargs)
    with pytest.raises(ConfigError) as err:
        LoopSchedule(**values)  # type: ignore[arg-type]
    assert err.value.field == field
    assert "schedule[p]" in str(err.value)


def test_range_cadence_schedules_at_the_slower_end() -> None:
    """A 5m-15m cadence is scheduled every 900 s (R7's documented default), either order."""
    from loop_runtime.core.cadence import parse_cadence, schedule_interval_s

    for text in ("5m-15m", "15m-5m"):
        spec = LoopSchedule.for_interval("p", schedule_interval_s(parse_cadence(text)))
        assert spec.interval_s == 900
        assert next_due(spec, T0, 0.0) == T0 + timedelta(seconds=900)


def test_next_due_adds_interval_and_rounded_jitter() -> None:
    """next_due = started + interval + round(unit × jitter)."""
    spec = LoopSchedule("p", 600, 60, None)
    assert next_due(spec, T0, 0.0) == T0 + timedelta(seconds=600)
    assert next_due(spec, T0, 0.5) == T0 + timedelta(seconds=630)
    assert next_due(spec, T0, 0.999) == T0 + timedelta(seconds=660)


@pytest.mark.parametrize("unit", [-0.1, 1.0, 2.0])
def test_next_due_refuses_a_jitter_unit_outside_zero_one(unit: float) -> None:
    """The jitter unit must come from [0, 1)."""
    with pytest.raises(ValueError):
        next_due(LoopSchedule("p", 60, 6, None), T0, unit)


# Invariant: the gap between a start and the next due time is within [interval, interval + jitter].
@given(specs, aware_times, st.floats(0.0, 1.0, exclude_max=True))
def test_next_due_stays_within_jitter_bounds(spec: LoopSchedule, started: datetime, unit: float) -> None:
    """Jitter never shortens the interval and never adds more than jitter_s."""
    gap = (next_due(spec, started, unit) - started).total_seconds()
    assert spec.interval_s <= gap <= spec.interval_s + spec.jitter_s


def test_first_due_without_history_is_now() -> None:
    """A loop never scheduled before runs at once."""
    assert first_due(LoopSchedule("p", 3600, 0, None), T0, None) == T0


def test_first_due_after_downtime_is_one_catch_up_now() -> None:
    """Missed runs (days of them) collapse into one tick now, never a burst."""
    spec = LoopSchedule("p", 300, 0, None)
    assert first_due(spec, T0, T0 - timedelta(days=3)) == T0


def test_first_due_keeps_a_future_stored_due_time() -> None:
    """A stored next-due still ahead is honoured after a restart."""
    spec = LoopSchedule("p", 3600, 0, None)
    assert first_due(spec, T0, T0 + timedelta(minutes=20)) == T0 + timedelta(minutes=20)


def test_first_due_caps_a_stale_far_future_due_time() -> None:
    """A cadence shortened since the due time was stored takes effect at once."""
    spec = LoopSchedule("p", 600, 60, None)
    assert first_due(spec, T0, T0 + timedelta(days=1)) == T0 + timedelta(seconds=660)


# Invariant: after a restart the first due time is never in the past and never later than one
# interval + jitter from now.
@given(specs, aware_times, st.none() | aware_times)
def test_first_due_is_within_now_and_one_interval(spec: LoopSchedule, now: datetime, stored: datetime | None) -> None:
    """first_due ∈ [now, now + interval + jitter]."""
    due = first_due(spec, now, stored)
    assert now <= due <= now + timedelta(seconds=spec.interval_s + spec.jitter_s)


def test_runs_cap() -> None:
    """The runs/day cap is reached at max_runs_per_day; no cap never blocks."""
    capped = LoopSchedule("p", 60, 0, 3)
    assert not runs_cap_reached(capped, 2)
    assert runs_cap_reached(capped, 3)
    assert runs_cap_reached(capped, 4)
    assert not runs_cap_reached(LoopSchedule("p", 60, 0, None), 10_000)
    assert runs_cap_reached(LoopSchedule("p", 60, 0, 0), 0)


def test_next_day_start_is_the_next_utc_midnight() -> None:
    """A capped loop resumes at 00:00 UTC, whatever the caller's timezone."""
    assert next_day_start(T0) == datetime(2026, 3, 11, tzinfo=UTC)
    assert next_day_start(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    # 02:00 at UTC+5 is 21:00 UTC the previous day: the next UTC day is still March 10
    east = timezone(timedelta(hours=5))
    assert next_day_start(datetime(2026, 3, 10, 2, 0, tzinfo=east)) == datetime(2026, 3, 10, tzinfo=UTC)
    assert utc_day(datetime(2026, 3, 10, 2, 0, tzinfo=east)).isoformat() == "2026-03-09"


# Invariant: the next UTC day starts after now, within 24 h, exactly at midnight UTC.
@given(aware_times)
def test_next_day_start_property(now: datetime) -> None:
    """next_day_start(now) is the first UTC midnight strictly after now."""
    start = next_day_start(now)
    assert now < start <= now + timedelta(days=1)
    assert (start.hour, start.minute, start.second, start.microsecond) == (0, 0, 0, 0)
    assert start.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused() -> None:
    """A naive datetime has no UTC day, so the schedule refuses it."""
    spec = LoopSchedule("p", 60, 0, None)
    with pytest.raises(ValueError):
        next_due(spec, datetime(2026, 1, 1), 0.0)
    with pytest.raises(ValueError):
        first_due(spec, datetime(2026, 1, 1), None)


def test_core_schedule_does_no_io() -> None:
    """core.schedule imports with asyncio, subprocess, sqlite3 and httpx blocked (core does no I/O)."""
    code = textwrap.dedent(
        """
        import sys, types, importlib.util
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"asyncio", "subprocess", "sqlite3", "httpx", "socket"}:
                    raise ImportError("blocked: " + name)
                return None
        sys.meta_path.insert(0, Block())
        # bare parent packages: only this module (and errors.py) run, not package __init__ files
        root = importlib.util.find_spec("loop_runtime").submodule_search_locations[0]
        for name, path in (("loop_runtime", root), ("loop_runtime.core", root + "/core")):
            pkg = types.ModuleType(name)
            pkg.__path__ = [path]
            sys.modules[name] = pkg
        import loop_runtime.core.schedule
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
