"""Budget series for the dashboard's charts: today's burn-down by hour and a 7-day history.

Computed from what the store and the run log already hold, so no table exists only
for charts and the figures agree with ``status``:

* **today** — each of today's finished ticks counts its tokens at its finish time;
  run-log entries the runtime did not write (another tool's runs) count at their run
  time; the last point, "now", is the store's settled total plus that external spend,
  which also covers the settled calls of a tick still running. Points are the
  cumulative spend at every hour boundary up to now.
* **7 days** — per UTC day, settled tokens (``RunStore.spent``) plus run-log tokens of
  runs the store does not know, exactly as ``status`` computes "spent today"; the cap
  line is the day's cap plus that day's top-ups.

Without a store (nothing has run yet) everything comes from the run log.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, UTC
from typing import Any

from ..core.budget import utc_day
from ..formats.runlog import RunLog, parse_run_log, parse_run_time
from ..runtime import Project

__all__ = ["budget_document", "burn_down", "history"]

HISTORY_DAYS = 7


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def _external(log: RunLog, pattern: str, day: date, known: set[str]) -> list[tuple[datetime, int]]:
    """Run-log spend on ``day`` by runs the store has no tick for (their time, tokens)."""
    out = []
    for e in log.entries:
        when = parse_run_time(e.run_id)
        if e.pattern == pattern and when is not None and when.date() == day and e.run_id not in known:
            out.append((when, int(e.tokens_estimate or 0)))
    return out


def _spend_points(store: Any, log: RunLog, pattern: str, day: date) -> tuple[list[tuple[datetime, int]], int]:
    """(time, tokens) of today's spend, and the total "now" (settled + external)."""
    known = store.tick_run_ids(pattern, day) if store is not None else set()
    points = _external(log, pattern, day, known)
    external = sum(t for _, t in points)
    if store is None:
        return points, external
    for tick in store.recent_ticks(pattern, 1000):
        if tick.started_at.date() < day:
            break
        if tick.started_at.date() == day and tick.finished_at is not None and tick.tokens:
            points.append((tick.finished_at, int(tick.tokens)))
    return points, store.spent(pattern, day) + external


def _cap(project: Project, store: Any, pattern: str, day: date) -> int | None:
    cap = project.plan(pattern).daily_token_cap
    if cap is None:
        return None
    return cap + (store.topups(pattern, day) if store is not None else 0)


def burn_down(project: Project, store: Any, pattern: str, now: datetime, log: RunLog | None = None) -> dict[str, Any]:
    """Cumulative spend and remaining budget at each hour of today (UTC), then "now"."""
    log = log if log is not None else parse_run_log(project.read("loop-run-log.md") or "")
    day = utc_day(now)
    start = _midnight(day)
    points, total_now = _spend_points(store, log, pattern, day)
    cap = _cap(project, store, pattern, day)
    xs, spent = [], []
    for hour in range(now.astimezone(UTC).hour + 1):
        edge = start + timedelta(hours=hour)
        xs.append(_epoch(edge))
        spent.append(min(total_now, sum(t for when, t in points if when <= edge)))
    xs.append(_epoch(now))
    spent.append(max(total_now, spent[-1] if spent else 0))
    return {
        "pattern": pattern,
        "day": str(day),
        "cap": cap,
        "dayStart": _epoch(start),
        "dayEnd": _epoch(start + timedelta(days=1)),
        "x": xs,
        "spent": spent,
        "remaining": None if cap is None else [max(0, cap - s) for s in spent],
    }


def history(project: Project, store: Any, pattern: str, now: datetime, days: int = HISTORY_DAYS,
            log: RunLog | None = None) -> dict[str, Any]:
    """Tokens spent on each of the last ``days`` UTC days (today last), with each day's cap."""
    log = log if log is not None else parse_run_log(project.read("loop-run-log.md") or "")
    today = utc_day(now)
    out: dict[str, Any] = {"pattern": pattern, "days": [], "x": [], "tokens": [], "cap": []}
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        known = store.tick_run_ids(pattern, day) if store is not None else set()
        tokens = sum(t for _, t in _external(log, pattern, day, known))
        if store is not None:
            tokens += store.spent(pattern, day)
        out["days"].append(str(day))
        out["x"].append(_epoch(_midnight(day)))
        out["tokens"].append(tokens)
        out["cap"].append(_cap(project, store, pattern, day))
    return out


def budget_document(project: Project, store: Any, patterns: list[str], now: datetime) -> dict[str, Any]:
    """Every shown loop's burn-down and history, as ``/api/budget`` serves them."""
    log = parse_run_log(project.read("loop-run-log.md") or "")
    loops = []
    for pid in patterns:
        loops.append({
            "pattern": pid,
            "name": project.pattern(pid).name,
            "burnDown": burn_down(project, store, pid, now, log),
            "history": history(project, store, pid, now, log=log),
        })
    return {"generatedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "loops": loops}
