"""The dashboard through Starlette's test client: pages, JSON, SSE, actions, token/CSRF security.

Projects are real: a temporary git repository, real ticks of the mock backend through
``LoopRunner`` (worktrees, verifier, held diff in the SQLite store), and the buttons
call ``loop_runtime.app.actions`` exactly as the CLI does.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.errors import ConfigError
from loop_runtime.app.runtime import load_project, now_utc
from tests.support.gitrepo import git, make_repo

starlette = pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from loop_runtime.dashboard.app import create_app  # noqa: E402
from loop_runtime.dashboard.security import TOKEN_COOKIE, Guard  # noqa: E402

TOKEN = "test-token-0123456789"
BASE = "http://127.0.0.1"
PATTERN = "daily-triage"
SECRET = "hunter2-Very-Secret-Value-77"
TITLE = f"Tighten <img src=x onerror=alert(1)> timeout {SECRET}"
OLD = "export const SESSION_TIMEOUT_S = 3600;\n"
NEW = "export const SESSION_TIMEOUT_S = 900;\n"


# ---------------------------------------------------------------------------- project helpers


def make_project(root: Path, *, env_secret: str | None = SECRET, level: str = "L2") -> Path:
    """A git repo with one source file, daily-triage at ``level`` and a test command."""
    make_repo(root, {
        "src/session.ts": OLD,
        "loop-runtime.toml": f'test_command = "echo 3 tests passed"\n\n[patterns.{PATTERN}]\nlevel = "{level}"\n',
    })
    if env_secret:
        (root / ".env").write_text(f"DB_PASSWORD={env_secret}\n")
    return root


def write_scenario(folder: Path, *, title: str = TITLE, verdict: str = "ESCALATE_HUMAN",
                   implementer: dict[str, Any] | None = None) -> str:
    doc = {
        "triage": {"decision": "act", "summary": "session handling", "tokens": 1000,
                   "items": [{"id": "EX-3", "title": title, "files": ["src/session.ts"]}]},
        "implementer": [{"files": {"src/session.ts": NEW}, "tokens": 3000, **(implementer or {})}],
        "verifier": [{"verdict": verdict, "reasons": ["touches session handling; needs a security review"],
                      "tokens": 1000}],
    }
    path = folder / f"scenario-{verdict.lower()}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def run_tick(root: Path, scenario: str, pattern: str = PATTERN) -> Any:
    """One real tick with the mock backend (worktree, tests, verifier, store journal)."""
    from loop_runtime.app.runner import LoopRunner, RunOptions

    project = load_project(root)
    runner = LoopRunner(project, project.plan(pattern), RunOptions(scenario=scenario))
    try:
        return asyncio.run(runner.tick())
    finally:
        runner.store.close()


def escalated_project(root: Path, *, title: str = TITLE, **kw: Any) -> tuple[Path, str]:
    """A project with one open escalation holding a real diff; returns (root, escalation id)."""
    make_project(root, **kw)
    result = run_tick(root, write_scenario(root.parent, title=title))
    assert result.outcome == "escalated", result.lines
    assert result.escalation_id
    return root, result.escalation_id


def client(root: Path, **kw: Any) -> TestClient:
    return TestClient(create_app(load_project(root), token=TOKEN, **kw), base_url=BASE, follow_redirects=False)


def login(c: TestClient) -> None:
    """Open the printed URL once: trades ?token= for the cookie."""
    r = c.get(f"/?token={TOKEN}")
    assert r.status_code == 303


def csrf() -> str:
    return Guard(TOKEN).csrf


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One escalated project for the read-only tests (mutating tests build their own)."""
    return escalated_project(tmp_path_factory.mktemp("dash") / "repo")


@pytest.fixture
def ro(shared: tuple[Path, str]) -> Iterator[TestClient]:
    with client(shared[0]) as c:
        yield c


# ---------------------------------------------------------------------------- pages


