"""A fleet on Temporal: what ``schedule sync --fleet`` puts in each loop's schedule, and the portfolio's
budget workflows (top-ups, status) — the same (scope, UTC day) workflows every worker reserves from.

A worker never reads the fleet file (each keeps only clones of the repositories): the schedule's
``TickInput.fleet`` (a ``FleetLink``) carries this loop's overrides, the repository's cap and the
portfolio's caps, and the worker applies them with ``app.fleet.linked_project`` — the embedded fleet
daemon's own ``apply_fleet``. So a loop behaves the same in ``start --fleet`` and on workers.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .types import FleetLink

#: the dollar ledger of a portfolio scope (micro-dollars), next to its token ledger
USD_SUFFIX = ":usd"


def fleet_link(loaded: Any, place: Any, pattern: str) -> FleetLink:
    """What a Temporal worker needs of the fleet file for one loop of one repository."""
    from ..formats.fleet import overrides_json

    table = place.repo.patterns.get(pattern)
    return FleetLink(portfolio=loaded.portfolio_scope, repo=place.name,
                     overrides=overrides_json(table) if table else {}, repo_daily_cap=place.repo.daily_cap,
                     portfolio_cap=loaded.fleet.portfolio_daily_cap, portfolio_usd=loaded.fleet.portfolio_daily_usd)


def portfolio_scopes(link: FleetLink | None, backend: str) -> list[Any]:
    """The portfolio's budget scopes for one tick, outermost first — tokens, then (``portfolio_daily_usd``)
    micro-dollars — priced exactly as the embedded fleet prices them (``PortfolioLedger.scope``: the
    backend's reported cost, else the price table); on Temporal the scope's ledger is its budget workflow."""
    from ..adapters.fleet import PortfolioLedger

    if link is None:
        return []
    ledger = PortfolioLedger(None, link.portfolio_cap, link.repo, link.portfolio_usd)  # type: ignore[arg-type]
    scopes = ledger.scope("-", backend)
    return [replace(sc, key=link.portfolio + (USD_SUFFIX if i else ""), ref=None) for i, sc in enumerate(scopes)]
