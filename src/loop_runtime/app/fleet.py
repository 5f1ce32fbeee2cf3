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
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from typing import Any

from ..errors import LoopError
from .run import RunReport
from .runtime import Project

SEP = "/"


def fleet_project(place: Any) -> Project:
    """The repository's project with the fleet's overrides applied (loops' keys, repository cap)."""
    from .runtime import load_project

    return apply_fleet(load_project(place.root), place.repo.patterns, place.repo.daily_cap)


def apply_fleet(project: Project, overrides: Mapping[str, Mapping[str, Any]], daily_cap: int | None) -> Project:
    """THE one place a fleet's per-repository settings reach a project: the embedded fleet daemon, ``run
    --fleet``, ``status --fleet`` and a Temporal worker (from the tick's ``FleetLink``) all call it.

    Each ``[repos.patterns.<id>]`` key replaces the repository's own value of that key (the others stay);
    the repository's ``daily_cap`` and its own ``global_daily_cap``: the smaller wins.
    """
    from types import MappingProxyType

    cfg = project.config
    patterns = dict(cfg.patterns)
    for pid, table in overrides.items():
        patterns[pid] = replace(cfg.for_pattern(pid), **table)
    cap = cfg.global_daily_cap
    if daily_cap is not None:
        cap = daily_cap if cap is None else min(cap, daily_cap)  # the smaller cap wins
    sources = dict(cfg.sources)
    project.config = replace(cfg, patterns=MappingProxyType(patterns), global_daily_cap=cap).with_sources(sources)
    return project


def linked_project(project: Project, pattern: str, link: Any) -> Project:
    """On a worker: the repository's project as the fleet daemon would build it (``apply_fleet``), from the
    link the schedule carried — the override table re-validated as the fleet file's own parser does."""
    from ..formats.fleet import check_caps, pattern_overrides

    if link is None:
        return project
    check_caps(link.repo_daily_cap, link.portfolio_cap, link.portfolio_usd, "schedule input")
    table = pattern_overrides(link.overrides, f"fleet {link.portfolio} repos.{link.repo}.patterns.{pattern}",
                              "schedule input")
    return apply_fleet(project, {pattern: table} if table else {}, link.repo_daily_cap)


def key(repo: str, pattern: str) -> str:
    return f"{repo}{SEP}{pattern}"


def split_key(k: str) -> tuple[str, str]:
    repo, _, pattern = k.partition(SEP)
    return repo, pattern


# --------------------------------------------------------------------------- status


def fleet_status(loaded: Any, now: datetime) -> dict[str, Any]:
    """``status --fleet``: the portfolio, then each repository's own status document, in fleet order."""
    from ..adapters.fleet import portfolio_if_exists

    portfolio = portfolio_if_exists(loaded)
    try:
        repos = [_repo_status(loaded, place, portfolio, now) for place in loaded.places]
        pdoc = portfolio_doc(loaded, portfolio, now)
    finally:
        if portfolio is not None:
            portfolio.store.close()
    return {"fleet": str(loaded.file), "generatedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "portfolio": pdoc,
            "repos": repos}


def _repo_status(loaded: Any, place: Any, portfolio: Any, now: datetime) -> dict[str, Any]:
    """One repository's status document; a broken repository is an ``error`` entry, never hides the others."""
    from .commands import store_if_exists
    from .status import project_status

    entry: dict[str, Any] = {"name": place.name, "where": place.repo.where, "root": str(place.root)}
    if place.problem:
        return {**entry, "error": place.problem, "loops": []}
    try:
        project = fleet_project(place)
        store = store_if_exists(project)
        try:
            doc = project_status(project, now, store,
                                 portfolio=portfolio if portfolio is not None else _no_ledger(loaded))
        finally:
            if store is not None:
                store.close()
    except LoopError as e:
        return {**entry, "error": str(e), "loops": []}
    return {**entry, **doc, "root": str(place.root)}