def test_overview_lists_every_loop_with_level_cadence_outcome_and_spend(ro: TestClient) -> None:
    """The overview row shows level, cadence, last outcome, spend vs cap, open escalations and kill state."""
    r = ro.get("/")
    assert r.status_code == 200
    row = re.search(r'<tr data-pattern="daily-triage".*?</tr>', r.text, re.S)
    assert row, r.text
    text = row.group(0)
    assert "Daily Triage" in text and ">L2<" in text and "1d-2h" in text
    assert "escalated" in text and "5,000 / 100,000" in text
    assert "Kill switch off" in r.text and 'id="budget-charts"' in r.text


def test_api_status_is_the_status_json_document(ro: TestClient, shared: tuple[Path, str]) -> None:
    """/api/status is project_status() — the same document as `loop-runtime status --json`."""
    from loop_runtime.adapters.store.sqlite import RunStore
    from loop_runtime.app.status import project_status

    got = ro.get("/api/status").json()
    with RunStore.open(shared[0]) as store:
        want = project_status(load_project(shared[0]), now_utc(), store)
    got.pop("generatedAt"), want.pop("generatedAt")
    assert got == want


def test_loop_page_shows_timeline_state_file_and_run_log(ro: TestClient) -> None:
    """Ticks with phases, tokens per role and verdict; the state file rendered; the run log rows."""
    r = ro.get(f"/loops/{PATTERN}")
    assert r.status_code == 200
    tl = r.text[r.text.index('id="timeline"'):]
    for phase in ("discovering", "triaging", "implementing", "verifying"):
        assert f'chip-{phase}">{phase}<' in tl
    assert "triage <b>1,000</b>" in tl and "implementer <b>3,000</b>" in tl and "verifier <b>1,000</b>" in tl
    assert "v-ESCALATE_HUMAN" in tl
    assert "<h2>High Priority" in r.text or "<h3>High Priority" in r.text  # STATE.md rendered, not dumped
    assert "Run log" in r.text and re.search(r"<td class=\"num\">5,000</td>", r.text)


def test_timeline_fragment_is_served_alone_for_live_refresh(ro: TestClient) -> None:
    """/loops/<id>/timeline returns just the table (no page chrome)."""
    r = ro.get(f"/loops/{PATTERN}/timeline")
    assert r.status_code == 200 and "<table" in r.text and "<html" not in r.text


def test_escalation_page_shows_diff_verdict_reasons_and_test_output(ro: TestClient, shared: tuple[Path, str]) -> None:
    """The held diff as a diff, the verifier's verdict and reasons, and the test command's output."""
    r = ro.get(f"/escalations/{shared[1]}")
    assert r.status_code == 200
    assert '<span class="d-add">+export const SESSION_TIMEOUT_S = 900;</span>' in r.text
    assert '<span class="d-del">-export const SESSION_TIMEOUT_S = 3600;</span>' in r.text
    assert "ESCALATE_HUMAN" in r.text and "needs a security review" in r.text
    assert "echo 3 tests passed" in r.text and "3 tests passed\n" in r.text


def test_escalations_list_and_unknown_ids(ro: TestClient, shared: tuple[Path, str]) -> None:
    """The list links every open escalation; an unknown id or loop is a 404 page, not a traceback."""
    assert f'href="/escalations/{shared[1]}"' in ro.get("/escalations").text
    assert ro.get("/escalations/esc-00000000").status_code == 404
    assert ro.get("/loops/no-such-loop").status_code == 404


def test_agent_text_is_escaped_and_secrets_redacted_everywhere(ro: TestClient, shared: tuple[Path, str]) -> None:
    """A title with markup shows as text; a .env value never appears; the token is never rendered."""
    pages = ["/", f"/loops/{PATTERN}", "/escalations", f"/escalations/{shared[1]}", "/api/status",
             f"/loops/{PATTERN}/timeline"]
    seen = ""
    for url in pages:
        text = ro.get(url).text
        assert "<img src=x" not in text, url
        assert SECRET not in text, url
        assert TOKEN not in text, url
        seen += text
    assert "&lt;img src=x onerror=alert(1)&gt;" in seen and "[REDACTED]" in seen
    events = ro.get("/events?since=0&follow=0").text
    assert "tick.end" in events
    assert SECRET not in events and TOKEN not in events


