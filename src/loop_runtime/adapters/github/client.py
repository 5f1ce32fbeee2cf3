"""The GitHub REST client the connector uses: githubkit, conditional requests, bounded reads.

Why not githubkit's own HTTP cache: it lives in memory and a tick is a process. The ETag
of every GET (and the body it validated) is kept in ``.loop-runtime/github/etags.json``,
so the next tick sends ``If-None-Match`` and an unchanged repository answers ``304`` —
which GitHub does not count against the rate limit.

Hard rules, whatever a server answers:

* the token is only ever sent to the configured API origin: redirects are not followed,
  and a ``Link: rel=next`` pointing anywhere else (or back to a page already read) ends
  the pagination;
* at most ``max_pages`` pages per query and ``MAX_RESPONSE_BYTES`` per response;
* 401/403 become one line naming where the token came from and the permission the call
  needs (GitHub's ``X-Accepted-GitHub-Permissions`` header when it sends one);
* 429, rate-limited 403 and 5xx are retried with exponential backoff, but never past the
  tick's deadline; network failures likewise, then ``GithubUnreachable``;
* the token (and any other secret of the run) is blanked out of every cached body.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from ...errors import GithubError, GithubRefused
from .config import GithubSettings

CACHE_FILE = Path(".loop-runtime") / "github" / "etags.json"
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_CACHE_ENTRIES = 400
PER_PAGE = 100
USER_AGENT = "loop-runtime"
API_VERSION = "2022-11-28"  # the REST version every GitHub Enterprise Server still serves


class GithubUnreachable(GithubError):
    """The API could not be reached (network, 5xx, rate limit) before the deadline."""


class GithubAuthError(GithubError):
    """401/403: the token is invalid or lacks a permission (a human must fix the token)."""


@dataclass
class Stats:
    requests: int = 0
    not_modified: int = 0
    retries: int = 0

    @property
    def rate_limit_cost(self) -> int:
        return self.requests - self.not_modified


class EtagCache:
    """``url → {etag, body, next}`` persisted atomically; a damaged file is a cold cache, never an error."""

    def __init__(self, path: Path | None, secrets: Sequence[str] = ()) -> None:
        self.path, self.secrets = path, tuple(s for s in secrets if len(s) >= 4)
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty = False
        if path is not None:
            try:
                data = json.loads(path.read_text("utf-8"))
                entries = data.get("entries") if isinstance(data, dict) and data.get("version") == 1 else None
                if isinstance(entries, dict):
                    self.entries = {k: v for k, v in entries.items() if isinstance(v, dict)
                                    and isinstance(v.get("etag"), str) and isinstance(v.get("body"), str)}
            except (OSError, ValueError, RecursionError):
                self.entries = {}

    def get(self, url: str) -> dict[str, Any] | None:
        return self.entries.get(url)

    def put(self, url: str, etag: str, body: str, next_url: str | None) -> None:
        for s in self.secrets:  # a hostile title holding the token must not land in a file
            body = body.replace(s, "[REDACTED]")
        self.entries.pop(url, None)
        self.entries[url] = {"etag": etag, "body": body, "next": next_url}
        while len(self.entries) > MAX_CACHE_ENTRIES:
            self.entries.pop(next(iter(self.entries)))
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        text = json.dumps({"version": 1, "entries": self.entries}, separators=(",", ":"))
        for s in self.secrets:
            text = text.replace(s, "[REDACTED]")
        tmp.write_text(text, "utf-8")
        os.replace(tmp, self.path)
        self.dirty = False


def parse_link_next(header: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header (RFC 8288, as GitHub writes it)."""
    if not header:
        return None
    for part in header.split(","):
        section = part.split(";")
        if len(section) < 2:
            continue
        url = section[0].strip()
        if not (url.startswith("<") and url.endswith(">")):
            continue
        for param in section[1:]:
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "rel" and "next" in value.strip().strip('"').lower().split():
                return url[1:-1]
    return None


