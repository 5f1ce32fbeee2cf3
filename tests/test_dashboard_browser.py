"""The dashboard in a real browser (Playwright driving Debian's chromium), against a real server.

One scenario, end to end: a project with an open escalation (a real held diff) and a
loop whose tick is running; the overview receives live updates over SSE; Kill stops
the tick (switch on disk, tick halted within 5 s); the escalation is approved and the
commit is checked in git. Every page is screenshotted in a wide (1400 px) and a phone
(390 px) window into ``test-output/screenshots/`` (git-ignored), and at phone width no
page may scroll sideways (wide tables scroll inside their card). Nothing is downloaded:
the browser is the apt package and every asset the page loads is served by the
dashboard itself.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from loop_runtime.app.runtime import load_project
from tests.support.gitrepo import git
from tests.test_dashboard_app import NEW, PATTERN, TOKEN, escalated_project, run_tick, write_scenario

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 15_000
SHOTS = Path(__file__).resolve().parents[1] / "test-output" / "screenshots"
WIDE = {"width": 1400, "height": 1000}
NARROW = {"width": 390, "height": 844}


def snap(page: Any, shots: Path, name: str) -> None:
    """Full-page screenshots at desktop and phone width; the phone view must not scroll sideways."""
    page.set_viewport_size(NARROW)
    page.wait_for_timeout(400)  # charts redraw on resize
    page.screenshot(path=str(shots / f"{name}-narrow.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    page.set_viewport_size(WIDE)
    page.wait_for_timeout(400)
    page.screenshot(path=str(shots / f"{name}-wide.png"), full_page=True)
    assert overflow <= 1, f"{name}: the page is {overflow}px wider than a phone screen"


def _need_browser() -> Any:
    """The Playwright sync API, or skip (FAIL under CI=true) when it or chromium is missing."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason, sync_playwright = "playwright is not installed", None
    if reason is None and not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run under CI: {reason}")
        pytest.skip(reason)
    return sync_playwright


