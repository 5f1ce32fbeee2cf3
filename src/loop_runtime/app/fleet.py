"""A fleet on one machine: every repository's loops in one daemon, one status, one portfolio budget.

``start --fleet FILE`` (``fleet_daemon``) builds each repository's ``Project`` exactly as ``start`` in that
repository would (plus the fleet's per-loop overrides and per-repository cap), gives every
loop's ``LoopRunner`` the fleet's portfolio scope, and runs them all on ONE ``Scheduler``
keyed ``<repo>/<pattern>``. The scheduler's store calls are routed to the repository's own
run store (``FleetStores``), so next-due times, runs/day and leases stay where a plain
``start`` in that repository would look for them — a fleet daemon and a single-repo
``run`` never tick the same loop at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from ..errors import LoopError
from .runtime import Project

SEP = "/"


def fleet_project(place: Any) -> Project:
    """The repository's project with the fleet's overrides applied (loops' keys, repository cap)."""
    from types import MappingProxyType

    from .runtime import load_project

    project = load_project(place.root)
    repo = place.repo
    cfg = project.config
    patterns = dict(cfg.patterns)
    for pid in repo.patterns:
        patterns[pid] = repo.pattern_config(pid, cfg.for_pattern(pid))
    cap = cfg.global_daily_cap
    if repo.daily_cap is not None:
        cap = repo.daily_cap if cap is None else min(cap, repo.daily_cap)  # the smaller cap wins
    sources = dict(cfg.sources)
    project.config = replace(cfg, patterns=MappingProxyType(patterns), global_daily_cap=cap).with_sources(sources)
    return project


def key(repo: str, pattern: str) -> str:
    return f"{repo}{SEP}{pattern}"


def split_key(k: str) -> tuple[str, str]:
    repo, _, pattern = k.partition(SEP)
    return repo, pattern


# --------------------------------------------------------------------------- status


def fleet_status(loaded: Any, now: datetime) -> dict[str, Any]:
    """``status --fleet``: the portfolio, then each repository's own status document, in fleet order."""
    from ..adapters.fleet import portfolio_if_exists
    from .commands import store_if_exists
    from .status import project_status

    portfolio = portfolio_if_exists(loaded)
    repos: list[dict[str, Any]] = []
    try:
        for place in loaded.places:
            entry: dict[str, Any] = {"name": place.name, "where": place.repo.where, "root": str(place.root)}
            if place.problem:
                repos.append({**entry, "error": place.problem, "loops": []})
                continue
            try:
                project = fleet_project(place)
                store = store_if_exists(project)
                try:
                    doc = project_status(project, now, store,
                                         portfolio=portfolio if portfolio is not None else _no_ledger(loaded))
                finally:
                    if store is not None:
                        store.close()
            except LoopError as e:  # one broken repository must not hide the others
                repos.append({**entry, "error": str(e), "loops": []})
                continue
            repos.append({**entry, **doc, "root": str(place.root)})
        ledgers = [st for _, st in portfolio.labelled(now)] if portfolio is not None else []
        pst = ledgers[0] if ledgers else None  # tokens, for the figures
        usd = portfolio.usd_spent(now) if portfolio is not None else 0.0
    finally:
        if portfolio is not None:
            portfolio.store.close()
    from ..core.budget import assess, tightest, todays_cap, utc_day
    from ..ports import BudgetStatus

    if pst is None:
        pst = BudgetStatus(str(utc_day(now)), todays_cap(loaded.fleet.portfolio_daily_cap), 0, 0)
        ledgers = [pst]
    # as for each loop (``status.loop_status``): the state is judged on settled spend
    verdict = assess(tightest([BudgetStatus(st.day, st.cap, st.spent, 0) for st in ledgers]))
    return {
        "fleet": str(loaded.file),
        "generatedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "portfolio": {"day": pst.day, "cap": pst.cap, "spent": pst.spent, "reserved": pst.reserved,
                      "percent": None if not pst.cap else round(100 * pst.used / pst.cap, 1),
                      "state": "halted" if verdict.halt else ("L1" if verdict.level_cap else "ok"),
                      "usdCap": loaded.fleet.portfolio_daily_usd, "usdSpent": round(usd, 6)},
        "repos": repos,
    }


def _no_ledger(loaded: Any) -> Any:
    """A portfolio nobody has spent from yet: its cap, nothing used (status never creates the ledger)."""

    class Empty:
        def status(self, now: datetime) -> Any:
            from ..core.budget import todays_cap, utc_day
            from ..ports import BudgetStatus

            return BudgetStatus(str(utc_day(now)), todays_cap(loaded.fleet.portfolio_daily_cap), 0, 0)

    return Empty()


