"""The fleet overview: every repository's loops on one page, grouped by repository, and the portfolio.

Read-only by design: a button acts on one repository (kill, approve, top-up), and that
repository's own dashboard (``loop-runtime dashboard --root <repo>``) already has it with
its token and CSRF checks; the fleet page links nothing it cannot guard. It reads through
``fleet.fleet_status`` — the document ``status --fleet --json`` prints — so the two agree.

Routes: ``GET /`` (HTML), ``GET /api/fleet`` (JSON).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .security import Guard, SecurityMiddleware, loopback_hosts

HERE = Path(__file__).parent


def create_fleet_app(loaded: Any, *, token: str, public_reads: bool = True,
                     allowed_hosts: list[str] | None = None) -> Any:
    import jinja2
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
    from starlette.templating import Jinja2Templates

    from ..app.fleet import fleet_status
    from ..app.runtime import now_utc
    from .mutations import call

    if not token:
        raise ConfigError("dashboard", "token", "", message="the dashboard needs a token")
    guard = Guard(token, public_reads=public_reads)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
    templates = Jinja2Templates(env=env)
    env.filters["num"] = lambda v: "—" if v is None else f"{int(v):,}"
    env.filters["pct"] = lambda v: "" if v is None else f"{float(v):.0f}%"

    def doc() -> dict[str, Any]:
        return fleet_status(loaded, now_utc())

    async def page(request: Any) -> Any:
        fleet = await call(doc)
        return templates.TemplateResponse(request, "fleet.html", {
            "fleet": fleet, "nav": "fleet", "root": str(loaded.file), "csrf": None, "since": None, "status": None})

    async def api(request: Any) -> Any:
        return JSONResponse(await call(doc))

    routes = [Route("/", page), Route("/api/fleet", api),
              Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or loopback_hosts()),
                  Middleware(SecurityMiddleware, guard=guard)]
    return Starlette(routes=routes, middleware=middleware)


def make_fleet_server(loaded: Any, *, host: str, port: int, token: str | None) -> tuple[Any, str]:
    from ..optional import require
    from .security import is_loopback, resolve_token

    for module in ("starlette", "jinja2"):
        require(module)
    uvicorn = require("uvicorn")
    token = resolve_token(host, token, None, "loop-fleet.toml")
    loopback = is_loopback(host)
    app = create_fleet_app(loaded, token=token, public_reads=loopback, allowed_hosts=None if loopback else ["*"])
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                            server_header=False)
    return uvicorn.Server(config), token