def test_pages_use_only_bundled_assets(ro: TestClient) -> None:
    """Every script/stylesheet is served from /static (works offline); uPlot ships with its licence."""
    html = ro.get("/").text
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and not [u for u in refs if u.startswith(("http:", "https:", "//"))]
    for asset in ("/static/app.js", "/static/app.css", "/static/vendor/uplot/uPlot.iife.min.js",
                  "/static/vendor/uplot/uPlot.min.css", "/static/vendor/uplot/LICENSE"):
        assert asset == "/static/vendor/uplot/LICENSE" or asset in html
        r = ro.get(asset)
        assert r.status_code == 200 and len(r.content) > 500, asset
    assert "Leon Sorokin" in ro.get("/static/vendor/uplot/LICENSE").text


def test_security_headers_on_every_response(ro: TestClient) -> None:
    """CSP without inline script, no framing, no sniffing, no referrer."""
    r = ro.get("/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"


# ---------------------------------------------------------------------------- JSON + SSE


def test_budget_api_burn_down_and_history_agree_with_status(ro: TestClient) -> None:
    """Burn-down ends at today's spent; the 7-day history's last day is today's spent; caps match."""
    status = ro.get("/api/status").json()["loops"][0]
    doc = ro.get("/api/budget").json()["loops"][0]
    bd, hist = doc["burnDown"], doc["history"]
    assert bd["spent"][-1] == status["budget"]["spent"] == 5000
    assert bd["remaining"][-1] == bd["cap"] - 5000 and bd["cap"] == status["budget"]["cap"]
    assert bd["spent"] == sorted(bd["spent"]) and bd["x"] == sorted(bd["x"])
    assert len(hist["days"]) == 7 and hist["days"][-1] == status["budget"]["day"]
    assert hist["tokens"][-1] == 5000 and sum(hist["tokens"][:-1]) == 0


def test_budget_history_counts_runs_logged_by_other_tools(tmp_path: Path) -> None:
    """Run-log entries the runtime did not write count on their day (like status's "spent")."""
    from datetime import timedelta

    from loop_runtime.formats.runlog import RunLogEntry, append_entry

    root = make_project(tmp_path / "repo")
    now = now_utc()
    text = None
    for back, tokens in ((0, 700), (2, 1200)):
        when = (now - timedelta(days=back)).replace(hour=0, minute=30, second=0, microsecond=0)
        entry = RunLogEntry(when.strftime("%Y-%m-%dT%H:%M:%SZ"), PATTERN, 5, 0, 0, 0, tokens, "no-op")
        text = append_entry(text, entry, now=now)
    (root / "loop-run-log.md").write_text(text or "")
    with client(root) as c:
        doc = c.get("/api/budget").json()["loops"][0]
        status = c.get("/api/status").json()["loops"][0]
    assert doc["history"]["tokens"][-1] == 700 and doc["history"]["tokens"][-3] == 1200
    assert doc["burnDown"]["spent"][-1] == status["budget"]["spent"] == 700


def sse_messages(text: str) -> list[dict[str, Any]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            out.append({"event": fields["event"], "id": fields.get("id"), "data": json.loads(fields["data"])})
    return out


def test_events_stream_store_events_in_order_and_resume_from_last_event_id(ro: TestClient) -> None:
    """SSE replays store events after ?since= with ids; Last-Event-ID resumes exactly after it."""
    first = sse_messages(ro.get("/events?since=0&limit=5").text)
    assert [m["event"] for m in first] == ["store"] * 5
    ids = [int(m["id"]) for m in first]
    assert ids == sorted(ids) and first[0]["data"]["kind"].startswith("tick.")
    nxt = sse_messages(ro.get("/events?limit=1", headers={"last-event-id": str(ids[1])}).text)
    assert int(nxt[0]["id"]) == ids[2]


def test_events_stream_sends_a_status_snapshot(ro: TestClient) -> None:
    """With nothing new in the store the stream still sends the status document."""
    msgs = sse_messages(ro.get("/events?limit=1").text)
    assert msgs[0]["event"] == "status" and msgs[0]["data"]["loops"][0]["pattern"] == PATTERN


def test_events_rejects_non_numeric_cursor(ro: TestClient) -> None:
    """A malformed ?since= is a 400, not a crash."""
    assert ro.get("/events?since=abc").status_code == 400


# ---------------------------------------------------------------------------- security


def test_token_url_sets_a_strict_httponly_cookie_and_strips_the_token(ro: TestClient) -> None:
    """?token= → 303 to the same page without it, with an HttpOnly SameSite=Strict cookie."""
    r = ro.get(f"/loops/{PATTERN}?token={TOKEN}&x=1")
    assert r.status_code == 303 and r.headers["location"] == f"/loops/{PATTERN}?x=1"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert ro.get("/?token=wrong-token-123").status_code == 403


def test_read_only_view_disables_buttons_and_embeds_no_csrf(ro: TestClient) -> None:
    """Without the token the page says so, buttons are disabled and no CSRF value is embedded."""
    html = ro.get("/").text
    assert "Read-only view" in html and csrf() not in html
    assert re.search(r'id="kill-all"\s+disabled', html)


def test_mutations_need_the_token(tmp_path: Path) -> None:
    """POST /kill without any token is 403 and writes nothing."""
    root = make_project(tmp_path / "repo")
    with client(root) as c:
        r = c.post("/kill", data={"pattern": "", "csrf_token": csrf()})
    assert r.status_code == 403 and not (root / "loop-pause-all").exists()


def test_cookie_without_csrf_is_refused(tmp_path: Path) -> None:
    """A cookie alone (what a cross-site form would carry) is not enough: the CSRF field is required."""
    root = make_project(tmp_path / "repo")
    with client(root) as c:
        login(c)
        assert c.post("/kill", data={}).status_code == 403
        assert c.post("/kill", data={"csrf_token": "0" * 64}).status_code == 403
    assert not (root / "loop-pause-all").exists()


def test_cross_site_origin_is_refused_even_with_cookie_and_csrf(tmp_path: Path) -> None:
    """Origin/Sec-Fetch-Site from another site → 403."""
    root = make_project(tmp_path / "repo")
    with client(root) as c:
        login(c)
        r = c.post("/kill", data={"csrf_token": csrf()}, headers={"origin": "http://evil.example"})
        assert r.status_code == 403
        r = c.post("/kill", data={"csrf_token": csrf()}, headers={"sec-fetch-site": "cross-site"})
        assert r.status_code == 403
    assert not (root / "loop-pause-all").exists()


def test_foreign_host_header_is_refused(ro: TestClient) -> None:
    """A loopback dashboard answers only to loopback host names (DNS rebinding)."""
    assert ro.get("/", headers={"host": "attacker.example"}).status_code == 400
    assert ro.get("/", headers={"host": "localhost:8765"}).status_code == 200


def test_private_mode_requires_the_token_for_every_page(tmp_path: Path) -> None:
    """public_reads=False (non-loopback bind): pages need the token; static assets do not."""
    root = make_project(tmp_path / "repo")
    with client(root, public_reads=False) as c:
        assert c.get("/").status_code == 401 and c.get("/api/status").status_code == 401
        assert c.get("/static/app.css").status_code == 200
        assert c.get("/api/status", headers={"x-loop-token": TOKEN}).status_code == 200
        login(c)
        assert c.get("/").status_code == 200


# ---------------------------------------------------------------------------- actions


def test_kill_and_resume_buttons_write_the_same_switch_as_the_cli(tmp_path: Path) -> None:
    """Kill (one loop) writes loop-pause-<id>; the page then shows it paused; Resume removes it."""
    root = make_project(tmp_path / "repo")
    with client(root) as c:
        login(c)
        r = c.post("/kill", data={"pattern": PATTERN, "csrf_token": csrf(), "next": f"/loops/{PATTERN}"})
        assert r.status_code == 303 and r.headers["location"] == f"/loops/{PATTERN}"
        assert (root / f"loop-pause-{PATTERN}").exists()
        page = c.get(r.headers["location"]).text
        assert "Kill switch set: loop-pause-daily-triage" in page and "Resume loop" in page
        loop = c.get("/api/status").json()["loops"][0]
        assert loop["killSwitch"]["engaged"] and loop["level"]["effective"] == "paused"
        r = c.post("/resume", data={"pattern": PATTERN, "csrf_token": csrf()})
        assert r.status_code == 303 and not (root / f"loop-pause-{PATTERN}").exists()


def test_global_kill_by_header_token_answers_json(tmp_path: Path) -> None:
    """A script with X-Loop-Token needs no CSRF and gets JSON; the global switch file appears."""
    root = make_project(tmp_path / "repo")
    with client(root) as c:
        r = c.post("/kill", headers={"x-loop-token": TOKEN})
        assert r.status_code == 200 and r.json()["file"] == "loop-pause-all"
        assert (root / "loop-pause-all").exists()
        assert c.get("/api/status").json()["killSwitch"]["all"] is True
        r = c.post("/kill", data={"pattern": "nope"}, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 404 and "nope" in r.json()["error"]


def test_approve_commits_exactly_the_held_diff_on_its_branch(tmp_path: Path) -> None:
    """Approve = actions.approve: a commit on loop/<run-id> with the reviewed change; main untouched."""
    root, esc_id = escalated_project(tmp_path / "repo")
    base = git(root, "rev-parse", "main")
    with client(root) as c:
        login(c)
        r = c.post(f"/escalations/{esc_id}/approve", data={"csrf_token": csrf()})
        assert r.status_code == 303
        page = c.get(r.headers["location"]).text
        assert f"Approved {esc_id}: committed on loop/" in page
        branch = re.search(r"committed on (loop/\S+?)\.", page).group(1)  # type: ignore[union-attr]
        commit = re.search(r'id="approved-commit">([0-9a-f]{40})<', page).group(1)  # type: ignore[union-attr]
        again = c.post(f"/escalations/{esc_id}/approve", headers={"x-loop-token": TOKEN})
        assert again.status_code == 409 and "already approved" in again.json()["error"]
    assert git(root, "rev-parse", branch) == commit
    assert git(root, "show", f"{branch}:src/session.ts") + "\n" == NEW
    assert "Approved-by:" in git(root, "log", "-1", "--format=%B", branch)
    assert git(root, "rev-parse", "main") == base and (root / "src/session.ts").read_text() == OLD
    assert "approved by" in (root / "STATE.md").read_text()


def test_merge_is_offered_at_l3_only_and_merges_into_main(tmp_path: Path, ro: TestClient,
                                                           shared: tuple[Path, str]) -> None:
    """At L2 the page offers no merge; at L3 "also merge" commits and merges into main."""
    assert 'name="merge"' not in ro.get(f"/escalations/{shared[1]}").text
    root, esc_id = escalated_project(tmp_path / "repo", env_secret=None, level="L3")
    with client(root) as c:
        login(c)
        assert 'name="merge"' in c.get(f"/escalations/{esc_id}").text
        r = c.post(f"/escalations/{esc_id}/approve", data={"csrf_token": csrf(), "merge": "on"})
        assert r.status_code == 303 and "and merged" in c.get(r.headers["location"]).text
    assert (root / "src/session.ts").read_text() == NEW
    assert git(root, "log", "-1", "--format=%s", "main").startswith("loop(daily-triage):")


def test_reject_needs_a_reason_and_records_it(tmp_path: Path) -> None:
    """An empty reason is refused (still open); a reason rejects and lands in the state file."""
    root, esc_id = escalated_project(tmp_path / "repo", env_secret=None)
    with client(root) as c:
        r = c.post(f"/escalations/{esc_id}/reject", data={"reason": "  "}, headers={"x-loop-token": TOKEN})
        assert r.status_code == 400 and "reason" in r.json()["error"]
        assert c.get("/api/status").json()["loops"][0]["openEscalations"] == 1
        r = c.post(f"/escalations/{esc_id}/reject", data={"reason": "needs a security review first"},
                   headers={"x-loop-token": TOKEN})
        assert r.status_code == 200 and r.json()["result"]["reason"] == "needs a security review first"
        page = c.get(f"/escalations/{esc_id}").text
    assert "rejected" in page and "needs a security review first" in page
    assert "rejected by" in (root / "STATE.md").read_text()


def test_topup_raises_todays_cap(tmp_path: Path) -> None:
    """Top-up adds to today's cap in status; a non-number is refused."""
    root = make_project(tmp_path / "repo")
    with client(root) as c:
        before = c.get("/api/status").json()["loops"][0]["budget"]["cap"]
        h = {"x-loop-token": TOKEN}
        assert c.post(f"/loops/{PATTERN}/topup", data={"tokens": "many"}, headers=h).status_code == 400
        r = c.post(f"/loops/{PATTERN}/topup", data={"tokens": "50,000", "reason": "release day"}, headers=h)
        assert r.status_code == 200
        assert c.get("/api/status").json()["loops"][0]["budget"]["cap"] == before + 50_000


def test_redirect_target_stays_on_this_site(tmp_path: Path) -> None:
    """next= pointing elsewhere falls back to /: no open redirect."""
    root = make_project(tmp_path / "repo")
    with client(root) as c:
        login(c)
        for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
            r = c.post("/resume", data={"csrf_token": csrf(), "next": target})
            assert r.headers["location"] == "/", target


# ---------------------------------------------------------------------------- transcripts


def test_transcripts_are_linked_redacted_and_confined_to_their_folder(tmp_path: Path) -> None:
    """The loop page links a tick's transcripts; served redacted; traversal or symlinks out are 404."""
    from loop_runtime.adapters.store.sqlite import RunStore

    root, _ = escalated_project(tmp_path / "repo")
    with RunStore.open(root) as store:
        tick = store.last_tick(PATTERN).tick_id  # type: ignore[union-attr]
    folder = root / ".loop-runtime" / "transcripts" / tick
    folder.mkdir(parents=True)
    (folder / "implementer.jsonl").write_text(
        f'{{"text": "password={SECRET}"}}\nAuthorization: Bearer abcdefghijklmnop\n')
    (root / "outside.txt").write_text("not a transcript")
    (folder / "link.txt").symlink_to(root / "outside.txt")
    with client(root) as c:
        page = c.get(f"/loops/{PATTERN}").text
        assert f'href="/transcripts/{tick}/implementer.jsonl"' in page and "link.txt" not in page
        r = c.get(f"/transcripts/{tick}/implementer.jsonl")
        assert r.status_code == 200 and SECRET not in r.text and "abcdefghijklmnop" not in r.text
        assert "[REDACTED]" in r.text
        assert c.get(f"/transcripts/{tick}/link.txt").status_code == 404
        assert c.get(f"/transcripts/{tick}/..%2F..%2F..%2F..%2Foutside.txt").status_code == 404
        assert c.get("/transcripts/..%2F..%2Foutside.txt/x").status_code == 404


# ---------------------------------------------------------------------------- server


def test_make_server_refuses_non_loopback_without_a_token(tmp_path: Path) -> None:
    """0.0.0.0 without --token is a ConfigError naming --host; with one the app is private."""
    from loop_runtime.dashboard.server import make_server

    project = load_project(make_project(tmp_path / "repo"))
    with pytest.raises(ConfigError, match=r"--host: .*without a token"):
        make_server(project, host="0.0.0.0", port=0, token=None)
    with pytest.raises(ConfigError, match="too short"):
        make_server(project, host="127.0.0.1", port=0, token="abc")
    server, token = make_server(project, host="0.0.0.0", port=0, token=TOKEN)
    assert token == TOKEN and server.config.host == "0.0.0.0"
    with TestClient(server.config.app, base_url="http://192.0.2.7:8765") as c:  # any Host, but token-only
        assert c.get("/").status_code == 401
        assert c.get("/", headers={"x-loop-token": TOKEN}).status_code == 200
    server, token = make_server(project, host="127.0.0.1", port=0, token=None)
    assert len(token) >= 32 and server.config.host == "127.0.0.1"


def test_event_streams_end_when_the_server_shuts_down(tmp_path: Path) -> None:
    """Once uvicorn is told to exit, /events ends instead of holding shutdown open."""
    from loop_runtime.dashboard.server import make_server

    server, _ = make_server(load_project(make_project(tmp_path / "repo")), host="127.0.0.1", port=0, token=TOKEN)
    server.should_exit = True
    with TestClient(server.config.app, base_url=BASE) as c:
        assert c.get("/events").text == "retry: 2000\n\n"


def test_serve_prints_the_url_with_its_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """serve() prints http://127.0.0.1:<port>/?token=<token> to stderr before running."""
    import uvicorn

    from loop_runtime.dashboard.server import serve

    ran: list[bool] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: ran.append(True))
    serve(load_project(make_project(tmp_path / "repo")), host="127.0.0.1", port=8799, token=TOKEN)
    assert ran and f"http://127.0.0.1:8799/?token={TOKEN}" in capsys.readouterr().err


def test_cli_dashboard_refuses_a_public_bind_without_token(tmp_path: Path, cli: Any) -> None:
    """`loop-runtime dashboard --host 0.0.0.0` without --token: one line, exit 1, nothing served."""
    root = make_project(tmp_path / "repo")
    proc = cli("dashboard", "--host", "0.0.0.0", "--port", "0", cwd=root, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "without a token" in proc.stderr


# ---------------------------------------------------------------------------- renderers


# Invariant: whatever the state file says, the rendered HTML contains only allowlisted tags
# with allowlisted attributes, no event handler and no live script link.
_TAG = re.compile(r'<(/?)([a-zA-Z0-9]+)((?:\s+[a-z-]+="[^"<>]*")*)\s*/?>')


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/&\"'`*#-[]()|:x \nabscriptjavonerl=")), max_size=200))
def test_markdown_renderer_emits_only_allowlisted_tags(text: str) -> None:
    """render_markdown(any text) → allowlisted tags and attributes only; input '<' always arrives escaped."""
    from loop_runtime.dashboard.markdown import ALLOWED_TAGS
    from loop_runtime.dashboard.views import render_markdown

    out = render_markdown(text)
    for m in _TAG.finditer(out):
        assert m.group(2) in ALLOWED_TAGS, m.group(0)
        attrs = dict(re.findall(r'([a-z-]+)="([^"]*)"', m.group(3)))
        assert set(attrs) <= {"href", "title", "rel", "class", "start"}, m.group(0)
        assert not attrs.get("href", "").lower().lstrip().startswith(("javascript", "data", "vbscript")), m.group(0)
    assert _TAG.sub("", out).count("<") == 0


