"""The fleet dashboard in a real browser (Playwright + Debian's chromium) against the real uvicorn server of
``start --fleet --dashboard``: the portfolio top-up, a loop's kill and resume, and an escalation's approval,
each clicked on the fleet page and landing in the right repository. Screenshots at desktop and phone width
(the phone view must not scroll sideways); nothing external is requested."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from loop_runtime.adapters.fleet import load_fleet
from tests.support.gitrepo import git
from tests.test_dashboard_app import NEW, PATTERN, TOKEN
from tests.test_dashboard_browser import ARGS, CHROMIUM, SHOTS, WAIT_MS, WIDE, _need_browser, serving, snap
from tests.test_fleet_dashboard import fleet

pytestmark = pytest.mark.browser


@contextmanager
def fleet_dashboard(f: Path) -> Iterator[str]:
    from loop_runtime.dashboard.fleet import make_fleet_server

    server, _ = make_fleet_server(load_fleet(f), host="127.0.0.1", port=0, token=TOKEN)
    with serving(server, "fleet dashboard server") as base:
        yield base


def test_browser_fleet_page_tops_up_kills_resumes_and_approves_in_the_right_repository(tmp_path: Path) -> None:
    sync_playwright = _need_browser()
    from playwright.sync_api import expect

    f, esc = fleet(tmp_path, escalated=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with fleet_dashboard(f) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport=WIDE)
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            def local_only(route: Any) -> None:
                if route.request.url.startswith(base):
                    route.continue_()
                else:
                    problems.append(f"external request: {route.request.url}")
                    route.abort()

            page.route("**/*", local_only)
            page.goto(f"{base}/?token={TOKEN}")
            expect(page.locator("#portfolio")).to_contain_text("of 50,000", timeout=WAIT_MS)
            snap(page, SHOTS, "fleet-1-overview")

            page.locator("#portfolio-topup input[name=tokens]").fill("5000")
            page.locator("#portfolio-topup button").click()
            expect(page.locator(".flash")).to_contain_text("the portfolio", timeout=WAIT_MS)
            expect(page.locator("#portfolio")).to_contain_text("of 55,000")

            web = page.locator("#repo-web")
            web.locator(f'tr[data-pattern="{PATTERN}"] [data-action="kill"]').click()
            expect(page.locator(".flash")).to_contain_text("Kill switch set", timeout=WAIT_MS)
            expect(page.locator(f'#repo-web tr[data-pattern="{PATTERN}"]')).to_contain_text("ON")
            expect(page.locator(f'#repo-api tr[data-pattern="{PATTERN}"]')).to_contain_text("off")
            snap(page, SHOTS, "fleet-2-killed")
            page.locator(f'#repo-web tr[data-pattern="{PATTERN}"] [data-action="resume"]').click()
            expect(page.locator(".flash")).to_contain_text("Cleared", timeout=WAIT_MS)

            page.locator(f'#repo-web [data-escalation="{esc}"] [data-action="approve"]').click()
            expect(page.locator(".flash")).to_contain_text(f"Approved {esc}", timeout=WAIT_MS)
            expect(page.locator(f'[data-escalation="{esc}"]')).to_have_count(0)
            snap(page, SHOTS, "fleet-3-approved")
            assert not problems, problems
        finally:
            browser.close()
    branch = git(tmp_path / "web", "for-each-ref", "refs/heads/loop/", "--format=%(refname:short)").split()[0]
    assert git(tmp_path / "web", "show", f"{branch}:src/session.ts") + "\n" == NEW
