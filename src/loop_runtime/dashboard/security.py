"""Who may change a project through the dashboard: the start token, its cookie, CSRF and origins.

Threat model. The dashboard can stop loops and commit held changes, so a mutating
request must come from the person who started it:

* **The token.** A random token is printed once at start (``...?token=``). Opening
  that URL trades it for an ``HttpOnly``, ``SameSite=Strict`` cookie and redirects to
  the same page without it (so it stays out of history and ``Referer``). Scripts send
  it in ``X-Loop-Token`` or ``Authorization: Bearer`` instead.
* **CSRF.** A cookie travels with any request the browser makes, so forms also carry a
  CSRF value derived from the token (HMAC); it is embedded only in pages served to an
  authenticated browser. A request authenticated by *header* needs none: another
  site cannot set custom headers without a CORS preflight, which we never grant.
* **Origins.** A cross-site ``Origin`` / ``Sec-Fetch-Site`` on a mutating request is
  refused outright; the app also pins the ``Host`` header (DNS rebinding) when bound
  to loopback.
* **Binding.** Loopback by default; another address needs an explicit token, and then
  every page (not just mutations) requires it.

Everything here is plain functions over a Starlette ``Request``; nothing is global.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..errors import ConfigError

__all__ = [
    "CSRF_FIELD",
    "MIN_TOKEN_LEN",
    "TOKEN_COOKIE",
    "TOKEN_HEADER",
    "Guard",
    "SecurityMiddleware",
    "is_loopback",
    "loopback_hosts",
    "new_token",
    "resolve_token",
]

TOKEN_COOKIE = "loop_runtime_token"
TOKEN_HEADER = "x-loop-token"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MIN_TOKEN_LEN = 8

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

# Content-Security-Policy: every asset is ours, nothing inline, no frames, forms post home only.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                                 b"base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # same-origin, not no-referrer: with no-referrer Chromium sends ``Origin: null`` on form posts
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def loopback_hosts() -> list[str]:
    """Host header values a loopback-bound dashboard answers to (anything else: DNS rebinding)."""
    return ["127.0.0.1", "localhost", "::1", "[::1]"]


def resolve_token(host: str, token: str | None, configured: str | None = None,
                  configured_source: str = "loop-runtime.toml") -> str:
    """The token to require: given > configured > random. A non-loopback bind needs one given.

    Raises ``ConfigError`` for a non-loopback host without an explicit token, or a
    token too short to be a secret (the value itself is never echoed).
    """
    explicit = token if token is not None else configured
    if explicit is None:
        if not is_loopback(host):
            raise ConfigError("--host", "host", host, message=(
                f"refusing to serve the dashboard on non-loopback host {host!r} without a token: "
                "pass --token (or set LOOP_RUNTIME_DASHBOARD_TOKEN) together with --host"))
        return new_token()
    if len(explicit.strip()) < MIN_TOKEN_LEN or explicit != explicit.strip():
        source = "--token" if token is not None else configured_source
        raise ConfigError(source, "token", "(hidden)", message=(
            f"dashboard token too short or padded with spaces: use at least {MIN_TOKEN_LEN} characters"))
    return explicit


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode())


@dataclass(frozen=True)
class Guard:
    """Checks requests against one token. ``public_reads``: GET pages without the token."""

    token: str
    public_reads: bool = True

    @property
    def csrf(self) -> str:
        """The CSRF value for forms: derived from the token, useless without the cookie."""
        return hmac.new(self.token.encode(), b"loop-runtime dashboard csrf v1", hashlib.sha256).hexdigest()

    def header_token(self, headers: Any) -> str | None:
        value = headers.get(TOKEN_HEADER)
        if value:
            return str(value)
        auth = str(headers.get("authorization") or "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def by_header(self, headers: Any) -> bool:
        return _same(self.header_token(headers), self.token)

    def by_cookie(self, cookies: Any) -> bool:
        return _same(cookies.get(TOKEN_COOKIE), self.token)

    def authenticated(self, request: Any) -> bool:
        return self.by_header(request.headers) or self.by_cookie(request.cookies)

    def refuse_mutation(self, request: Any, form: Any) -> str | None:
        """Why a mutating request must be refused, or None when it may proceed."""
        if not origin_ok(request):
            return "cross-site request refused"
        if self.by_header(request.headers):
            return None
        if not self.by_cookie(request.cookies):
            return "a token is required: open the dashboard URL printed at start (…/?token=…)"
        sent = request.headers.get(CSRF_HEADER) or (form.get(CSRF_FIELD) if form is not None else None)
        if not _same(str(sent) if sent is not None else None, self.csrf):
            return "CSRF check failed: reload the page and try again"
        return None


def origin_ok(request: Any) -> bool:
    """A browser's ``Sec-Fetch-Site`` (or, from older browsers, ``Origin``) must say same-origin.

    ``Sec-Fetch-Site`` is set by the browser and cannot be forged by a page, so when
    present it decides alone; ``none`` is a user-initiated navigation.
    """
    site = (request.headers.get("sec-fetch-site") or "").lower()
    if site:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if not origin:
        return True  # same-origin GET-form posts from old browsers, curl, scripts
    if origin == "null":
        return False  # sandboxed frames, data: URLs
    host = request.headers.get("host") or ""
    return urlsplit(origin).netloc.lower() == host.lower()


class SecurityMiddleware:
    """Pure ASGI: trades ``?token=`` for the cookie, gates private reads, adds security headers.

    Pure ASGI rather than ``BaseHTTPMiddleware`` so the SSE stream is never buffered.
    """

    def __init__(self, app: ASGIApp, *, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        request = Request(scope)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given and request.method in ("GET", "HEAD"):
            await self._exchange(request, given[-1], query, scope, receive, send)
            return
        if not self.guard.public_reads and not scope["path"].startswith("/static/") \
                and not self.guard.authenticated(request):
            await _plain(401, "A token is required: open the dashboard URL printed at start (…/?token=…).")(
                scope, receive, _with_headers(send))
            return
        await self.app(scope, receive, _with_headers(send))

    async def _exchange(self, request: Any, given: str, query: list[tuple[str, str]], scope: Scope,
                        receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
        from starlette.responses import RedirectResponse

        if not _same(given, self.guard.token):
            await _plain(403, "Invalid token: use the URL printed when the dashboard started.")(
                scope, receive, _with_headers(send))
            return
        rest = urlencode([(k, v) for k, v in query if k != "token"])
        target = scope["path"] + (f"?{rest}" if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(TOKEN_COOKIE, self.guard.token, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        await response(scope, receive, _with_headers(send))


def _plain(status: int, text: str) -> Any:
    from starlette.responses import PlainTextResponse

    return PlainTextResponse(text, status_code=status)


def _with_headers(send: Callable[[Message], Awaitable[None]]) -> Callable[[Message], Awaitable[None]]:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {k.lower() for k, _ in headers}
            headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