class GithubClient:
    """One tick's connection to the API (use as a context manager)."""

    def __init__(self, settings: GithubSettings, *, cache_path: Path | None = None, deadline_s: float = 120.0,
                 timeout_s: float = 20.0, backoff_s: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 secrets: Sequence[str] = ()) -> None:
        self.settings = settings
        self.base = settings.api_url.rstrip("/")
        self.cache = EtagCache(cache_path, (*settings.secrets, *secrets))
        self.deadline = time.monotonic() + deadline_s
        self.timeout_s, self.backoff_s, self.sleep = timeout_s, backoff_s, sleep
        self.stats = Stats()
        self._gh: Any = None

    # -- lifecycle
    def __enter__(self) -> GithubClient:
        from ...optional import require

        require("hishel", extra="github")  # githubkit 0.16 breaks with hishel 2: say so in one line
        githubkit = require("githubkit", extra="github")
        self._gh = githubkit.GitHub(self.settings.token, base_url=self.base + "/", http_cache=False,
                                    auto_retry=False, follow_redirects=False, timeout=self.timeout_s,
                                    user_agent=USER_AGENT, rest_api_validate_body=True)
        self._gh.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.cache.save()
        finally:
            if self._gh is not None:
                self._gh.__exit__(*exc)
                self._gh = None

    # -- URLs
    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        query = urlencode(sorted((k, str(v)) for k, v in (params or {}).items() if v is not None))
        return f"{self.base}{path}" + (f"?{query}" if query else "")

    def same_origin(self, url: str) -> bool:
        """Only the configured API origin and path prefix get the token (and only over its scheme)."""
        try:
            a, b = urlsplit(url), urlsplit(self.base)
        except ValueError:
            return False
        return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower()) and (
            a.path == b.path or a.path.startswith(b.path.rstrip("/") + "/")) and not a.username

    # -- requests
    def _send(self, method: str, url: str, *, json_body: Any = None, headers: Mapping[str, str] | None = None,
              permission: str = "") -> tuple[int, Mapping[str, str], bytes]:
        """One request with retries; returns ``(status, headers, body)`` for 2xx/304, raises otherwise."""
        from ...optional import require

        exc = require("githubkit.exception", extra="github")
        RateLimitExceeded, RequestFailed = exc.RateLimitExceeded, exc.RequestFailed
        RequestError, RequestTimeout = exc.RequestError, exc.RequestTimeout
        if not self.same_origin(url):
            raise GithubError(f"GitHub: refusing to send the token to {urlsplit(url).netloc or url!r} "
                              f"(not the API origin {self.base})")
        attempt = 0
        hdrs = {"X-GitHub-Api-Version": API_VERSION, **(headers or {})}
        while True:
            attempt += 1
            wait: float | None = None
            why = ""
            try:
                self.stats.requests += 1
                resp = self._gh.request(method, url, json=json_body, headers=hdrs, stream=True)
                return resp.status_code, resp.headers, _read_capped(resp.raw_response)
            except RateLimitExceeded as e:
                wait, why = max(e.retry_after.total_seconds(), self.backoff_s), "rate limited"
                status = e.response.status_code
            except RequestFailed as e:
                status = e.response.status_code
                if status >= 500:
                    why = f"HTTP {status}"
                elif status == 429:
                    why = "HTTP 429"
                else:
                    raise self._refusal(method, url, e.response, permission) from None
            except RequestTimeout:
                why, status = "timed out", 0
            except RequestError as e:
                why, status = f"network error ({type(e.exc).__name__})", 0
            except ValueError:  # githubkit could not read a Retry-After / X-RateLimit-Reset header
                why, status = "rate limited (unreadable Retry-After)", 0
            self.stats.retries += 1
            delay = wait if wait is not None else self.backoff_s * 2 ** (attempt - 1)
            delay = min(delay, 60.0)
            if attempt >= 6 or time.monotonic() + delay > self.deadline:
                raise GithubUnreachable(f"GitHub unreachable: {method} {_path(url)}: {why} "
                                        f"(gave up after {attempt} attempt(s) within the tick's deadline)")
            self.sleep(delay)

    def _refusal(self, method: str, url: str, response: Any, permission: str) -> GithubError:
        status = response.status_code
        message = _message(response)
        source = self.settings.token_source
        if status == 401:
            return GithubAuthError(f"GitHub 401 Unauthorized for {method} {_path(url)}: the token from {source} is "
                               "invalid or expired")
        if status == 403:
            need = response.headers.get("x-accepted-github-permissions") or permission or "access to this resource"
            return GithubAuthError(f"GitHub 403 Forbidden for {method} {_path(url)}: the token from {source} lacks "
                               f"permission {need}" + (f" ({message})" if message else ""))
        if status in (405, 409, 422):
            return GithubRefused(f"GitHub {status} for {method} {_path(url)}: {message or 'refused'}", status)
        return GithubError(f"GitHub {status} for {method} {_path(url)}" + (f": {message}" if message else ""))

    def get(self, path_or_url: str, model: Any, *, params: Mapping[str, Any] | None = None,
            permission: str = "") -> tuple[Any, str | None]:
        """GET one page, conditionally; returns ``(parsed model, next page URL)``."""
        type_validate_json = _validate()
        url = path_or_url if "://" in path_or_url else self.url(path_or_url, params)
        cached = self.cache.get(url)
        headers = {"If-None-Match": cached["etag"]} if cached else {}
        status, resp_headers, body = self._send("GET", url, headers=headers, permission=permission)
        if status == 304 and cached is not None:
            self.stats.not_modified += 1
            text, next_url = cached["body"], cached.get("next")
        elif status == 304:  # a 304 we did not ask for: ask again without a validator
            status, resp_headers, body = self._send("GET", url, permission=permission)
            text, next_url = body.decode("utf-8", "replace"), parse_link_next(resp_headers.get("link"))
        else:
            text, next_url = body.decode("utf-8", "replace"), parse_link_next(resp_headers.get("link"))
        try:
            parsed = type_validate_json(model, text)
        except ValueError as e:
            raise GithubError(f"GitHub answered {_path(url)} with a body that is not a valid {_model_name(model)}: "
                              f"{str(e).splitlines()[0][:200]}") from None
        etag = resp_headers.get("etag")
        if status == 200 and etag:
            self.cache.put(url, etag, text, next_url)
        return parsed, next_url

    def pages(self, path: str, model: Any, *, params: Mapping[str, Any] | None = None, permission: str = "",
              items: Callable[[Any], Sequence[Any]] | None = None, max_pages: int | None = None) -> list[Any]:
        """Every item over at most ``max_pages`` pages, following ``Link: rel=next`` on the same origin only."""
        limit = max_pages or self.settings.max_pages
        out: list[Any] = []
        url: str | None = self.url(path, {"per_page": PER_PAGE, **(params or {})})
        seen: set[str] = set()
        while url is not None and len(seen) < limit:
            if url in seen or not self.same_origin(url):
                break  # a Link loop, or a next page on another host: stop, never send the token there
            seen.add(url)
            page, url = self.get(url, model, permission=permission)
            out.extend(items(page) if items is not None else page)
        return out

    def write(self, method: str, path: str, json_body: Any, model: Any = None, *, permission: str = "") -> Any:
        type_validate_json = _validate()
        status, _, body = self._send(method, self.url(path), json_body=json_body, permission=permission)
        if model is None or not body:
            return None
        try:
            return type_validate_json(model, body.decode("utf-8", "replace"))
        except ValueError as e:
            raise GithubError(f"GitHub answered {method} {path} with an invalid {_model_name(model)}: "
                              f"{str(e).splitlines()[0][:200]}") from None


