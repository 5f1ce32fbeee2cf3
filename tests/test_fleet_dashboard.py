"""The fleet dashboard's actions: kill/resume, approve/reject and top-ups at loop, repository and portfolio
level, each routed to the repository its URL names, under the single-project dashboard's token, CSRF and
origin rules (its own handlers, mounted per repository). Real repositories, real escalations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from loop_runtime.adapters.fleet import load_fleet
from tests.support.gitrepo import git
from tests.test_dashboard_app import (
    BASE,
    NEW,
    PATTERN,
    SECRET,
    TOKEN,
    csrf,
    escalated_project,
    make_project,
)

starlette = pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from loop_runtime.dashboard.fleet import create_fleet_app  # noqa: E402


def fleet(tmp: Path, *, escalated: bool = False) -> tuple[Path, str | None]:
    """api and ops (plain), web (with an open escalation when ``escalated``); a portfolio of 50,000."""
    esc = None
    make_project(tmp / "api", env_secret=None)
    if escalated:
        _, esc = escalated_project(tmp / "web")
    else:
        make_project(tmp / "web")
    make_project(tmp / "ops", env_secret=None)
    (tmp / "ops" / "loop-runtime.toml").write_text(
        (tmp / "ops" / "loop-runtime.toml").read_text().replace("test_command", "global_daily_cap = 100\ntest_command"))
    (tmp / "fleet").mkdir()
    f = tmp / "fleet" / "loop-fleet.toml"
    f.write_text("portfolio_daily_cap = 50000\n" + "".join(f'[[repos]]\npath = "../{n}"\n' for n in ("api", "web", "ops")))
    return f, esc


def client(f: Path) -> TestClient:
    return TestClient(create_fleet_app(load_fleet(f), token=TOKEN), base_url=BASE, follow_redirects=False)


def login(c: TestClient) -> None:
    assert c.get(f"/?token={TOKEN}").status_code == 303


def test_actions_are_refused_without_token_csrf_or_same_origin(tmp_path: Path) -> None:
    f, _ = fleet(tmp_path)
    routes = ["/repos/web/kill", "/repos/web/resume", "/repos/web/topup", f"/repos/web/loops/{PATTERN}/topup",
              "/repos/web/escalations/esc-1/approve", "/repos/web/escalations/esc-1/reject", "/portfolio/topup"]
    with client(f) as c:
        page = c.get("/").text
        assert 'name="csrf_token"' in page and csrf() not in page  # read-only view: forms disabled, no CSRF
        for route in routes:
            assert c.post(route, data={"tokens": "5", "reason": "x"}).status_code == 403, route  # no token
        login(c)
        assert csrf() in c.get("/").text
        for route in routes:
            assert c.post(route, data={"tokens": "5", "reason": "x"}).status_code == 403, route  # cookie, no CSRF
            r = c.post(route, data={"csrf_token": csrf(), "tokens": "5", "reason": "x"},
                       headers={"sec-fetch-site": "cross-site"})
            assert r.status_code == 403, route  # another site's form, even with cookie and CSRF
        assert c.post("/repos/nope/kill", data={"csrf_token": csrf()}).status_code == 404  # not a fleet repository
        assert c.post("/repos/../api/kill", data={"csrf_token": csrf()}).status_code == 404
    assert not any((tmp_path / n / "KILL").exists() for n in ("api", "web", "ops"))


def test_kill_and_resume_reach_only_the_repository_in_the_url(tmp_path: Path) -> None:
    f, _ = fleet(tmp_path)
    with client(f) as c:
        login(c)
        r = c.post("/repos/web/kill", data={"csrf_token": csrf(), "pattern": PATTERN, "next": "/#repo-web"})
        assert r.status_code == 303 and r.headers["location"] == "/#repo-web"
        page = c.get("/").text
        assert "Kill switch set" in page  # the flash, once
        assert "Kill switch set" not in c.get("/").text
        doc = c.get("/api/fleet").json()
        engaged = {(repo["name"], lp["pattern"]): lp["killSwitch"]["engaged"] for repo in doc["repos"]
                   for lp in repo["loops"]}
        assert engaged == {("api", PATTERN): False, ("web", PATTERN): True, ("ops", PATTERN): False}
        assert c.post("/repos/web/resume", data={"csrf_token": csrf(), "pattern": PATTERN}).status_code == 303
        assert not any(lp["killSwitch"]["engaged"] for repo in c.get("/api/fleet").json()["repos"]
                       for lp in repo["loops"])
        j = c.post("/repos/api/kill", headers={"x-loop-token": TOKEN, "accept": "application/json"})
        assert j.status_code == 200 and j.json()["scope"] == "all"  # a whole repository, by a script
        name = j.json()["file"]
    assert [n for n in ("api", "web", "ops") if (tmp_path / n / name).exists()] == ["api"]


def test_top_ups_at_loop_repository_and_portfolio_level(tmp_path: Path) -> None:
    f, _ = fleet(tmp_path)
    with client(f) as c:
        login(c)
        loop = c.post(f"/repos/api/loops/{PATTERN}/topup", data={"csrf_token": csrf(), "tokens": "1,500"},
                      headers={"accept": "application/json"})
        assert loop.status_code == 200, loop.text
        repo = c.post("/repos/ops/topup", data={"csrf_token": csrf(), "tokens": "50"},
                      headers={"accept": "application/json"})
        assert repo.status_code == 200 and "repository ops" in repo.json()["message"], repo.text
        none = c.post("/repos/web/topup", data={"csrf_token": csrf(), "tokens": "50"},
                      headers={"accept": "application/json"})
        assert none.status_code == 400 and "global_daily_cap" in none.json()["error"]  # web has no repository cap
        bad = c.post("/portfolio/topup", data={"csrf_token": csrf(), "tokens": "-5"},
                     headers={"accept": "application/json"})
        assert bad.status_code == 400 and "\n" not in bad.json()["error"]
        port = c.post("/portfolio/topup", data={"csrf_token": csrf(), "tokens": "6000", "reason": "release"},
                      headers={"accept": "application/json"})
        assert port.status_code == 200, port.text
        doc = c.get("/api/fleet").json()
    assert doc["portfolio"]["cap"] == 56_000
    api_loop = next(lp for r in doc["repos"] if r["name"] == "api" for lp in r["loops"])
    assert api_loop["budget"]["topups"] == 1500
    with sqlite3.connect(tmp_path / "ops" / ".loop-runtime" / "runtime.db") as con:
        assert con.execute("select sum(tokens) from topups where pattern='*'").fetchone()[0] == 50


def test_approve_and_reject_are_routed_to_the_repository_holding_the_escalation(tmp_path: Path) -> None:
    f, esc = fleet(tmp_path, escalated=True)
    assert esc is not None
    with client(f) as c:
        login(c)
        page = c.get("/").text
        assert f'data-escalation="{esc}"' in page and f'action="/repos/web/escalations/{esc}/approve"' in page
        assert SECRET not in page and "<img src=x" not in page  # agent text escaped, secrets redacted
        wrong = c.post(f"/repos/api/escalations/{esc}/approve", data={"csrf_token": csrf()},
                       headers={"accept": "application/json"})
        assert wrong.status_code == 404  # api's store has no such escalation: nothing is approved
        r = c.post(f"/repos/web/escalations/{esc}/approve", data={"csrf_token": csrf(), "next": "/#repo-web"})
        assert r.status_code == 303
        assert f"Approved {esc}: committed on loop/" in c.get("/").text
        assert f'data-escalation="{esc}"' not in c.get("/").text
    branch = git(tmp_path / "web", "for-each-ref", "refs/heads/loop/", "--format=%(refname:short)").split()[0]
    assert git(tmp_path / "web", "show", f"{branch}:src/session.ts") + "\n" == NEW
