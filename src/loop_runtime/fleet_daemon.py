"""``start --fleet``: every loop of every repository of a fleet on ONE scheduler, one portfolio ledger.

The fleet's read models and store routing live in ``fleet`` (application layer); this is
the driver: placing/cloning repositories, runners, the scheduler, retention, the dashboard.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .errors import ConfigError, LeaseHeld, LoopError
from .app.fleet import FleetStores, fleet_project, key, prune_loop, settle_portfolio_orphans, stagger_first_runs
from .app.runtime import Project

TYPE_CHECKING = False  # annotations only
if TYPE_CHECKING:
    from .ports.store import Store


MAX_TICK_THREADS = 64
"""Ticks run in worker threads, each on its own event loop: a tick's blocking steps (git, SQLite, file
writes) then never hold up the scheduler's loop, so 400 loops still start on time (``bench/fleet.py``)."""


async def in_own_thread(executor: Any, make: Callable[[], Any]) -> Any:
    """Run the coroutine ``make()`` on a fresh event loop in ``executor``; cancelling the caller cancels it
    there too and waits for it to finish (a cancelled tick checkpoints and settles its reservations)."""
    import contextlib

    box: dict[str, Any] = {}

    def work() -> Any:
        inner = asyncio.new_event_loop()
        try:
            box["task"] = inner.create_task(make())
            box["loop"] = inner
            return inner.run_until_complete(box["task"])
        finally:
            with contextlib.suppress(Exception):
                inner.run_until_complete(inner.shutdown_asyncgens())
            inner.close()

    fut = asyncio.get_running_loop().run_in_executor(executor, work)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        inner = box.get("loop")
        if inner is None:
            fut.cancel()  # still queued for a thread: it never starts
        else:
            with contextlib.suppress(RuntimeError):  # already finished and closed
                inner.call_soon_threadsafe(box["task"].cancel)
        with contextlib.suppress(BaseException):
            await fut
        raise


@dataclass
class FleetLoop:
    repo: str
    pattern: str
    project: Project
    runner: Any


def build_fleet_loops(loaded: Any, *, backend: str | None, scenario: str | None, clock: Any,
                      on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
                      stores: dict[str, Store], portfolio: Any) -> list[FleetLoop]:
    """Every enabled loop of every repository (preflighted), each with its runner."""
    from .app.loops import project_loops
    from .app.preflight import preflight
    from .app.runner import LoopRunner, RunOptions, backend_name
    from .app.services import Services

    loops: list[FleetLoop] = []
    for place in loaded.places:
        project = fleet_project(place)
        ids = list(project_loops(project).enabled)
        if not ids:
            continue
        for pid in ids:
            plan = project.plan(pid)
            preflight(project, plan, backend=backend_name(project, plan, RunOptions(backend=backend)),
                      scenario=scenario)
        store = stores.get(place.name) or Services.open(project).store  # the daemon closes every store it made
        stores[place.name] = store
        link = portfolio.for_repo(place.name)
        notifier = None
        if project.config.notify:  # each repository's own notify URLs, as `start` in it would use
            from .adapters.notify import AppriseNotifier

            notifier = AppriseNotifier(tuple(project.config.notify))
        for pid in ids:
            opts = RunOptions(backend=backend, scenario=scenario, clock=clock, portfolio=link, on_event=on_event,
                              notifier=notifier)
            loops.append(FleetLoop(place.name, pid, project, LoopRunner(project, project.plan(pid), opts, store=store)))
    return loops


def placed(loaded: Any, sync: bool) -> Any:
    """The fleet with ``url`` repositories cloned or fetched (``sync``); any repository not usable is one error."""
    from .adapters.fleet import sync_repo

    if sync:
        places = []
        for place in loaded.places:
            try:
                places.append(sync_repo(place) if place.repo.url is not None else place)
            except LoopError as e:
                places.append(replace(place, problem=str(e)))
        loaded = replace(loaded, places=tuple(places))
    problems = loaded.problems()
    if problems:
        raise ConfigError(str(loaded.file), "repos", None, message="; ".join(problems))
    return loaded


class FleetTicks:
    """The scheduler's ``run_tick``: one loop's tick in a worker thread of its own event loop, logged."""

    def __init__(self, by_key: Mapping[str, FleetLoop], executor: Any, clock: Any, log: Any) -> None:
        self.by_key, self.executor, self.clock, self.log = by_key, executor, clock, log

    async def __call__(self, k: str) -> None:
        import time

        t0 = time.monotonic()
        main = asyncio.get_running_loop()

        async def tick() -> Any:
            at = self.clock.now()  # when the tick's own code begins (after any wait for a thread)
            main.call_soon_threadsafe(self.log, "tick.run", {"pattern": k, "at": at})
            return await self.by_key[k].runner.tick()

        try:
            result = await in_own_thread(self.executor, tick)
            self.log("tick", {"pattern": k, "outcome": result.decision if result.decision == "paused"
                              else result.outcome, "tokens": result.tokens,
                              "duration_s": round(time.monotonic() - t0, 3), "runId": result.run_id,
                              "haltReason": result.halt_reason})
        except LeaseHeld as e:
            self.log("skip.lease", {"pattern": k, "detail": str(e)})
        except LoopError as e:
            self.log("tick.error", {"pattern": k, "error": str(e)})


