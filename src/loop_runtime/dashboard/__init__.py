"""The local dashboard: a Starlette app (server-rendered Jinja2 pages, SSE live updates).

``loop-runtime dashboard`` and ``loop-runtime start --dashboard`` serve it with uvicorn
(``server.serve`` / ``server.make_server``); ``app.create_app`` builds the app for tests
and embedding. Every asset — CSS, JS and the vendored uPlot chart library — ships in
``static/``, so the page works offline. Starlette, uvicorn and Jinja2 are the
``dashboard`` extra and are imported only when a dashboard is actually served.
"""

from __future__ import annotations

__all__ = ["create_app", "make_server", "serve"]


def __getattr__(name: str) -> object:
    """Lazy re-exports: importing the package must not import Starlette or uvicorn."""
    if name == "create_app":
        from .app import create_app

        return create_app
    if name in ("make_server", "serve"):
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
