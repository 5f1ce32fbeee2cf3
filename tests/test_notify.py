"""Notifications through real apprise to a local HTTP endpoint: short, redacted, never fatal."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.adapters.notify import BODY_MAX, TITLE_MAX, AppriseNotifier, NullNotifier, RecordingNotifier
from loop_runtime.ports import Notification, Notifier
from datetime import UTC

SECRET = "sk-ant-api03-" + "Q" * 40
GH_TOKEN = "ghp_" + "a1B2c3D4e5" * 4


class Endpoint:
    """A localhost HTTP server in a thread that records every JSON POST it receives."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                endpoint.paths.append(self.path)
                endpoint.received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def note(**kw: Any) -> Notification:
    values: dict[str, Any] = {"kind": "escalation", "title": "Daily Triage: escalation esc-1a2b3c4d",
                              "body": "item #12 touches src/auth.py; approval needed", "pattern": "daily-triage"}
    values.update(kw)
    return Notification(**values)


def test_all_notifiers_satisfy_the_port() -> None:
    """AppriseNotifier, NullNotifier and RecordingNotifier implement ports.Notifier."""
    for n in (AppriseNotifier([]), NullNotifier(), RecordingNotifier()):
        assert isinstance(n, Notifier)


def test_a_notification_reaches_a_json_endpoint(endpoint: Endpoint) -> None:
    """An escalation is POSTed with its title, body and a warning type."""
    AppriseNotifier([endpoint.url]).notify(note())
    [msg] = endpoint.received
    assert endpoint.paths == ["/hook"]
    assert msg["title"] == "Daily Triage: escalation esc-1a2b3c4d"
    assert msg["message"] == "item #12 touches src/auth.py; approval needed"
    assert msg["type"] == "warning"


def test_messages_link_to_the_dashboard_without_its_token(endpoint: Endpoint) -> None:
    """The dashboard link is appended (joined with the note's path), minus any query string."""
    n = AppriseNotifier([endpoint.url], dashboard_url="http://127.0.0.1:8765/?token=s3cr3t-dash-token")
    n.notify(note(url="/escalations/esc-1a2b3c4d"))
    n.notify(note(kind="budget-80", title="Daily Triage: 80% of budget"))
    first, second = (m["message"] for m in endpoint.received)
    assert first.endswith("\nhttp://127.0.0.1:8765/escalations/esc-1a2b3c4d")
    assert second.endswith("\nhttp://127.0.0.1:8765/")
    assert "s3cr3t" not in json.dumps(endpoint.received)


def test_secrets_never_leave_in_a_message(endpoint: Endpoint) -> None:
    """API keys, tokens and the notifier URL's own credentials are redacted from title and body."""
    url = endpoint.url.replace("json://", "json://bot:hunter2hunter2@")
    n = AppriseNotifier([url])
    n.notify(note(kind="daemon-error", title=f"key {SECRET} leaked",
                  body=f"git push failed: https://x:{GH_TOKEN}@github.com/o/r password=hunter2hunter2"))
    text = json.dumps(endpoint.received)
    for secret in (SECRET, GH_TOKEN, "hunter2hunter2"):
        assert secret not in text
    assert "[REDACTED]" in endpoint.received[0]["message"]
    assert endpoint.received[0]["type"] == "failure"


def test_messages_are_short(endpoint: Endpoint) -> None:
    """Title ≤ 100 chars on one line, body ≤ 300 chars including the dashboard link."""
    n = AppriseNotifier([endpoint.url], dashboard_url="http://localhost:8765/")
    n.notify(note(title="T\n" * 200, body="B" * 5000, kind="daily-summary"))
    [msg] = endpoint.received
    assert len(msg["title"]) <= TITLE_MAX and "\n" not in msg["title"]
    assert len(msg["message"]) <= BODY_MAX and msg["message"].endswith("http://localhost:8765/")
    assert msg["type"] == "info"


def test_an_unreachable_notifier_is_logged_and_swallowed() -> None:
    """A refused connection never raises; it is logged without the URL's secrets."""
    logged: list[str] = []
    url = f"json://user:topsecretpass@127.0.0.1:{closed_port()}/hook?cto=1&rto=1"
    AppriseNotifier([url], log=logged.append).notify(note(kind="kill"))
    assert len(logged) == 1 and "'kill'" in logged[0]
    assert "topsecretpass" not in logged[0]


