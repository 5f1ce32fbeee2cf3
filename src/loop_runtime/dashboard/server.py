"""Serving the dashboard with uvicorn: ``loop-runtime dashboard`` and ``start --dashboard``.

Binds 127.0.0.1 unless told otherwise. Another address is refused without an
explicit token (``--token`` or ``dashboard_token`` / ``LOOP_RUNTIME_DASHBOARD_TOKEN``),
and there every page requires the token, not just the buttons. The URL printed at
start carries ``?token=``; opening it once sets the cookie.
"""

from __future__ import annotations

import sys
from typing import Any

from ..app.runtime import Project
from .security import is_loopback, resolve_token

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..app.services import Services

__all__ = ["dashboard_url", "make_server", "serve"]

GRACEFUL_S = 3  # open SSE streams are cut after this long on shutdown


def dashboard_url(host: str, port: int, token: str) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/?token={token}"


def make_server(project: Project, *, host: str, port: int, token: str | None,
                services: Services | None = None) -> tuple[Any, str]:
    """A configured (not yet started) ``uvicorn.Server`` and the token it requires.

    ``services``: the daemon's, whose one store the dashboard then reads (it never closes it).
    Raises ``ConfigError`` for a non-loopback ``host`` without a token.
    """
    from ..optional import require

    for module in ("starlette", "jinja2"):
        require(module)
    uvicorn = require("uvicorn")
    from .app import create_app

    token = resolve_token(host, token, project.config.dashboard_token,
                          project.config.source_of("dashboard_token"))
    loopback = is_loopback(host)
    app = create_app(project, token=token, public_reads=loopback, allowed_hosts=None if loopback else ["*"],
                     services=services)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=GRACEFUL_S, server_header=False)
    server = uvicorn.Server(config)
    app.state.dashboard.should_stop = lambda: server.should_exit  # SSE streams end at shutdown
    return server, token


def serve(project: Project, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
    """Print the dashboard URL (with its token) to stderr and serve until interrupted."""
    server, token = make_server(project, host=host, port=port, token=token)
    print(f"dashboard: {dashboard_url(host, port, token)}", file=sys.stderr, flush=True)
    if not is_loopback(host):
        print(f"dashboard: listening on {host} — every request needs the token", file=sys.stderr, flush=True)
    server.run()
