"""``run``: tick(s) of one loop now, in this project or as a member of a fleet."""

from __future__ import annotations

import sys
from typing import Any

import click

from .group import BACKEND_CHOICE, FLEET_HELP, LEVEL_HELP, Ctx, cli, emit_json, pass_ctx, pattern_param


@cli.command()
@pattern_param()
@click.option("-l", "--level", type=click.Choice(["L0", "L1", "L2", "L3"], case_sensitive=False), default=None,
              help=LEVEL_HELP)
@click.option("--dry-run", is_flag=True, help="Run in memory: read the project, write nothing.")
@click.option("--ticks", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="How many ticks to run, one after another.")
@click.option("--backend", type=BACKEND_CHOICE, default=None,
              help="Agent backend (default: loop-runtime.toml, else mock).")
@click.option("--scenario", default=None, help="Mock backend scenario: a bundled name or a YAML file.")
@click.option("--model", default=None, help="Model for the agent backend (default: the backend's own).")
@click.option("--log-format", type=click.Choice(["auto", "plain", "json", "none"]), default="auto",
              help="Progress on stderr: live on a TTY, plain lines otherwise; json for structured events.")
@click.option("--force", is_flag=True, help="Tick even if nothing changed since the last no-op or the runs/day cap "
              "is reached (the token budget and the kill switch still apply).")
@click.option("--budget", type=click.IntRange(1, None), default=None, metavar="TOKENS",
              help="Today's token cap for this loop (the smaller of this and the configured cap wins).")
@click.option("--json", "as_json", is_flag=True, help="Print the tick results as JSON.")
@click.option("--fleet", "fleet", default=None, metavar="FILE", help=FLEET_HELP)
@pass_ctx
def run(c: Ctx, pattern: str, level: str | None, dry_run: bool, ticks: int, backend: str | None,
        scenario: str | None, model: str | None, log_format: str, force: bool, budget: int | None,
        as_json: bool, fleet: str | None) -> None:
    """Run tick(s) of one loop now.

    PATTERN: a pattern id from the registry (`loop-runtime list`).
    """
    from ..app.run import notifier_for
    from ..app.fleet import run_member_ticks
    from ..app.runner import RunOptions
    from ..progress import make_progress

    project, portfolio = (c.project, None) if not fleet else _fleet_member(c, fleet, dry_run)
    progress = make_progress(log_format, total=ticks)
    opts = RunOptions(level=level, backend=backend, dry_run=dry_run, scenario=scenario, model=model,
                      on_event=progress.event if progress else None,
                      notifier=notifier_for(project, lambda msg: click.echo(f"notify: {msg}", err=True)),
                      force=force, budget=budget, portfolio=portfolio)
    try:
        report = run_member_ticks(project, pattern, opts, ticks, fleet=fleet)
    finally:
        if progress:
            progress.close()
        if portfolio is not None:
            portfolio.store.close()
    if as_json:
        emit_json(report.as_json())
    else:
        from ..render import tick_report

        if getattr(report, "note", None):  # a dry run inside a fleet: the portfolio and the level it gives
            click.echo(report.note)
        click.echo(tick_report(report.results, pattern_name=report.plan.pattern.name,
                               level=level or report.plan.level, backend=report.backend, dry_run=dry_run,
                               spent=report.spent, cap=report.cap))
    sys.exit(report.exit_code)


def _fleet_member(c: Ctx, fleet: str, dry_run: bool) -> tuple[Any, Any]:
    """``--fleet FILE`` inside one of its repositories: that repository as the fleet sees it, and the
    portfolio ledger it spends from (not opened for a dry run, which writes nothing)."""
    from ..adapters.fleet import load_fleet, open_portfolio
    from ..app.fleet import fleet_project
    from ..errors import ConfigError

    loaded = load_fleet(fleet)
    place = loaded.place_of(c.root)
    if place is None:
        raise ConfigError("--fleet", "root", str(c.root), message=f"{c.root} is not a repository of the fleet "
                          f"{fleet} (repositories: {', '.join(p.name for p in loaded.places)})")
    project = fleet_project(place)
    return project, None if dry_run else open_portfolio(loaded).for_repo(place.name)
