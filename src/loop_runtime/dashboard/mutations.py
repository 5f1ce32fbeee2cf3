"""The dashboard's POST handlers: every change goes through ``loop_runtime.app.actions``.

Each handler checks the request (token, CSRF, origin — ``security.Guard``), parses a
plain URL-encoded form (read here, so the dashboard needs no multipart library), calls
exactly the function the CLI command calls, and answers a browser with a redirect and
a flash message, a script (token header or ``Accept: application/json``) with JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote

from ..app import actions
from ..errors import ConfigError, LoopError
from .security import Guard

__all__ = ["FLASH_COOKIE", "approve_action", "call", "dash_of", "kill_action", "reject_action", "resume_action",
           "topup_action"]

FLASH_COOKIE = "loop_runtime_flash"
MAX_FORM_BYTES = 64 * 1024


def dash_of(request: Any) -> Any:
    """The app's shared ``Dashboard`` (see ``app``)."""
    return request.app.state.dashboard


def _on_temporal() -> Any:
    """The hooks that send a human's action to Temporal when the project runs there (``[temporal]``);
    for any other project they return None at once, importing nothing more."""
    from ..temporal import commands

    return commands


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking work (SQLite, git, files) in the thread pool, off the event loop."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args, **kwargs)


async def read_form(request: Any) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (last value wins); else empty."""
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _redacted(request: Any, message: str) -> str:
    """Messages echo user and git text: never let a secret through a flash or JSON answer."""
    from ..core.redact import redact

    return redact(message, extra_secrets=dash_of(request).secrets)


def _wants_json(request: Any, guard: Guard) -> bool:
    return "application/json" in (request.headers.get("accept") or "") or guard.by_header(request.headers)


def _next_url(form: Any, fallback: str) -> str:
    target = str(form.get("next") or fallback) if form is not None else fallback
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else fallback


def _done(request: Any, form: Any, message: str, data: dict[str, Any], fallback: str = "/") -> Any:
    from starlette.responses import JSONResponse, RedirectResponse

    message = _redacted(request, message)
    if _wants_json(request, dash_of(request).guard):
        return JSONResponse({"ok": True, "message": message, **data})
    response = RedirectResponse(_next_url(form, fallback), status_code=303)
    response.set_cookie(FLASH_COOKIE, quote(f"ok:{message}"[:400]), httponly=True, samesite="strict", path="/")
    return response


def _failed(request: Any, form: Any, error: Exception, fallback: str = "/") -> Any:
    from starlette.responses import JSONResponse, RedirectResponse

    message = _redacted(request, str(error))
    status = 400
    if isinstance(error, ConfigError) and error.field in ("escalation", "pattern"):
        status = 404  # an unknown id
    elif "already" in message:
        status = 409  # decided by someone else meanwhile
    if _wants_json(request, dash_of(request).guard):
        return JSONResponse({"ok": False, "error": message}, status_code=status)
    response = RedirectResponse(_next_url(form, fallback), status_code=303)
    response.set_cookie(FLASH_COOKIE, quote(f"error:{message}"[:400]), httponly=True, samesite="strict", path="/")
    return response


async def _authorized_form(request: Any) -> tuple[Any, Any]:
    """The POSTed form, or a 403 response when the request may not mutate anything."""
    from starlette.responses import JSONResponse, PlainTextResponse

    form = await read_form(request)
    refused = dash_of(request).guard.refuse_mutation(request, form)
    if refused is None:
        return form, None
    if "application/json" in (request.headers.get("accept") or ""):
        return form, JSONResponse({"ok": False, "error": refused}, status_code=403)
    return form, PlainTextResponse(refused, status_code=403)


def _mutation(back: Callable[[Any], str] = lambda _request: "/") -> Callable[..., Any]:
    """A POST handler's frame: refuse an unauthorized request (403), hand the body the form and
    the ``Dashboard``, and answer any ``LoopError`` it raises with ``_failed`` (back to ``back``)."""

    def deco(body: Callable[[Any, Any, Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        @functools.wraps(body)
        async def handler(request: Any) -> Any:
            form, refused = await _authorized_form(request)
            if refused is not None:
                return refused
            try:
                return await body(request, form, dash_of(request))
            except LoopError as e:
                return _failed(request, form, e, back(request))

        return handler

    return deco


def _escalation_page(request: Any) -> str:
    return f"/escalations/{quote(request.path_params['esc_id'])}"


def _loop_page(request: Any) -> str:
    return f"/loops/{quote(request.path_params['pattern'])}"


@_mutation()
async def kill_action(request: Any, form: Any, d: Any) -> Any:
    pattern = str(form.get("pattern") or "") or None
    name = await call(actions.kill, d.project, pattern, reason=str(form.get("reason") or "from the dashboard"))
    scope = "all loops" if pattern is None else pattern
    message = f"Kill switch set: {name} — {scope} paused; running ticks stop within 5 seconds."
    # a project on Temporal: its schedules pause and its running ticks are signalled
    note = await call(_on_temporal().kill_switch_on_temporal, d.project, pattern, "from the dashboard", engaged=True)
    return _done(request, form, message + (f" {note}" if note else ""), {"file": name, "scope": pattern or "all"})


@_mutation()
async def resume_action(request: Any, form: Any, d: Any) -> Any:
    pattern = str(form.get("pattern") or "") or None
    cleared, remaining = await call(actions.resume, d.project, pattern)
    message = f"Cleared: {', '.join(cleared)}." if cleared else "No kill-switch file to clear."
    note = await call(_on_temporal().kill_switch_on_temporal, d.project, pattern, "", engaged=False)
    if note:
        message += f" {note}"
    if remaining:
        message += " Still paused by " + "; ".join(remaining)
    return _done(request, form, message, {"cleared": cleared, "remaining": remaining})


@_mutation(_escalation_page)
async def approve_action(request: Any, form: Any, d: Any) -> Any:
    esc_id = request.path_params["esc_id"]
    merge = str(form.get("merge") or "").lower() in ("on", "true", "1", "yes")
    back = _escalation_page(request)
    # on Temporal: the approve signal to the waiting tick (None: not there, decide it here)
    sent = await call(_on_temporal().decide_on_temporal, d.project, esc_id, "approved", merge=merge)
    if sent is not None:
        return _done(request, form, f"Approved {esc_id} on Temporal.", {"result": sent}, back)
    store = await call(d.store)
    result = await call(actions.approve, d.project, esc_id, merge=merge, store=store)
    where = f" on {result['branch']}" if result.get("branch") else ""
    return _done(request, form, f"Approved {esc_id}: committed{where}" + (" and merged" if merge else "") + ".",
                 {"result": result}, back)


@_mutation(_escalation_page)
async def reject_action(request: Any, form: Any, d: Any) -> Any:
    esc_id = request.path_params["esc_id"]
    reason = " ".join(str(form.get("reason") or "").split())
    back = _escalation_page(request)
    if not reason:
        raise ConfigError("reject", "reason", "", message="a reason is required to reject")
    sent = await call(_on_temporal().decide_on_temporal, d.project, esc_id, "rejected", reason=reason[:500])
    if sent is not None:
        return _done(request, form, f"Rejected {esc_id} on Temporal: {reason[:200]}", {"result": sent}, back)
    store = await call(d.store)
    result = await call(actions.reject, d.project, esc_id, reason=reason[:500], store=store)
    return _done(request, form, f"Rejected {esc_id}: {reason[:200]}", {"result": result}, back)


@_mutation(_loop_page)
async def topup_action(request: Any, form: Any, d: Any) -> Any:
    pattern = request.path_params["pattern"]
    try:
        tokens = int(str(form.get("tokens") or "").replace(",", "").replace("_", "").strip())
    except ValueError:
        raise ConfigError("topup", "tokens", form.get("tokens")) from None
    store = await call(d.store)
    result = await call(actions.topup, d.project, pattern, tokens,
                        reason=str(form.get("reason") or "top-up from the dashboard")[:200], store=store)
    return _done(request, form, f"Top-up: +{tokens:,} tokens for {pattern} today ({result['day']}).",
                 {"result": result}, _loop_page(request))
