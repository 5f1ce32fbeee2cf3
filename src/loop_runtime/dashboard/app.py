"""The dashboard as a Starlette app: server-rendered pages, a JSON API, live updates over SSE.

Reads go through the same functions as the CLI (``status.project_status`` for the
overview, the run store for ticks and escalations); writes go *only* through
``loop_runtime.app.actions`` (``kill``, ``resume``, ``approve``, ``reject``, ``topup``), so
a button and a command always have the same effect and the dashboard never calls an
agent backend. Blocking work (SQLite, git, file reads) runs in the thread pool, so a
dashboard embedded in the daemon never stalls its scheduler.

Routes (``POST`` ones need the token, see ``security``)::

    GET  /                      overview: loops, spend vs cap, charts, kill switch
    GET  /loops/{pattern}       ticks timeline, state file, run log, transcripts
    GET  /loops/{pattern}/timeline      the timeline table alone (live refresh)
    GET  /escalations           open and decided escalations
    GET  /escalations/{id}      held diff, verdict and reasons, test output
    GET  /ticks/{tick}          one tick's story: phases, tokens per role, triage, verdict, tests, diff
    GET  /transcripts/{tick}/{name}     one transcript, redacted
    GET  /api/status  /api/budget       JSON (status = ``loop-runtime status --json``)
    GET  /events                SSE: store events as they arrive + status snapshots
    POST /kill  /resume  /escalations/{id}/approve  /escalations/{id}/reject  /loops/{pattern}/topup
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ..errors import ConfigError
from ..app.runtime import Project
from .mutations import FLASH_COOKIE, call, dash_of
from .security import CSRF_FIELD, Guard, SecurityMiddleware, loopback_hosts

__all__ = ["create_app"]

HERE = Path(__file__).parent
POLL_S = 0.5
STATUS_EVERY_S = 5.0

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime

    from ..app.services import Services
    from ..ports.store import Store

StoreFactory = Callable[[Project], Any]


class Dashboard:
    """What every request of one app shares: project, guard, store, templates, secrets."""

    def __init__(self, project: Project, guard: Guard, store_factory: StoreFactory | None,
                 services: Services | None = None) -> None:
        from starlette.templating import Jinja2Templates

        from ..adapters.environment import secret_values

        from ..app.services import Services

        self.project, self.guard = project, guard
        self._own = services is None  # services handed in (the daemon's) are closed by their owner
        self.services = services if services is not None else Services.open(project)
        self._factory = store_factory
        self._store: Store | None = None
        self._lock = threading.Lock()
        self.closing = False
        self.should_stop: Callable[[], bool] = lambda: False  # the server's "shutting down" flag
        self._tick_tokens: dict[str, int] = {}
        self.secrets: list[str] = secret_values(project.root, os.environ)
        if guard.token not in self.secrets:
            self.secrets.append(guard.token)
        import jinja2

        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
        self.templates = Jinja2Templates(env=env)
        self.templates.env.filters["num"] = lambda v: "—" if v is None else f"{int(v):,}"
        self.templates.env.filters["pct"] = lambda v: "" if v is None else f"{float(v):.0f}%"

    # -- store
    def store(self) -> Store | None:
        """The run store, opened once it exists (the dashboard never creates one by looking)."""
        with self._lock:
            if self._store is None:
                self._store = (self._factory(self.project) if self._factory is not None
                               else self.services.existing_store())
            return self._store

    def close(self) -> None:
        """Close the store these services opened (one from ``store_factory`` stays its owner's)."""
        with self._lock:
            if self._own:
                self.services.close()
            self._store = None

    def now(self) -> datetime:
        """What time it is for every page: the services' clock (a test's manual one, else the system's)."""
        return self.services.clock.now()

    # -- reads
    def status(self) -> dict[str, Any]:
        from ..app.status import project_status

        return project_status(self.project, self.now(), self.store())

    def live(self, doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Running ticks' lifecycle phase and tokens so far, by pattern.

        ``status`` reports a running tick's last journal entry (``reserve:…``,
        ``workspace``…); the page shows the lifecycle phase (``implementing``) instead.
        """
        from .views import running_tick

        store = self.store()
        if store is None:
            return {}
        return {lp["pattern"]: running_tick(store, lp["running"]["tick"]) for lp in doc["loops"] if lp.get("running")}

    def snapshot(self) -> dict[str, Any]:
        """The SSE status message: the status document plus ``live`` (dashboard-only)."""
        doc = self.status()
        return {**doc, "live": self.live(doc)}

    def latest_event_id(self) -> int:
        """The newest event id: where a freshly opened page starts following."""
        store = self.store()
        return 0 if store is None else int(store.last_event_id())

    def events_since(self, last: int, limit: int = 200) -> list[dict[str, Any]]:
        store = self.store()
        if store is None:
            return []
        return [self.event_doc(e) for e in store.events_since(last, limit)]

    def event_doc(self, e: Any) -> dict[str, Any]:
        """One store event for the page: redacted payload plus the sentence a person reads.

        ``text`` is None for events that carry only numbers (token counters); the tick's
        tokens so far, remembered from those, end the next sentence instead.
        """
        from .tickview import event_sentence, valid_tick_id
        from .views import redact_tree

        payload = redact_tree(e.payload, self.secrets)
        tick = e.tick_id if e.tick_id and valid_tick_id(str(e.tick_id)) else None
        tokens = None
        if tick is not None:
            if e.kind in ("tick.usage", "tick.end") and isinstance(payload.get("tokens"), int):
                self._tick_tokens[tick] = payload["tokens"]
                while len(self._tick_tokens) > 500:
                    self._tick_tokens.pop(next(iter(self._tick_tokens)))
            tokens = self._tick_tokens.get(tick)
        return {"id": e.id, "kind": e.kind, "pattern": e.pattern, "tick": e.tick_id,
                "at": e.at.strftime("%Y-%m-%dT%H:%M:%SZ"), "payload": payload,
                "text": event_sentence(e.kind, e.pattern, payload, tokens),
                "href": f"/ticks/{tick}" if tick else None}

    def recent_events(self, n: int = 25) -> tuple[list[dict[str, Any]], int]:
        """The newest ``n`` events worth a sentence, newest first (and where live updates resume)."""
        last = self.latest_event_id()
        docs = self.events_since(max(0, last - 10 * n), 10 * n)
        return [d for d in docs if d["text"]][::-1][:n], last

    # -- responses
    def page(self, request: Any, name: str, context: dict[str, Any], status_code: int = 200) -> Any:
        flash = request.cookies.get(FLASH_COOKIE)
        ctx = {
            "csrf": self.guard.csrf if self.guard.authenticated(request) else None,
            "csrf_field": CSRF_FIELD,
            "flash": _parse_flash(flash),
            "root": str(self.project.root),
            "path": request.url.path,
            **context,
        }
        response = self.templates.TemplateResponse(request, name, ctx, status_code=status_code)
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response


def _parse_flash(raw: str | None) -> dict[str, str] | None:
    text = unquote(raw or "")
    if ":" not in text:
        return None
    kind, _, text = text.partition(":")
    return {"kind": "error" if kind == "error" else "ok", "text": text[:400]}


# ---------------------------------------------------------------------------- pages


async def overview(request: Any) -> Any:
    from .views import escalation_row

    d = dash_of(request)
    doc = await call(d.snapshot)
    store = await call(d.store)
    open_esc = [] if store is None else await call(store.list_escalations, "open")
    events, last = await call(d.recent_events)
    rows = [escalation_row(e, d.secrets) for e in open_esc]
    return d.page(request, "overview.html", {"status": doc, "live": doc["live"], "escalations": rows,
                                             "events": events, "since": last, "nav": "overview"})


async def loop_page(request: Any) -> Any:
    from .views import loop_view

    d = dash_of(request)
    pattern = request.path_params["pattern"]
    doc = await call(d.status)
    loop = next((lp for lp in doc["loops"] if lp["pattern"] == pattern), None)
    if loop is None:
        return _not_found(request, f"no loop {pattern!r} in this project")
    view = await call(loop_view, d.project, d.store(), loop, d.now(), d.secrets)
    events, last = await call(d.recent_events)
    return d.page(request, "loop.html", {"status": doc, "loop": loop, "view": view, "since": last,
                                         "events": [e for e in events if e["pattern"] == pattern], "nav": "loop"})


async def timeline(request: Any) -> Any:
    from .views import tick_rows

    d = dash_of(request)
    pattern = request.path_params["pattern"]
    if not any(p.id == pattern for p in d.project.registry.patterns):
        return _not_found(request, f"no loop {pattern!r}")
    rows = await call(tick_rows, d.project, d.store(), pattern, d.now(), d.secrets)
    return d.page(request, "_timeline.html", {"ticks": rows, "pattern": pattern})


async def escalations_page(request: Any) -> Any:
    from .views import escalation_row

    d = dash_of(request)
    store = await call(d.store)
    items = [] if store is None else await call(store.list_escalations, None)
    doc = await call(d.status)
    open_ = [escalation_row(e, d.secrets) for e in items if e.status == "open"]
    done = sorted((e for e in items if e.status != "open"), key=lambda e: e.decided_at or e.created_at, reverse=True)
    decided = [escalation_row(e, d.secrets) for e in done[:50]]
    return d.page(request, "escalations.html", {"status": doc, "open": open_, "decided": decided,
                                                "since": None, "nav": "escalations"})


async def escalation_page(request: Any) -> Any:
    from .views import escalation_view

    d = dash_of(request)
    store = await call(d.store)
    esc = None if store is None else await call(store.get_escalation, request.path_params["esc_id"])
    if esc is None:
        return _not_found(request, "no such escalation")
    view = await call(escalation_view, d.project, store, esc, d.secrets)
    doc = await call(d.status)
    return d.page(request, "escalation.html", {"status": doc, "esc": view, "since": None, "nav": "escalations"})


async def tick_page(request: Any) -> Any:
    from .tickview import tick_view, valid_tick_id

    d = dash_of(request)
    tick_id = request.path_params["tick_id"]
    if not valid_tick_id(tick_id):
        return _not_found(request, "no such tick")
    store = await call(d.store)
    tick = None if store is None else await call(store.get_tick, tick_id)
    if tick is None:
        return _not_found(request, "no such tick")
    view = await call(tick_view, d.project, store, tick, d.now(), d.secrets)
    doc = await call(d.status)
    return d.page(request, "tick.html", {"status": doc, "tick": view, "since": None, "nav": "loop"})


async def transcript_page(request: Any) -> Any:
    from .views import safe, transcript_path

    d = dash_of(request)
    tick, name = request.path_params["tick_id"], request.path_params["name"]
    path = transcript_path(d.project, tick, name)
    if path is None or not path.is_file():
        return _not_found(request, "no such transcript")
    text = await call(path.read_text, "utf-8", "replace")
    doc = await call(d.status)
    return d.page(request, "transcript.html", {"status": doc, "tick": tick, "name": name, "since": None,
                                               "text": safe(text, d.secrets, 2_000_000), "nav": "loop"})


def _not_found(request: Any, message: str) -> Any:
    d = dash_of(request)
    return d.page(request, "error.html", {"status": None, "message": message, "since": None, "nav": ""},
                  status_code=404)


# ---------------------------------------------------------------------------- JSON + SSE


async def api_status(request: Any) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(await call(dash_of(request).status))


async def api_budget(request: Any) -> Any:
    from starlette.responses import JSONResponse

    from ..app.status import loops_to_show
    from .charts import budget_document

    d = dash_of(request)

    def build() -> dict[str, Any]:
        store = d.store()
        return budget_document(d.project, store, loops_to_show(d.project, store), d.now())

    return JSONResponse(await call(build))


def _sse(kind: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


async def events(request: Any) -> Any:
    """SSE: every store event after ``since`` (or ``Last-Event-ID``), plus a status snapshot
    whenever events arrived and at least every few seconds. ``limit`` ends the stream
    after that many messages; ``follow=0`` ends it once caught up (a script dumping
    history, a test)."""
    from starlette.responses import StreamingResponse

    d = dash_of(request)
    raw = request.headers.get("last-event-id") or request.query_params.get("since")  # a reconnect resumes
    try:
        since = int(raw) if raw is not None else None
        limit = int(request.query_params.get("limit") or 0)
        follow = request.query_params.get("follow", "1") not in ("0", "false", "no")
    except ValueError:
        from starlette.responses import PlainTextResponse

        return PlainTextResponse("since and limit must be integers", status_code=400)
    if since is None:
        since = await call(d.latest_event_id)
    return StreamingResponse(_stream(request, d, since, limit, follow), media_type="text/event-stream",
                             headers={"x-accel-buffering": "no"})


async def _stream(request: Any, d: Dashboard, since: int, limit: int, follow: bool) -> AsyncIterator[str]:
    sent, last, next_status = 0, since, 0.0
    yield "retry: 2000\n\n"
    while not (d.closing or d.should_stop()):
        batch = await call(d.events_since, last)
        for e in batch:
            yield _sse("store", e, e["id"])
            last, sent = e["id"], sent + 1
            if limit and sent >= limit:
                return
        if batch or time.monotonic() >= next_status:
            yield _sse("status", await call(d.snapshot))
            sent, next_status = sent + 1, time.monotonic() + STATUS_EVERY_S
            if limit and sent >= limit:
                return
        if not follow:
            if not batch:
                return
            continue  # catching up: no pause between pages
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL_S)


# ---------------------------------------------------------------------------- factory


def create_app(project: Project, *, token: str, store_factory: StoreFactory | None = None,
               public_reads: bool = True, allowed_hosts: list[str] | None = None,
               services: Services | None = None) -> Any:
    """The dashboard app for one project.

    ``token`` is required for every mutating request (and every request when
    ``public_reads`` is False). ``store_factory(project)`` supplies the run store (the
    caller keeps ownership of it); by default the app opens ``.loop-runtime/runtime.db``
    once it exists and closes it on shutdown. ``allowed_hosts`` pins the Host header
    (default: loopback names only). ``services``: the project's (the daemon's, a test's with a manual
    clock); their store is read, and they stay open when the app shuts down.
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from .mutations import approve_action, kill_action, reject_action, resume_action, topup_action

    if not token:
        raise ConfigError("dashboard", "token", "", message="the dashboard needs a token")
    guard = Guard(token, public_reads=public_reads)
    dash = Dashboard(project, guard, store_factory, services)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            dash.closing = True
            dash.close()

    routes = [
        Route("/", overview),
        Route("/loops/{pattern}", loop_page),
        Route("/loops/{pattern}/timeline", timeline),
        Route("/loops/{pattern}/topup", topup_action, methods=["POST"]),
        Route("/escalations", escalations_page),
        Route("/escalations/{esc_id}", escalation_page),
        Route("/escalations/{esc_id}/approve", approve_action, methods=["POST"]),
        Route("/escalations/{esc_id}/reject", reject_action, methods=["POST"]),
        Route("/ticks/{tick_id}", tick_page),
        Route("/transcripts/{tick_id}/{name}", transcript_page),
        Route("/api/status", api_status),
        Route("/api/budget", api_budget),
        Route("/events", events),
        Route("/kill", kill_action, methods=["POST"]),
        Route("/resume", resume_action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or loopback_hosts()),
        Middleware(SecurityMiddleware, guard=guard),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.dashboard = dash
    return app
