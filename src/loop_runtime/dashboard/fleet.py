"""The fleet overview: every repository's loops on one page, grouped by repository, and the portfolio —
with the single-project dashboard's actions, each routed to its repository.

Reads go through ``fleet.fleet_status`` — the document ``status --fleet --json`` prints — so the two
agree. Actions are the single-project dashboard's own handlers (``mutations``: token, CSRF and origin
checks by ``security.Guard``, the same ``app.actions`` calls, the same Temporal hooks), mounted once per
repository under ``/repos/<name>/`` with that repository's ``Dashboard`` (its project as the fleet builds
it, its store, its secrets), so an action can only ever reach the repository named in its URL. The
repository and portfolio top-ups (``@repo``/``@portfolio``) go through ``temporal.commands
.topup_scope_command``, as ``loop-runtime topup`` does.

Routes: ``GET /`` (HTML), ``GET /api/fleet`` (JSON); ``POST /portfolio/topup``; and per repository
``POST /repos/<name>/kill``, ``/resume``, ``/topup`` (the repository's cap), ``/loops/<id>/topup``,
``/escalations/<id>/approve``, ``/escalations/<id>/reject``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, LoopError
from .security import Guard, SecurityMiddleware, loopback_hosts

HERE = Path(__file__).parent


class FleetDash:
    """What the fleet-level handlers share with ``mutations`` (its ``dash_of``): the guard and the secrets
    every answer is redacted with (each repository's, gathered as their dashboards are built)."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.secrets: list[str] = [guard.token]


def repo_apps(loaded: Any, guard: Guard, fleet_dash: FleetDash) -> dict[str, Any]:
    """One Starlette app per usable repository, its state the repository's own ``Dashboard``."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from ..app.fleet import fleet_project
    from .app import Dashboard
    from .mutations import approve_action, kill_action, reject_action, resume_action, topup_action

    routes = [Route("/kill", kill_action, methods=["POST"]), Route("/resume", resume_action, methods=["POST"]),
              Route("/topup", repo_topup_action, methods=["POST"]),
              Route("/loops/{pattern}/topup", topup_action, methods=["POST"]),
              Route("/escalations/{esc_id}/approve", approve_action, methods=["POST"]),
              Route("/escalations/{esc_id}/reject", reject_action, methods=["POST"])]
    apps = {}
    for place in loaded.places:
        if place.problem:
            continue
        try:
            dash = Dashboard(fleet_project(place), guard, None)
        except LoopError:
            continue  # a broken repository: the page shows its error, nothing can act on it
        app = Starlette(routes=routes)
        app.state.dashboard = dash
        fleet_dash.secrets.extend(s for s in dash.secrets if s not in fleet_dash.secrets)
        apps[place.name] = app
    return apps


async def repo_topup_action(request: Any) -> Any:
    """``topup @repo``: the repository's ``global_daily_cap`` (and its budget workflow on Temporal)."""
    from .mutations import dash_of

    return await _scope_topup(request, "@repo", dash_of(request).project, None)


def portfolio_topup_action(loaded: Any) -> Any:
    """``topup @portfolio --fleet FILE``: the fleet's portfolio ledger (and its budget workflow on Temporal)."""

    async def action(request: Any) -> Any:
        return await _scope_topup(request, "@portfolio", None, str(loaded.file))

    return action


async def _scope_topup(request: Any, scope: str, project: Any, fleet: str | None) -> Any:
    from ..temporal.commands import topup_scope_command
    from .mutations import _authorized_form, _done, _failed, call

    form, refused = await _authorized_form(request)
    if refused is not None:
        return refused
    try:
        tokens = int(str(form.get("tokens") or "").replace(",", "").replace("_", "").strip())
    except ValueError:
        return _failed(request, form, ConfigError("topup", "tokens", form.get("tokens")))
    reason = str(form.get("reason") or "top-up from the fleet dashboard")[:200]
    try:
        result, note = await call(topup_scope_command, project, scope, tokens, reason=reason, fleet=fleet)
    except LoopError as e:
        return _failed(request, form, e)
    message = f"Top-up: +{tokens:,} tokens for {result['scope']} today ({result['day']})." + (f" {note}" if note else "")
    return _done(request, form, message, {"result": result})


def create_fleet_app(loaded: Any, *, token: str, public_reads: bool = True,
                     allowed_hosts: list[str] | None = None) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from .mutations import call

    if not token:
        raise ConfigError("dashboard", "token", "", message="the dashboard needs a token")
    guard = Guard(token, public_reads=public_reads)
    fleet_dash = FleetDash(guard)
    repos = repo_apps(loaded, guard, fleet_dash)
    page = fleet_page(loaded, guard, repos)

    async def api(request: Any) -> Any:
        from ..app.fleet import fleet_status
        from ..app.runtime import now_utc

        return JSONResponse(await call(fleet_status, loaded, now_utc()))

    routes = [Route("/", page), Route("/api/fleet", api),
              Route("/portfolio/topup", portfolio_topup_action(loaded), methods=["POST"]),
              *[Mount(f"/repos/{name}", app=app) for name, app in repos.items()],
              Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or loopback_hosts()),
                  Middleware(SecurityMiddleware, guard=guard)]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.dashboard = fleet_dash
    return app


def fleet_page(loaded: Any, guard: Guard, repos: dict[str, Any]) -> Any:
    """``GET /``: the fleet document, each repository's open escalations, and the forms when authenticated."""
    import jinja2
    from starlette.templating import Jinja2Templates

    from .app import _parse_flash
    from .mutations import FLASH_COOKIE, call
    from .security import CSRF_FIELD

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
    templates = Jinja2Templates(env=env)
    env.filters["num"] = lambda v: "—" if v is None else f"{int(v):,}"
    env.filters["pct"] = lambda v: "" if v is None else f"{float(v):.0f}%"

    def read() -> dict[str, Any]:
        from ..app.fleet import fleet_status
        from ..app.runtime import now_utc
        from .views import escalation_row

        doc = fleet_status(loaded, now_utc())
        for repo in doc["repos"]:
            app = repos.get(repo["name"])
            store = app.state.dashboard.store() if app is not None else None
            rows = store.list_escalations("open") if store is not None else []
            repo["escalations"] = [escalation_row(e, app.state.dashboard.secrets) for e in rows]
            repo["actions"] = app is not None
        return doc

    async def page(request: Any) -> Any:
        fleet = await call(read)
        flash = request.cookies.get(FLASH_COOKIE)
        response = templates.TemplateResponse(request, "fleet.html", {
            "fleet": fleet, "nav": "fleet", "root": str(loaded.file), "since": None, "status": None,
            "csrf": guard.csrf if guard.authenticated(request) else None, "csrf_field": CSRF_FIELD,
            "flash": _parse_flash(flash)})
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response

    return page


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
