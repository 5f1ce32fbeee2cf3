"""``loop-runtime start``: the embedded always-on process (one asyncio loop, SQLite store).

Every enabled loop of the project ticks on its cadence through the same ``LoopRunner``
the CLI's ``run`` uses; the scheduler adds timing (cadence + jitter, no overlap,
runs/day, restart without burst) and SIGTERM/SIGINT handling. A tick failing never
stops the daemon: it is logged, notified, and the loop ticks again at its next time.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from typing import Any

from .errors import LeaseHeld, LoopError
from .app.runtime import Project

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .app.services import Services
    from .ports.store import Store
    from .scheduler import Scheduler

GRACE_S = 30.0


def _logger(fmt: str) -> Any:
    """``json``: one object per event; ``plain``: sentences a person reads (``ci-sweeper: no-op in 0.16 s``)."""

    def log(kind: str, fields: Mapping[str, Any]) -> None:
        if fmt == "none":
            return
        if fmt == "json":
            print(json.dumps({"event": kind, **{k: _json_value(v) for k, v in fields.items()}}), file=sys.stderr,
                  flush=True)
            return
        line = human_line(kind, fields)
        if line:
            print(line, file=sys.stderr, flush=True)

    return log


def _json_value(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return str(v)


def _when(v: Any) -> str:
    return v.strftime("%H:%M:%S UTC") if hasattr(v, "strftime") else str(v)


#: Scheduler bookkeeping that a person does not need to read (``--log-format json`` still has it).
_SILENT = frozenset({"tick.start", "tick.run", "tick.done", "tick.end", "scheduler.start", "scheduler.stop",
                     "shutdown.settled", "store.pruned"})


def human_line(kind: str, f: Mapping[str, Any]) -> str:
    """One readable line for a daemon event; '' for bookkeeping events (kept in the JSON format)."""
    pat = f.get("pattern", "")
    if kind in _SILENT:
        return ""
    if kind == "daemon.start":
        return f"loop-runtime: running {f.get('loops')} (SIGTERM or Ctrl-C stops)"
    if kind == "daemon.stop":
        return "loop-runtime: stopped"
    if kind == "tick":
        secs = float(f.get("duration_s", 0.0))
        tokens = int(f.get("tokens", 0))
        line = f"{pat}: {f.get('outcome')} in {secs:.2f} s" + (f" — {tokens:,} tokens" if tokens else "")
        if f.get("haltReason") == "budget":
            line += f" (budget: `loop-runtime topup {pat} <tokens> --resume` raises today's cap and resumes it)"
        elif f.get("haltReason") not in (None, "paused"):
            line += f" ({f.get('haltReason')})"
        return line
    if kind == "skip.lease":
        return f"{pat}: skipped — {f.get('detail')}"
    if kind == "skip.overlap":
        return f"{pat}: skipped — the previous tick is still running (next at {_when(f.get('next_due'))})"
    if kind == "skip.runs-cap":
        return (f"{pat}: skipped — runs/day cap reached ({f.get('runs')}/{f.get('cap')}); "
                f"next at {_when(f.get('next_due'))}")
    if kind == "tick.error":
        return f"{pat}: tick failed — {f.get('error')}"
    if kind == "tick.cancelled":
        return f"{pat}: tick cancelled"
    if kind == "shutdown.start":  # the signal handler already said "SIGTERM: stopping"
        running = ", ".join(f.get("running") or [])
        grace = float(f.get("grace_s", 0))
        return f"loop-runtime: waiting up to {grace:g} s for {running} to finish" if running else ""
    if kind == "shutdown.abandoned":
        return f"loop-runtime: grace period over, cancelling {', '.join(f.get('running') or [])}"
    if kind == "shutdown.done":
        left = f.get("abandoned") or []
        return "" if not left else f"loop-runtime: abandoned {', '.join(left)}"
    if kind == "store.error":
        return f"loop-runtime: store error in {f.get('call')}: {f.get('error')}"
    if kind.startswith("notify."):
        return f"notify: {kind.removeprefix('notify.')} {' '.join(f'{k}={v}' for k, v in f.items())}".rstrip()
    return f"{kind} {' '.join(f'{k}={v}' for k, v in f.items())}".rstrip()


async def serve_forever(project: Project, patterns: list[str], *, backend: str | None = None,
                        scenario: str | None = None, log_format: str = "plain", dashboard_port: int | None = None,
                        clock: Any = None) -> None:
    """Tick every loop of ``patterns`` (default: the enabled ones) on its cadence until SIGTERM/SIGINT.

    Every loop, the scheduler, the retention sweep and the embedded dashboard share the project's one
    ``Services`` (one store connection, one notifier, one clock).
    """
    from .app.rules import runs_counter
    from .app.runner import LoopRunner, RunOptions
    from .app.services import Services
    from .core.schedule import LoopSchedule
    from .scheduler import Scheduler

    ids = _loops_to_serve(project, patterns, backend, scenario, dashboard_port)
    log = _logger(log_format)
    services = Services.open(project, clock=clock, notifier=_notifier(project, dashboard_port, log))
    try:
        runners = {pid: LoopRunner(services, project.plan(pid), RunOptions(
            backend=backend, scenario=scenario, clock=services.clock,
            on_event=lambda k, p: log(k, p) if k == "tick.end" else None)) for pid in ids}
        specs = [LoopSchedule.for_interval(pid, r.plan.interval_s, r.plan.max_runs_per_day) for pid, r in runners.items()]
        scheduler = Scheduler(specs, _ticker(runners, services.notifier, log), store=services.store,
                              clock=services.clock, on_log=log, runs_today=runs_counter(project, services.store))
        await _serve(scheduler, services, ids, log, dashboard_port)
    finally:
        services.close()
        log("daemon.stop", {})


def _loops_to_serve(project: Project, patterns: list[str], backend: str | None, scenario: str | None,
                    dashboard_port: int | None) -> list[str]:
    """The loops to tick, every one's files checked before the store exists or any tick starts."""
    from .app.backends import backend_name
    from .app.loops import project_loops
    from .app.preflight import preflight
    from .app.runner import RunOptions

    for pid in patterns:
        project.pattern(pid)  # an unknown id fails now, with the valid list, not at its first tick
    loops = project_loops(project)
    ids = list(dict.fromkeys(patterns)) or list(loops.enabled)
    if not ids:
        raise LoopError(loops.none_message(project))
    for pid in ids:
        plan = project.plan(pid)
        preflight(project, plan, backend=backend_name(project, plan, RunOptions(backend=backend)), scenario=scenario)
    if dashboard_port:
        from .dashboard.security import preflight_dashboard

        preflight_dashboard(project)
    return ids