def topup_scope(project: Project, scope: str, tokens: int, *, reason: str, fleet: str | None,
                resume: bool = False) -> dict[str, Any]:
    """``topup @repo N`` (the repository's ``global_daily_cap``) or ``topup @portfolio N --fleet FILE``."""
    from ..adapters.store.budget import GLOBAL, PORTFOLIO
    from ..core.budget import utc_day
    from ..errors import ConfigError
    from .runtime import now_utc

    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens <= 0:
        raise ConfigError("topup", "tokens", tokens, message=f"tokens must be positive: {tokens}")
    if resume:
        raise ConfigError("topup", "--resume", scope, message="--resume resumes one loop: top up its pattern")
    now = now_utc()
    if scope == "@repo":
        if project.config.global_daily_cap is None:
            raise ConfigError("topup", "scope", scope, message="@repo: this repository has no global_daily_cap "
                              "(loop-runtime.toml) to raise")
        from ..adapters.store.sqlite import RunStore

        store, key_, name = RunStore.open(project.root), GLOBAL, f"repository {project.root.name}"
    elif scope == "@portfolio":
        if not fleet:
            raise ConfigError("topup", "--fleet", None, message="@portfolio needs --fleet FILE")
        from ..adapters.fleet import load_fleet, open_portfolio

        loaded = load_fleet(fleet)
        if loaded.fleet.portfolio_daily_cap is None:
            raise ConfigError(loaded.file.name, "portfolio_daily_cap", None,
                              message="@portfolio: the fleet has no portfolio_daily_cap to raise")
        store, key_, name = open_portfolio(loaded).store, PORTFOLIO, "the portfolio"
    else:
        raise ConfigError("topup", "scope", scope, valid=("<pattern>", "@repo", "@portfolio"))
    try:
        store.add_topup(key_, utc_day(now), tokens, reason, now)
        store.add_event("budget.topup", {"tokens": tokens, "reason": reason, "scope": scope}, now, pattern=key_)
    finally:
        store.close()
    return {"scope": name, "tokens": tokens, "day": str(utc_day(now))}


# --------------------------------------------------------------------------- the daemon


class FleetStores:
    """The scheduler's store, routed: ``<repo>/<pattern>`` keys go to that repository's run store."""

    def __init__(self, stores: Mapping[str, Any], portfolio: Any) -> None:
        self.stores, self.portfolio = dict(stores), portfolio

    def _of(self, k: str) -> tuple[Any, str]:
        repo, pattern = split_key(k)
        return self.stores[repo], pattern

    def get_next_due(self, k: str) -> datetime | None:
        store, pattern = self._of(k)
        return store.get_next_due(pattern)

    def set_next_dues(self, due: Mapping[str, datetime]) -> None:
        by_repo: dict[str, dict[str, datetime]] = {}
        for k, at in due.items():
            repo, pattern = split_key(k)
            by_repo.setdefault(repo, {})[pattern] = at
        for repo, d in by_repo.items():
            self.stores[repo].set_next_dues(d)

    def runs_on_day(self, k: str, day: date) -> int:
        store, pattern = self._of(k)
        return int(store.runs_on_day(pattern, day))

    def add_event(self, kind: str, payload: Mapping[str, Any], at: datetime, *, pattern: str | None = None,
                  tick_id: str | None = None) -> int:
        if pattern is None:
            return 0
        store, pid = self._of(pattern)
        return int(store.add_event(kind, payload, at, pattern=pid, tick_id=tick_id))

    def settle_orphans(self, live: set[str], now: datetime) -> list[Any]:
        settled: list[Any] = []
        for store in self.stores.values():
            settled.extend(store.settle_orphans(live, now))
        if self.portfolio is not None:
            settled.extend(settle_portfolio_orphans(self.portfolio.store, self.stores, now))
        return settled


STAGGER_S = 0.1
"""Loops that never ran start this far apart: a fleet of 400 new loops does not start 400 ticks at once."""


def stagger_first_runs(router: FleetStores, specs: list[Any], now: datetime) -> None:
    """A loop with no stored next-due time gets one spread over the first ``len × STAGGER_S`` seconds
    (never beyond its own interval); loops that ran before keep theirs (``core.schedule.first_due``)."""
    from datetime import timedelta

    fresh = [s for s in specs if router.get_next_due(s.pattern) is None]
    if len(fresh) > 1:
        router.set_next_dues({s.pattern: now + timedelta(seconds=min(i * STAGGER_S, s.interval_s))
                              for i, s in enumerate(fresh)})


ORPHAN_MIN_AGE_S = 60.0


def settle_portfolio_orphans(ledger: Any, stores: Mapping[str, Any], now: datetime) -> list[Any]:
    """Portfolio reservations whose loop reservation is no longer open: their tick is gone.

    A live call holds its loop row open until it settles (``StoreBudget`` settles outer
    scopes first), so "no open row for that tick in its repository" means nobody will
    settle the portfolio row. It is settled failing closed, at the full amount.
    """
    from datetime import timedelta

    from ..adapters.store.budget import PORTFOLIO, PORTFOLIO_USD

    out = []
    # only rows older than a minute: between a call's portfolio reserve and its loop reserve (milliseconds)
    # the loop row does not exist yet, and a sweep in another process must not take that for an orphan
    before = now - timedelta(seconds=ORPHAN_MIN_AGE_S)
    for res in [*ledger.open_reservations(PORTFOLIO, created_before=before),
                *ledger.open_reservations(PORTFOLIO_USD, created_before=before)]:
        repo, _, tick_id = res.tick_id.partition("/")
        store = stores.get(repo)
        if store is None:
            continue  # another daemon's repository: its own sweep settles it
        if any(r.tick_id == tick_id for r in store.open_reservations()):
            continue
        ledger.settle(res.id, res.amount, now)
        out.append(res)
    return out


async def prune_loop(targets: list[tuple[str, Any, int]], clock: Any, log: Any,
                     every_s: float = 6 * 3600.0) -> None:
    """Prune each ``(name, store, retention_days)`` on start and every few hours (``RunStore.prune``)."""
    while True:
        for name, store, days in targets:
            try:
                r = await asyncio.to_thread(store.prune, clock.now(), keep_days=days)
                if r.ticks or r.events or r.reservations:
                    log("store.pruned", {"repo": name, "ticks": r.ticks, "events": r.events,
                                         "reservations": r.reservations})
            except LoopError as e:
                log("store.error", {"call": "prune", "error": f"{name}: {e}"})
        await asyncio.sleep(every_s)