@contextmanager
def serving(server: Any, what: str = "dashboard server") -> Iterator[str]:
    """A uvicorn ``server`` on a free loopback port, in a thread; yields its base URL, stops it after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(300):
        if server.started:
            started.set()
            break
        started.wait(0.05)
    assert server.started, f"{what} did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@contextmanager
def dashboard(root: Path) -> Iterator[str]:
    """The real uvicorn server from ``make_server`` on a free loopback port, in a thread."""
    from loop_runtime.dashboard.server import make_server

    server, _ = make_server(load_project(root), host="127.0.0.1", port=0, token=TOKEN)
    with serving(server) as base:
        yield base


def test_browser_live_updates_kill_and_approve(tmp_path: Path) -> None:
    """Live phases arrive over SSE; Kill stops the running tick within 5 s; Approve commits the held diff."""
    sync_playwright = _need_browser()
    from playwright.sync_api import expect

    root, esc_id = escalated_project(tmp_path / "repo", title="Tighten the session timeout", env_secret=None)
    slow = write_scenario(tmp_path, title="Slow fix", verdict="APPROVE", implementer={"sleep_s": 30})
    shots = SHOTS
    shots.mkdir(parents=True, exist_ok=True)
    names = ["1-overview-running", "2-overview-killed", "3-loop", "3b-tick-escalated", "3c-tick-halted",
             "4-escalation", "5-escalation-approved", "6-escalations", "7-not-found"]
    files = [shots / f"{n}-{w}.png" for n in names for w in ("wide", "narrow")]
    for old in files:
        old.unlink(missing_ok=True)
    outcome: dict[str, Any] = {}

    def slow_tick() -> None:
        try:
            outcome["result"] = run_tick(root, slow)
        except BaseException as e:  # surfaced by the assertion below
            outcome["error"] = e

    with dashboard(root) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport=WIDE)
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)

            def local_only(route: Any) -> None:
                if route.request.url.startswith(base):
                    route.continue_()
                else:  # the page must work offline: anything external is a failure
                    problems.append(f"external request: {route.request.url}")
                    route.abort()

            page.route("**/*", local_only)

            # 1. the overview, loaded before the tick starts: updates can only arrive live
            page.goto(f"{base}/?token={TOKEN}")
            assert page.url == f"{base}/"
            expect(page.locator("#live")).to_have_text("● live", timeout=WAIT_MS)
            row = page.locator(f'#loops tr[data-pattern="{PATTERN}"]')
            expect(row.locator('[data-field="live"]')).to_have_text("idle")
            tick = threading.Thread(target=slow_tick, daemon=True)
            tick.start()
            expect(row.locator('[data-field="live"] .phase.running')).to_have_text("implementing", timeout=WAIT_MS)
            expect(row.locator(".live-tokens")).to_have_text("1,000 tok", timeout=WAIT_MS)
            expect(page.locator("#activity li").first).to_contain_text(f"{PATTERN} · ", timeout=WAIT_MS)
            expect(page.locator("#stat-running")).to_have_text("1", timeout=WAIT_MS)
            expect(page.locator("#budget-charts .uplot")).to_have_count(2, timeout=WAIT_MS)
            snap(page, shots, "1-overview-running")

            # 2. Kill: the switch on disk, the running tick halted within 5 s
            page.click("#kill-all")
            expect(page.locator(".flash-ok")).to_contain_text("Kill switch set: loop-pause-all")
            assert (root / "loop-pause-all").exists()
            tick.join(5)
            assert not tick.is_alive(), "the running tick did not stop within 5 s of Kill"
            assert "error" not in outcome, outcome.get("error")
            assert outcome["result"].outcome == "halted" and outcome["result"].halt_reason == "kill"
            expect(page.locator("#global-kill")).to_contain_text("KILL SWITCH ON", timeout=WAIT_MS)
            expect(row.locator('[data-field="live"]')).to_have_text("paused", timeout=WAIT_MS)
            snap(page, shots, "2-overview-killed")

            # 3. the loop page: the halted tick and the escalated one in the timeline
            page.click(f'#loops a[href="/loops/{PATTERN}"]')
            timeline = page.locator("#timeline tr.tick")
            expect(timeline).to_have_count(2)
            expect(timeline.first).to_contain_text("halted")
            expect(timeline.nth(1)).to_contain_text("ESCALATE_HUMAN")
            expect(page.locator("#budget-charts .uplot")).to_have_count(2, timeout=WAIT_MS)
            snap(page, shots, "3-loop")

            # 3b. the escalated tick's own page: phases, tokens by role, verdict, tests, held diff
            escalated_href = timeline.nth(1).locator("td:first-child a").get_attribute("href")
            halted_href = timeline.first.locator("td:first-child a").get_attribute("href")
            page.goto(f"{base}{escalated_href}")
            expect(page.locator("#phases li")).not_to_have_count(0)
            expect(page.locator('#roles tr[data-role="implementer"]')).to_contain_text("3,000")
            expect(page.locator("#diff pre.diff .d-add")).to_contain_text("SESSION_TIMEOUT_S = 900")
            snap(page, shots, "3b-tick-escalated")
            page.goto(f"{base}{halted_href}")
            expect(page.locator("#phases")).to_contain_text("halted")
            snap(page, shots, "3c-tick-halted")

            # 4. the escalation: diff rendered, approve → a commit in git
            page.goto(f"{base}/")
            page.click(f'a[href="/escalations/{esc_id}"]')
            expect(page.locator("pre.diff .d-add")).to_contain_text("SESSION_TIMEOUT_S = 900")
            expect(page.locator(".verdict")).to_contain_text("needs a security review")
            snap(page, shots, "4-escalation")
            page.click("#approve")
            expect(page.locator(".flash-ok")).to_contain_text(f"Approved {esc_id}: committed on loop/")
            expect(page.locator("#esc-status")).to_have_text("approved")
            commit = page.locator("#approved-commit").inner_text()
            snap(page, shots, "5-escalation-approved")
            page.goto(f"{base}/escalations")
            snap(page, shots, "6-escalations")
            assert problems == []
            page.goto(f"{base}/ticks/no-such-tick")  # a 404 (the console reports it, as it should)
            expect(page.locator("main")).to_contain_text("no such tick")
            snap(page, shots, "7-not-found")
        finally:
            browser.close()

    branch = git(root, "branch", "--contains", commit, "--format=%(refname:short)").splitlines()
    assert len(branch) == 1 and branch[0].startswith(f"loop/{PATTERN}-")
    assert git(root, "show", f"{commit}:src/session.ts") + "\n" == NEW
    assert "Approved-by:" in git(root, "log", "-1", "--format=%B", commit)
    assert [f.name for f in files if not f.is_file()] == []


def test_browser_stacked_spend_and_markdown_state_file(tmp_path: Path) -> None:
    """Two loops with spend today: one stacked chart of both plus each loop's own; the state file's table renders."""
    sync_playwright = _need_browser()
    from datetime import UTC, datetime, timedelta

    from playwright.sync_api import expect

    from loop_runtime.formats.runlog import RunLogEntry, append_entry
    from loop_runtime.app.runtime import now_utc

    root, _ = escalated_project(tmp_path / "repo", title="Tighten the session timeout", env_secret=None)
    now = now_utc()
    when = max(datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(minutes=1), now - timedelta(minutes=40))
    log = root / "loop-run-log.md"
    entry = RunLogEntry(when.strftime("%Y-%m-%dT%H:%M:%SZ"), "ci-sweeper", 5, 1, 0, 0, 3000, "report-only")
    log.write_text(append_entry(log.read_text(), entry, now=now))
    state = root / "STATE.md"
    state.write_text(state.read_text() + "\n## Owners\n\n| Item | Owner | Due |\n|---|---|--:|\n| EX-3 | ops | 2 |\n\n---\n\n"
                     "See [the runbook](https://example.com/runbook) · <b>raw html stays text</b>\n")
    shots = SHOTS
    shots.mkdir(parents=True, exist_ok=True)
    with dashboard(root) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport=WIDE)
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.goto(f"{base}/?token={TOKEN}")
            expect(page.locator('[data-chart="stacked"] .uplot')).to_have_count(2, timeout=WAIT_MS)
            expect(page.locator('[data-chart="stacked"] h3')).to_contain_text("8,000 tokens today")
            expect(page.locator("#budget-charts .uplot")).to_have_count(6, timeout=WAIT_MS)
            snap(page, shots, "8-overview-two-loops")
            page.goto(f"{base}/loops/{PATTERN}")
            md = page.locator(".markdown")
            expect(md.locator("table td").first).to_have_text("EX-3")
            expect(md.locator("hr")).to_have_count(2)  # the starter's rule and ours
            expect(md.locator('a[href="https://example.com/runbook"]')).to_have_text("the runbook")
            expect(md.locator("b")).to_have_count(0)
            expect(md).to_contain_text("<b>raw html stays text</b>")
            snap(page, shots, "9-loop-markdown")
            assert problems == []
        finally:
            browser.close()
