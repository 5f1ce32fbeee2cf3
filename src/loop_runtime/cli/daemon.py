"""``start``: every enabled loop on its cadence (one project, or every repository of a fleet)."""

from __future__ import annotations

import sys

import click

from .group import BACKEND_CHOICE, FLEET_HELP, Ctx, cli, pass_ctx


@cli.command()
@click.argument("patterns", nargs=-1)
@click.option("--dashboard", is_flag=True, help="Also serve the dashboard.")
@click.option("--port", type=int, default=8765, show_default=True, help="Dashboard port (with --dashboard).")
@click.option("--backend", type=BACKEND_CHOICE, default=None,
              help="Agent backend (default: loop-runtime.toml, else mock).")
@click.option("--scenario", default=None, help="Mock backend scenario: a bundled name or a YAML file.")
@click.option("--log-format", type=click.Choice(["auto", "plain", "json", "none"]), default="auto",
              help="Log lines on stderr: plain for people, json for machines, none for quiet.")
@click.option("--fleet", "fleet", default=None, metavar="FILE", help=FLEET_HELP)
@pass_ctx
def start(c: Ctx, patterns: tuple[str, ...], dashboard: bool, port: int, backend: str | None,
          scenario: str | None, log_format: str, fleet: str | None) -> None:
    """Run every enabled loop (or the named ones) on its cadence until SIGTERM/SIGINT.

    PATTERNS: pattern ids to run (default: every enabled loop).
    """
    from ..daemon import run_daemon

    if fleet:
        from ..errors import ConfigError
        from ..fleet_daemon import run_fleet_daemon

        if patterns:
            raise ConfigError("start", "patterns", " ".join(patterns),
                              message="start --fleet runs every enabled loop of every repository: name no patterns "
                                      "(disable loops with [repos.patterns.<id>] enabled = false)")
        sys.exit(run_fleet_daemon(fleet, backend=backend, scenario=scenario, log_format=log_format,
                                  dashboard_port=port if dashboard else None))

    sys.exit(run_daemon(c.project, list(patterns), dashboard=dashboard, port=port, backend=backend,
                        scenario=scenario, log_format=log_format))