# Invariant: splitting a diff into files never loses or reorders a line.
@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["diff --git a/x b/x", "--- a/x", "+++ b/x", "@@ -1 +1 @@", "+new", "-old",
                                 " ctx", "", "index 1..2", "Binary files differ"]), max_size=40))
def test_diff_files_keep_every_line_in_order(lines: list[str]) -> None:
    """diff_files(patch) lines, concatenated, are exactly the patch's lines."""
    from loop_runtime.dashboard.views import diff_files

    patch = "\n".join(lines)
    got = [text for f in diff_files(patch) for _, text in f.lines]
    assert got == patch.splitlines()


def test_diff_lines_inside_a_hunk_are_content_even_when_they_look_like_headers() -> None:
    """A removed SQL comment ('-- x' → '--- x') inside a hunk is a deletion, not a file header."""
    from loop_runtime.dashboard.views import diff_files

    patch = "diff --git a/q.sql b/q.sql\n--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1,1 @@\n--- old note\n+++ new\n select 1;\n"
    [f] = diff_files(patch)
    assert f.name == "q.sql" and (f.added, f.removed) == (1, 1)
    assert [c for c, _ in f.lines] == ["hdr", "hdr", "hdr", "hunk", "del", "add", "ctx"]


# Invariant: redacting an event payload keeps it the same JSON shape and leaves no planted secret,
# whatever the strings around it (quotes and backslashes included).
@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["note", "password", "phase", "api_key", "detail"]),
                       st.text(alphabet=st.sampled_from(list('ab"\\: =')), max_size=12), max_size=5))
def test_event_payload_redaction_keeps_valid_json(payload: dict[str, str]) -> None:
    """redact_tree(payload) serialises to valid JSON with the same keys; a planted secret never survives."""
    from loop_runtime.dashboard.views import redact_tree

    planted = {**payload, "detail": f'x" {SECRET} "y', "nested": [{"token": "t0k3n-value"}]}
    out = redact_tree(planted, [SECRET])
    text = json.dumps(out)
    assert json.loads(text).keys() == planted.keys()
    assert SECRET not in text and "t0k3n-value" not in text
