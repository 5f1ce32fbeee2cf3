"""``dashboard``: the local web dashboard of one project, or the overview of a fleet."""

from __future__ import annotations

import click

from .group import Ctx, cli, pass_ctx


@cli.command()
@click.option("--port", type=int, default=8765, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (anything but loopback requires a token).")
@click.option("--token", default=None, help="Required for mutating requests (default: random, printed).")
@click.option("--fleet", "fleet", default=None, metavar="FILE",
              help="Serve the fleet overview (every repository's loops, the portfolio) instead of one project.")
@pass_ctx
def dashboard(c: Ctx, port: int, host: str, token: str | None, fleet: str | None) -> None:
    """Serve the local dashboard (cost burn-down, live loops, kill button, escalations)."""
    from ..dashboard.server import serve

    if fleet:
        from ..adapters.fleet import load_fleet
        from ..dashboard.fleet import make_fleet_server
        from ..dashboard.server import dashboard_url

        server, tok = make_fleet_server(load_fleet(fleet), host=host, port=port, token=token)
        click.echo(f"dashboard: {dashboard_url(host, port, tok)}", err=True)
        server.run()
        return

    serve(c.project, host=host, port=port, token=token)