def test_a_rejected_url_is_logged_and_a_good_one_still_delivers(endpoint: Endpoint) -> None:
    """An unknown scheme is logged; the valid URL beside it still gets the message."""
    logged: list[str] = []
    n = AppriseNotifier(["nosuchservice://tok3n-tok3n-tok3n", endpoint.url], log=logged.append)
    n.notify(note())
    n.notify(note())
    assert len(endpoint.received) == 2
    assert len(logged) == 1 and "rejected" in logged[0] and "tok3n" not in logged[0]


def test_an_http_error_response_is_logged(endpoint: Endpoint) -> None:
    """A 500 from the endpoint counts as a failed send: logged, not raised."""
    failing = Endpoint(status=500)
    try:
        logged: list[str] = []
        AppriseNotifier([failing.url], log=logged.append).notify(note())
        assert len(failing.received) == 1 and len(logged) == 1
    finally:
        failing.close()


def test_an_exception_inside_apprise_is_swallowed(monkeypatch: pytest.MonkeyPatch, endpoint: Endpoint) -> None:
    """Even an exception raised by apprise itself is logged and never escapes notify()."""
    logged: list[str] = []
    n = AppriseNotifier([endpoint.url], log=logged.append)

    class Exploding:
        def notify(self, **kw: object) -> bool:
            raise OSError(f"boom with {SECRET}")

    monkeypatch.setattr(n, "_client", lambda: Exploding())
    n.notify(note())
    assert len(logged) == 1 and "OSError" in logged[0] and SECRET not in logged[0]


def test_no_urls_means_no_work() -> None:
    """Without URLs nothing is imported or sent; NullNotifier and RecordingNotifier behave."""
    AppriseNotifier([]).notify(note())
    NullNotifier().notify(note())
    rec = RecordingNotifier()
    rec.notify(note())
    assert rec.notes == [note()]


# Invariant: whatever title/body/url a notification carries, the formatted message stays within the
# length limits, has a one-line title, and never contains a planted secret.
@settings(max_examples=60, deadline=None)
@given(title=st.text(max_size=400), body=st.text(max_size=2000), url=st.none() | st.text(max_size=50),
       where=st.integers(0, 2000))
def test_formatting_is_short_and_secret_free(title: str, body: str, url: str | None, where: int) -> None:
    """format() output respects the limits and drops planted secrets."""
    n = AppriseNotifier(["json://127.0.0.1:9/"], dashboard_url="http://127.0.0.1:8765/")
    planted = body[:where] + f" {SECRET} " + body[where:]
    t, b = n.format(Notification("escalation", title + f" {GH_TOKEN}", planted, url=url))
    assert len(t) <= TITLE_MAX and "\n" not in t
    assert len(b) <= BODY_MAX
    assert SECRET not in b and GH_TOKEN not in t
    assert SECRET[:24] not in b


def test_daily_summary_counts_ticks_tokens_and_escalations(tmp_path: Any, endpoint: Endpoint) -> None:
    """The daily summary lists each loop's ticks and settled tokens and the escalations waiting."""
    from datetime import date, datetime

    from loop_runtime.adapters.notify import daily_summary
    from loop_runtime.adapters.store.sqlite import RunStore

    day, at = date(2026, 3, 10), datetime(2026, 3, 10, 9, tzinfo=UTC)
    with RunStore.open(tmp_path) as store:
        assert daily_summary(store, day, ["a"]).body == "no ticks"
        for n in range(2):
            store.begin_tick(tick_id=f"t{n}", run_id=f"r{n}", pattern="a", level="L1", backend="mock",
                             started_at=at, owner="me")
        r = store.reserve(pattern="a", day=day, amount=1500, cap=10_000, tick_id="t0", now=at)
        store.settle(r.id, 1234, at)
        store.add_escalation(pattern="a", tick_id="t1", run_id="r1", item_id="i", title="x", diff="", context={},
                             created_at=at)
        summary = daily_summary(store, day, ["a", "idle"])
    assert summary.kind == "daily-summary"
    assert summary.body == "a 2 ticks, 1,234 tokens · 1 escalation waiting for approval"
    AppriseNotifier([endpoint.url], dashboard_url="http://127.0.0.1:8765").notify(summary)
    assert endpoint.received[0]["message"].endswith("\nhttp://127.0.0.1:8765/escalations")
