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
* **cap as a step** — the burn-down's ``capSteps`` is the cap in force at each point:
  the configured cap, rising at the moment of each of today's top-ups (a point is added
  at every top-up, so the step sits where the top-up happened).
* **scale** — the y axis is scaled to what was spent (``yMax``), so a day that used
  1.7% of its cap is a visible climb, not a flat line under a far-away cap; the cap is
  drawn only when it is on that scale (``capVisible``), otherwise the chart says so.
* **stacked** — with several loops, ``stacked`` holds each loop's cumulative spend on
  one common time axis, summed in order (the top series is the total), and the 7-day
  tokens the same way, for one chart where every loop's share is visible.

Without a store (nothing has run yet) everything comes from the run log.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, UTC
from typing import Any

from ..core.budget import utc_day
from ..formats.runlog import RunLog, parse_run_log, parse_run_time
from ..app.runtime import Project

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..ports.store import Store

__all__ = ["budget_document", "burn_down", "history", "scale", "stacked"]

HISTORY_DAYS = 7
HEADROOM = 1.25  # the highest value sits at 80% of the chart's height
CAP_IN_VIEW = 2.0  # the cap is drawn when it is at most this many times the highest value
MIN_SCALE = 1_000  # an empty day still has an axis


def scale(values: list[int], caps: list[int | None]) -> dict[str, Any]:
    """The y range for a chart of ``values``: scaled to the spend, the cap included when near it.

    ``yMax`` is the top of the axis; ``capVisible`` says whether the cap line is on it.
    """
    top = max([0, *values])
    cap = max([c for c in caps if c is not None], default=None)
    if cap is not None and top > 0 and cap <= CAP_IN_VIEW * top:
        return {"yMax": int(max(cap, top) * 1.05) + 1, "capVisible": True}
    if cap is not None and top == 0:
        return {"yMax": max(MIN_SCALE, cap // 50), "capVisible": False}
    return {"yMax": max(MIN_SCALE, int(top * HEADROOM) + 1), "capVisible": False}


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


def _spend_points(store: Store, log: RunLog, pattern: str, day: date) -> tuple[list[tuple[datetime, int]], int]:
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


def _cap(project: Project, store: Store | None, pattern: str, day: date) -> int | None:
    """The loop's cap on ``day`` (``app.rules.cap_on``: ``core.budget.todays_cap`` over that day's top-ups)."""
    from ..app.rules import cap_on

    return cap_on(project.plan(pattern).daily_token_cap, store, pattern, day)


def _topups_today(store: Store, pattern: str, day: date) -> list[tuple[datetime, int]]:
    if store is None:
        return []
    return [(r.at, int(r.tokens)) for r in store.topup_records(pattern) if r.day == day]


def burn_down(project: Project, store: Store, pattern: str, now: datetime, log: RunLog | None = None) -> dict[str, Any]:
    """Cumulative spend at each hour of today (UTC), at every spend and top-up, then "now".

    ``capSteps[i]`` is the cap in force at ``x[i]`` (configured cap + top-ups made by
    then); ``cap`` is the cap now.
    """
    log = log if log is not None else parse_run_log(project.read("loop-run-log.md") or "")
    day = utc_day(now)
    start = _midnight(day)
    points, total_now = _spend_points(store, log, pattern, day)
    cap = _cap(project, store, pattern, day)
    base_cap = project.plan(pattern).daily_token_cap
    topups = _topups_today(store, pattern, day)
    now_x = _epoch(now)
    edges = {_epoch(start + timedelta(hours=h)) for h in range(now.astimezone(UTC).hour + 1)}
    edges |= {_epoch(when) for when, _ in points if start <= when <= now}
    edges |= {_epoch(when) for when, _ in topups if start <= when <= now}
    xs = sorted(x for x in edges if x < now_x)
    spent = [min(total_now, sum(t for when, t in points if _epoch(when) <= x)) for x in xs]
    xs.append(now_x)
    spent.append(max(total_now, spent[-1] if spent else 0))
    cap_steps: list[int | None] = []
    for x in xs:
        if base_cap is None:
            cap_steps.append(None)
        else:
            cap_steps.append(base_cap + sum(t for when, t in topups if _epoch(when) <= x))
    if cap is not None and cap_steps:
        cap_steps[-1] = cap  # top-ups recorded without a time today still count now
    return {
        "pattern": pattern,
        "day": str(day),
        "cap": cap,
        "dayStart": _epoch(start),
        "dayEnd": _epoch(start + timedelta(days=1)),
        "x": xs,
        "spent": spent,
        "capSteps": cap_steps,
        "topups": [{"at": _epoch(when), "tokens": t} for when, t in topups],
        "remaining": None if cap is None else [max(0, c - s) for c, s in zip(cap_steps, spent, strict=True)],
        "percent": None if not cap else round(100 * spent[-1] / cap, 1),
        **scale(spent, cap_steps),
    }


def history(project: Project, store: Store, pattern: str, now: datetime, days: int = HISTORY_DAYS,
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
    out.update(scale(out["tokens"], out["cap"]))
    return out


def _value_at(xs: list[int], ys: list[int], x: int) -> int:
    """A cumulative series' value at ``x`` (the last point at or before it; 0 before the first)."""
    v = 0
    for xi, yi in zip(xs, ys, strict=True):
        if xi > x:
            break
        v = yi
    return v


def stacked(loops: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Every loop's spend on one time axis, stacked in order: ``series[i]`` = loops 0..i summed.

    None for fewer than two loops (a stack of one is the loop's own chart).
    """
    if len(loops) < 2:
        return None
    bds = [lp["burnDown"] for lp in loops]
    xs = sorted({x for bd in bds for x in bd["x"]})
    running = [0] * len(xs)
    series = []
    for lp, bd in zip(loops, bds, strict=True):
        running = [r + _value_at(bd["x"], bd["spent"], x) for r, x in zip(running, xs, strict=True)]
        series.append({"pattern": lp["pattern"], "name": lp["name"], "cumulative": list(running)})
    caps_known = all(bd["capSteps"] and bd["capSteps"][0] is not None for bd in bds)
    cap = [sum(_value_at(bd["x"], bd["capSteps"], x) for bd in bds) for x in xs] if caps_known else [None] * len(xs)
    days_x = loops[0]["history"]["x"]
    hist_running = [0] * len(days_x)
    hist = []
    for lp in loops:
        hist_running = [a + b for a, b in zip(hist_running, lp["history"]["tokens"], strict=True)]
        hist.append({"pattern": lp["pattern"], "name": lp["name"], "cumulative": list(hist_running)})
    return {
        "dayStart": bds[0]["dayStart"], "dayEnd": bds[0]["dayEnd"], "x": xs, "series": series, "capSteps": cap,
        **scale(series[-1]["cumulative"], cap),
        "history": {"x": days_x, "days": loops[0]["history"]["days"], "series": hist,
                    **scale(hist[-1]["cumulative"], [])},
    }


def budget_document(project: Project, store: Store, patterns: list[str], now: datetime) -> dict[str, Any]:
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
    return {"generatedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "loops": loops, "stacked": stacked(loops)}