def _notifier(project: Project, dashboard_port: int | None, log: Any) -> Any:
    """The project's notifier (apprise URLs), linking to the embedded dashboard when there is one."""
    if not project.config.notify:
        return None
    from .adapters.notify import AppriseNotifier

    url = f"http://127.0.0.1:{dashboard_port}/" if dashboard_port else None
    return AppriseNotifier(tuple(project.config.notify), dashboard_url=url,
                           log=lambda m: log("notify.error", {"error": m}))


def _ticker(runners: Mapping[str, Any], notifier: Any, log: Any) -> Any:
    """The scheduler's ``run_tick``: one tick of a loop, logged; a failed tick is logged and notified, never raised."""

    async def run_tick(pid: str) -> None:
        import time

        t0 = time.monotonic()
        try:
            result = await runners[pid].tick()
            log("tick", {"pattern": pid, "outcome": result.decision if result.decision == "paused" else result.outcome,
                         "tokens": result.tokens, "duration_s": round(time.monotonic() - t0, 3),
                         "runId": result.run_id, "haltReason": result.halt_reason})
        except LeaseHeld as e:
            log("skip.lease", {"pattern": pid, "detail": str(e)})
        except LoopError as e:
            log("tick.error", {"pattern": pid, "error": str(e)})
            if notifier is not None:
                from .core.redact import clip
                from .ports import Notification

                notifier.notify(Notification("daemon-error", f"{pid}: tick failed", clip(str(e), 300), pattern=pid))

    return run_tick


async def _serve(scheduler: Scheduler, services: Services, ids: list[str], log: Any,
                 dashboard_port: int | None) -> None:
    """Run the scheduler with its companions (signals, daily summaries, retention, the dashboard) until it stops."""
    from .app.fleet import prune_loop
    from .scheduler import install_signal_handlers

    project, store, clock, notifier = services.project, services.store, services.clock, services.notifier
    summary_task = None
    if notifier is not None and project.config.daily_summary:
        summary_task = asyncio.ensure_future(_daily_summaries(store, notifier, clock, ids, log))
    remove = install_signal_handlers(scheduler, asyncio.get_running_loop(), GRACE_S)
    server, server_task = None, None
    if dashboard_port:
        from .dashboard.server import make_server

        server, token = make_server(project, host="127.0.0.1", port=dashboard_port, token=None, services=services)
        print(f"dashboard: http://127.0.0.1:{dashboard_port}/?token={token}", file=sys.stderr, flush=True)
        server_task = asyncio.ensure_future(server.serve())
    retention = asyncio.ensure_future(prune_loop([("", store, project.config.retention_days)], clock, log))
    log("daemon.start", {"loops": ",".join(ids)})
    try:
        await scheduler.run()
        await scheduler.shutdown(GRACE_S)
    finally:
        remove()
        retention.cancel()
        if summary_task is not None:
            summary_task.cancel()
        if server is not None and server_task is not None:
            server.should_exit = True
            await asyncio.wait([server_task], timeout=5)


async def _daily_summaries(store: Store, notifier: Any, clock: Any, patterns: list[str], log: Any,
                           sleep: Any = asyncio.sleep) -> None:
    """After each UTC midnight, one short summary of the day before (ticks, tokens, waiting escalations)."""
    from datetime import timedelta

    from .adapters.notify import daily_summary
    from .core.schedule import next_day_start

    while True:
        now = clock.now()
        await sleep(max(1.0, (next_day_start(now) - now).total_seconds() + 5))
        yesterday = (clock.now() - timedelta(hours=12)).date()
        notifier.notify(daily_summary(store, yesterday, patterns))
        log("notify.daily-summary", {"day": str(yesterday)})


def run_daemon(project: Project, patterns: list[str], *, dashboard: bool, port: int, backend: str | None,
               scenario: str | None, log_format: str) -> int:
    fmt = "plain" if log_format == "auto" else log_format
    asyncio.run(serve_forever(project, patterns, backend=backend, scenario=scenario, log_format=fmt,
                              dashboard_port=port if dashboard else None))
    return 0
