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
    from .ports.store import Store

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
    from .adapters.clock import SystemClock
    from .adapters.store.sqlite import RunStore
    from .core.schedule import LoopSchedule
    from .app.runner import LoopRunner, RunOptions, backend_name
    from .scheduler import Scheduler, install_signal_handlers

    from .app.loops import project_loops

    for pid in patterns:
        project.pattern(pid)  # an unknown id fails now, with the valid list, not at its first tick
    loops = project_loops(project)
    ids = list(dict.fromkeys(patterns)) or list(loops.enabled)
    if not ids:
        raise LoopError(loops.none_message(project))
    from .dashboard.security import preflight_dashboard
    from .app.preflight import preflight

    for pid in ids:  # every loop's files, before the store exists or any tick starts
        plan = project.plan(pid)
        preflight(project, plan, backend=backend_name(project, plan, RunOptions(backend=backend)),
                  scenario=scenario)
    if dashboard_port:
        preflight_dashboard(project)
    clock = clock or SystemClock()
    store = RunStore.open(project.root)
    log = _logger(log_format)
    notifier = None
    if project.config.notify:
        from .adapters.notify import AppriseNotifier

        url = f"http://127.0.0.1:{dashboard_port}/" if dashboard_port else None
        notifier = AppriseNotifier(tuple(project.config.notify), dashboard_url=url,
                                   log=lambda m: log("notify.error", {"error": m}))
    runners: dict[str, LoopRunner] = {}
    specs = []
    for pid in ids:
        plan = project.plan(pid)
        opts = RunOptions(backend=backend, scenario=scenario, clock=clock, notifier=notifier,
                          on_event=lambda k, p: log(k, p) if k == "tick.end" else None)
        runners[pid] = LoopRunner(project, plan, opts, store=store)
        specs.append(LoopSchedule.for_interval(pid, plan.interval_s, plan.max_runs_per_day))

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

    scheduler = Scheduler(specs, run_tick, store=store, clock=clock, on_log=log)
    summary_task = None
    if notifier is not None and project.config.daily_summary:
        summary_task = asyncio.ensure_future(_daily_summaries(store, notifier, clock, ids, log))
    loop = asyncio.get_running_loop()
    remove = install_signal_handlers(scheduler, loop, GRACE_S)
    server_task = None
    if dashboard_port:
        from .dashboard.server import make_server

        server, token = make_server(project, host="127.0.0.1", port=dashboard_port, token=None)
        print(f"dashboard: http://127.0.0.1:{dashboard_port}/?token={token}", file=sys.stderr, flush=True)
        server_task = asyncio.ensure_future(server.serve())
    from .app.fleet import prune_loop

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
        if server_task is not None:
            server.should_exit = True
            await asyncio.wait([server_task], timeout=5)
        store.close()
        log("daemon.stop", {})


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
