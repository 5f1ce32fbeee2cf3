"""Notifiers: tell a human when a loop needs one, through apprise URLs from the config.

Kinds sent by the runtime (``Notification.kind``): ``escalation`` (a change is held
for approval), ``budget-80`` / ``budget-100``, ``kill`` (halted by the kill switch),
``daemon-error`` and the optional ``daily-summary``. Any apprise URL works: Slack,
Discord, email, ntfy, or ``json://host/path`` for a plain webhook.

Rules every message follows, and why:

* **Short.** Title ≤ 100 and body ≤ 300 characters, single-line title: a phone
  notification, not a report; the dashboard link carries the detail.
* **No secrets.** Title and body are redacted (``core.redact.redact`` when present,
  else a local fallback) before anything leaves the process — including literal
  credentials found in the notifier URLs themselves, and the query string (where a
  dashboard token would sit) of the dashboard link.
* **Never fatal.** A notifier is a side channel: a bad URL, a refused connection or
  an exception inside apprise is logged and swallowed, so it can never fail a tick.

apprise is imported lazily (it is an optional extra and slow to import).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from ..core.sanitize import clean
from ..core.schedule import utc_day
from ..ports import Clock, Notification, Notifier

if TYPE_CHECKING:
    from ..ports.store import EventStore, Store

__all__ = ["AppriseNotifier", "NullNotifier", "OncePerDayNotifier", "RecordingNotifier", "daily_summary",
           "redact_text"]

TITLE_MAX = 100
BODY_MAX = 300

_log = logging.getLogger("loop_runtime.notify")

def redact_text(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """Notifications never carry secrets: the runtime's one redactor, plus the URL's own secrets."""
    from ..core.redact import redact

    return redact(text, extra_secrets=tuple(extra_secrets))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _url_secrets(url: str) -> list[str]:
    """Credentials embedded in a notifier URL (password, long path/query tokens)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password or "", parts.username or ""]
    found += re.split(r"[/?&=#]", parts.path + "?" + parts.query)
    return [s for s in found if len(s) >= 8]


def _safe_url(url: str) -> str:
    """What a log line may show of a notifier URL: its scheme only.

    Many services carry the credential in the "host" part (``tgram://<bot token>/…``,
    ``discord://<id>/<token>``), so not even the host is safe to print.
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    return f"{scheme}://…" if scheme.isidentifier() or scheme.replace("+", "").isalnum() else "<URL>"


def _bare(url: str) -> str:
    """A link without query or fragment (where a dashboard token would sit)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


_TYPES = {"escalation": "warning", "budget-80": "warning", "budget-100": "failure", "kill": "failure",
          "daemon-error": "failure", "daily-summary": "info"}


class AppriseNotifier:
    """``ports.Notifier`` over apprise: short, redacted messages; failures are logged only."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        dashboard_url: str | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._urls = tuple(u.strip() for u in urls if u and u.strip())
        self._dashboard_url = _bare(dashboard_url) if dashboard_url else None
        self._log = log or _log.warning
        self._secrets = [s for u in self._urls for s in _url_secrets(u)]
        self._apprise: Any = None
        if self._urls:
            from ..optional import check

            check("apprise")  # configured but not installed: one line at start-up, not a silent log per tick

    def __repr__(self) -> str:
        return f"AppriseNotifier({[_safe_url(u) for u in self._urls]})"

    def format(self, note: Notification) -> tuple[str, str]:
        """The (title, body) that would be sent: redacted, short, with the dashboard link."""
        title = _shorten(clean(redact_text(note.title, self._secrets), 10_000), TITLE_MAX)
        link = self._link(note.url)
        room = BODY_MAX - (len(link) + 1 if link else 0)
        body = _shorten(redact_text(note.body, self._secrets).strip(), max(room, 40))
        return title, (f"{body}\n{link}" if link else body)[:BODY_MAX]

    def _link(self, url: str | None) -> str | None:
        if url and urlsplit(url).scheme in ("http", "https"):
            return _bare(url)
        if self._dashboard_url:
            return _bare(urljoin(self._dashboard_url, url)) if url else self._dashboard_url
        return None

    def notify(self, note: Notification) -> None:
        """Send ``note`` to every URL; never raises."""
        if not self._urls:
            return
        try:
            title, body = self.format(note)
            client = self._client()
            if client is None:
                return
            sent = client.notify(title=title, body=body, notify_type=_TYPES.get(note.kind, "info"))
            if not sent:
                self._log(f"notifier: sending {note.kind!r} failed for at least one of {self!r}")
        except Exception as exc:  # a notifier must never fail a tick
            self._log(f"notifier: {note.kind!r} not sent: {type(exc).__name__}: {redact_text(str(exc), self._secrets)}")

    def _client(self) -> Any:
        """Build the apprise object once; URLs apprise rejects are logged (host only) and skipped."""
        if self._apprise is not None:
            return self._apprise
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # apprise imports imghdr on 3.11+
            from ..optional import require

            apprise = require("apprise")
            client = apprise.Apprise()
            for url in self._urls:
                if not client.add(url):
                    self._log(f"notifier: URL rejected by apprise: {_safe_url(url)}")
        self._apprise = client
        return client


class NullNotifier:
    """Sends nothing: the default when no notifier URL is configured."""

    def notify(self, note: Notification) -> None:
        return None


class RecordingNotifier:
    """Public fake: keeps every notification in ``notes`` for tests to assert on."""

    def __init__(self) -> None:
        self.notes: list[Notification] = []

    def notify(self, note: Notification) -> None:
        self.notes.append(note)


class OncePerDayNotifier:
    """Budget notifications go out once per loop per UTC day, not on every tick past the threshold.

    Every other kind (escalation, kill, daemon error) is a distinct event a human must see. What was
    sent is remembered as a ``notify.<kind>`` event in the store, so every process of the project agrees.
    """

    DAILY = ("budget-80", "budget-100")

    def __init__(self, inner: Notifier, store: EventStore, clock: Clock) -> None:
        self.inner, self.store, self.clock = inner, store, clock

    def notify(self, note: Notification) -> None:
        if note.kind in self.DAILY:
            now = self.clock.now()
            midnight = datetime.combine(utc_day(now), datetime.min.time(), tzinfo=now.tzinfo)
            kind = f"notify.{note.kind}"
            if self.store.count_events(kind, pattern=note.pattern, since=midnight):
                return
            self.store.add_event(kind, {"title": note.title}, now, pattern=note.pattern)
        self.inner.notify(note)


def daily_summary(store: Store, day: date, patterns: Sequence[str]) -> Notification:
    """The optional ``daily-summary`` note: ticks and settled tokens per loop, open escalations.

    Built from the run store only (never from agent output), so it carries no secrets
    by construction; the notifier still redacts and shortens it like any other note.
    """
    parts = []
    for pattern in patterns:
        runs, spent = store.runs_on_day(pattern, day), store.spent(pattern, day)
        if runs or spent:
            parts.append(f"{pattern} {runs} tick{'s' if runs != 1 else ''}, {spent:,} tokens")
    waiting = len(store.list_escalations("open"))
    body = "; ".join(parts) if parts else "no ticks"
    if waiting:
        body += f" · {waiting} escalation{'s' if waiting != 1 else ''} waiting for approval"
    return Notification("daily-summary", f"loop-runtime daily summary {day.isoformat()}", body,
                        url="/escalations" if waiting else None)
