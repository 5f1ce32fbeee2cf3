"""``mcp``: the project as a stdio MCP server (``mcp_server``)."""

from __future__ import annotations

from .group import Ctx, cli, pass_ctx


@cli.command()
@pass_ctx
def mcp(c: Ctx) -> None:
    """Serve this project over MCP on stdin/stdout (needs the [mcp] extra).

    Tools: list_patterns, plan, status, cost, run_tick (a dry run unless confirm is true), kill, resume,
    escalations, approve, reject; resources: each state file and the run log (redacted).
    """
    root = c.root
    from ..optional import check

    check("mcp", extra="mcp", feature="the MCP server (`loop-runtime mcp`)")
    from ..mcp_server import serve

    serve(root)