def portfolio_doc(loaded: Any, portfolio: Any, now: datetime) -> dict[str, Any]:
    """The portfolio's figures and state (``ok``, ``L1`` at ≥ 80%, ``halted``), judged as each loop is: on
    settled spend, the tighter of the token and dollar ledgers (``core.budget.assess``/``tightest``)."""
    from ..core.budget import assess, tightest, todays_cap, utc_day
    from ..ports import BudgetStatus

    ledgers = [st for _, st in portfolio.labelled(now)] if portfolio is not None else []
    usd = portfolio.usd_spent(now) if portfolio is not None else 0.0
    if not ledgers:
        ledgers = [BudgetStatus(str(utc_day(now)), todays_cap(loaded.fleet.portfolio_daily_cap), 0, 0)]
    pst = ledgers[0]  # tokens, for the figures
    verdict = assess(tightest([BudgetStatus(st.day, st.cap, st.spent, 0) for st in ledgers]))
    return {"day": pst.day, "cap": pst.cap, "spent": pst.spent, "reserved": pst.reserved,
            "percent": None if not pst.cap else round(100 * pst.used / pst.cap, 1),
            "state": "halted" if verdict.halt else ("L1" if verdict.level_cap else "ok"),
            "usdCap": loaded.fleet.portfolio_daily_usd, "usdSpent": round(usd, 6)}


# --------------------------------------------------------------------------- run --fleet


def run_member_ticks(project: Project, pattern: str, opts: Any, ticks: int, *, fleet: str | None) -> Any:
    """``run [--dry-run] [--fleet FILE]``: ``commands.run_ticks``, and for a dry run inside a fleet the
    portfolio too — its status and the level the loop would get from it (``status``'s own rule,
    ``status.loop_status`` over the portfolio scope) — the simulated tick runs at that level, and a spent
    portfolio exits 2 as the real tick would (it would halt before its first agent call). A real run
    spends from the portfolio through ``opts.portfolio`` already."""
    from .run import run_ticks

    if not fleet or not opts.dry_run:
        return run_ticks(project, pattern, opts, ticks)
    from ..adapters.fleet import load_fleet, portfolio_if_exists
    from ..core.levels import LEVELS
    from .runtime import now_utc
    from .status import loop_status, shared_scopes

    loaded = load_fleet(fleet)
    portfolio = portfolio_if_exists(loaded)
    now = now_utc()
    try:
        ledger = portfolio if portfolio is not None else _no_ledger(loaded)
        level = loop_status(project, pattern, now, None, shared=shared_scopes(project, None, now, ledger))["level"]
        pdoc = portfolio_doc(loaded, portfolio, now)
    finally:
        if portfolio is not None:
            portfolio.store.close()
    asked = opts.level or project.plan(pattern).level
    would = level["effective"]
    if would in LEVELS and LEVELS.index(would) < LEVELS.index(asked):
        opts = replace(opts, level=would)  # ≥ 80% of the portfolio: the tick runs at L1, so does its dry run
    report = run_ticks(project, pattern, opts, ticks)
    cap = f"{pdoc['cap']:,}" if pdoc["cap"] else "no cap"
    verdict = f"would run at {would}" if would in LEVELS else f"would not run: {would}"
    note = (f"portfolio ({loaded.file.name}): {pdoc['spent']:,} / {cap} tokens today, {pdoc['state']} — "
            f"{pattern} {verdict} ({level['reason']})")
    return FleetRunReport(**{f.name: getattr(report, f.name) for f in fields(report)},
                          portfolio={**pdoc, "loopLevel": level}, note=note, halted=would == "halted")


@dataclass(frozen=True)
class FleetRunReport(RunReport):
    """A dry run inside a fleet: the report, plus the portfolio and the level it gives the loop."""

    portfolio: dict[str, Any] | None = None
    note: str | None = None  # one line the CLI prints before the tick report
    halted: bool = False  # the portfolio is spent: a real tick would halt (exit 2)

    @property
    def exit_code(self) -> int:
        return max(2 if self.halted else 0, super().exit_code)

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), "portfolio": self.portfolio}


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
        from .services import Services

        store, key_, name = Services.open(project).store, GLOBAL, f"repository {project.root.name}"
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