async def serve_fleet(loaded: Any, *, backend: str | None = None, scenario: str | None = None,
                      log_format: str = "plain", clock: Any = None, sync: bool = True,
                      on_log: Callable[[str, Mapping[str, Any]], None] | None = None,
                      stop_after_s: float | None = None, dashboard_port: int | None = None,
                      interval_s: int | None = None, tick_threads: int | None = None) -> None:
    """``start --fleet``: one scheduler for every loop of every repository, one portfolio ledger."""
    from .adapters.clock import SystemClock
    from .adapters.fleet import open_portfolio
    from .daemon import _logger

    log = on_log or _logger(log_format)
    loaded = placed(loaded, sync)
    clock = clock or SystemClock()
    portfolio = open_portfolio(loaded)
    stores: dict[str, Store] = {}
    try:
        loops = build_fleet_loops(loaded, backend=backend, scenario=scenario, clock=clock, stores=stores,
                                  portfolio=portfolio)
        if not loops:
            raise LoopError(f"{loaded.file}: no loops enabled in any repository of the fleet")
        await _schedule(loaded, loops, stores, portfolio, clock=clock, log=log, stop_after_s=stop_after_s,
                        dashboard_port=dashboard_port, interval_s=interval_s, tick_threads=tick_threads)
    finally:
        for store in stores.values():
            store.close()
        portfolio.store.close()
        log("daemon.stop", {})


async def _schedule(loaded: Any, loops: list[FleetLoop], stores: dict[str, Store], portfolio: Any, *, clock: Any,
                    log: Any, stop_after_s: float | None, dashboard_port: int | None, interval_s: int | None,
                    tick_threads: int | None) -> None:
    """Every loop on one ``Scheduler`` (keys ``<repo>/<pattern>``), retention, the dashboard; until stopped."""
    from concurrent.futures import ThreadPoolExecutor

    from .core.schedule import LoopSchedule
    from .daemon import GRACE_S
    from .scheduler import Scheduler, install_signal_handlers

    by_key = {key(lp.repo, lp.pattern): lp for lp in loops}
    # ``interval_s``: one cadence for every loop (bench/fleet.py's short cadences)
    specs = [LoopSchedule.for_interval(k, interval_s or lp.runner.plan.interval_s,
                                       lp.runner.plan.max_runs_per_day) for k, lp in by_key.items()]
    router = FleetStores(stores, portfolio)
    stagger_first_runs(router, specs, clock.now())
    settle_portfolio_orphans(portfolio.store, stores, clock.now())  # a crashed run before this one
    executor = ThreadPoolExecutor(max_workers=tick_threads or min(MAX_TICK_THREADS, len(by_key)),
                                  thread_name_prefix="tick")
    scheduler = Scheduler(specs, FleetTicks(by_key, executor, clock, log), store=router,  # type: ignore[arg-type]
                          clock=clock, on_log=log)
    loop = asyncio.get_running_loop()
    remove = install_signal_handlers(scheduler, loop, GRACE_S)
    days = {lp.repo: lp.project.config.retention_days for lp in loops}
    retention = asyncio.ensure_future(prune_loop([(n, s, days[n]) for n, s in stores.items()], clock, log))
    server, server_task = _dashboard(loaded, dashboard_port)
    log("daemon.start", {"loops": f"{len(by_key)} loops in {len(stores)} repositories"})
    try:
        if stop_after_s is not None:
            loop.call_later(stop_after_s, scheduler.request_stop)
        await scheduler.run()
        await scheduler.shutdown(GRACE_S)
    finally:
        remove()
        retention.cancel()
        if server_task is not None:
            server.should_exit = True
            await asyncio.wait([server_task], timeout=5)
        executor.shutdown(wait=False, cancel_futures=True)


def _dashboard(loaded: Any, port: int | None) -> tuple[Any, Any]:
    """``start --fleet --dashboard``: the fleet page on loopback, its token printed once."""
    if not port:
        return None, None
    from .dashboard.fleet import make_fleet_server

    server, token = make_fleet_server(loaded, host="127.0.0.1", port=port, token=None)
    print(f"dashboard: http://127.0.0.1:{port}/?token={token}", file=sys.stderr, flush=True)
    return server, asyncio.ensure_future(server.serve())


def run_fleet_daemon(fleet_path: str, *, backend: str | None, scenario: str | None, log_format: str,
                     dashboard_port: int | None = None) -> int:
    from .adapters.fleet import load_fleet

    loaded = load_fleet(fleet_path)
    fmt = "plain" if log_format == "auto" else log_format
    asyncio.run(serve_fleet(loaded, backend=backend, scenario=scenario, log_format=fmt,
                            dashboard_port=dashboard_port))
    return 0