def _validate() -> Callable[[Any, str], Any]:
    """githubkit's pydantic validation of a JSON body against one of its models."""
    from ...optional import require

    return require("githubkit.compat", extra="github").type_validate_json


def models() -> Any:
    """githubkit's REST models (generated from GitHub's OpenAPI description)."""
    from ...optional import require

    return require("githubkit_schemas.latest.models", extra="github")


def _read_capped(raw: Any) -> bytes:
    length = raw.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
        raw.close()
        raise GithubError(f"GitHub response too large: {int(length):,} bytes (limit {MAX_RESPONSE_BYTES:,})")
    chunks, size = [], 0
    try:
        for chunk in raw.iter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise GithubError(f"GitHub response too large: over {MAX_RESPONSE_BYTES:,} bytes")
            chunks.append(chunk)
    finally:
        raw.close()
    return b"".join(chunks)


def _message(response: Any) -> str:
    try:
        data = json.loads(response.raw_response.content[:20_000])
    except Exception:  # noqa: BLE001 - any unreadable error body is just "no message"
        return ""
    msg = data.get("message") if isinstance(data, dict) else None
    from ...core.sanitize import clean

    return clean(msg, 200) if isinstance(msg, str) else ""


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _model_name(model: Any) -> str:
    return getattr(model, "__name__", None) or str(model).replace("githubkit_schemas.", "")
