"""The dashboard tells each tick's story: the tick page, live-activity sentences, meaningful charts, Markdown.

Ticks are real (mock backend through ``LoopRunner``: real worktrees, tests, store
journal); agent text carries a secret and ``<script>`` so every page proves it
redacts and escapes what an agent wrote.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loop_runtime.app.runtime import load_project, now_utc
from tests.test_dashboard_app import NEW, PATTERN, SECRET, TOKEN, client, make_project, run_tick

pytest.importorskip("starlette")

SCRIPT = '<script>alert("owned")</script>'


def scenario(folder: Path, *, verdict: str, name: str, reasons: list[str] | None = None) -> str:
    """Agent answers with hostile text: a secret and a script tag in triage and verifier output."""
    doc = {
        "triage": {"decision": "act", "summary": f"session handling {SCRIPT} {SECRET}", "tokens": 1000,
                   "items": [{"id": "EX-3", "title": f"Tighten timeout {SCRIPT}", "files": ["src/session.ts"],
                              "detail": f"leaked {SECRET}"}]},
        "implementer": [{"files": {"src/session.ts": NEW}, "tokens": 3000}],
        "verifier": [{"verdict": verdict, "tokens": 1000,
                      "reasons": reasons or [f"needs a security review {SCRIPT}", f"saw {SECRET} in a log"]}],
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One project with an escalated tick and a committed tick."""
    base = tmp_path_factory.mktemp("tick")
    root = make_project(base / "repo")
    esc = run_tick(root, scenario(base, verdict="ESCALATE_HUMAN", name="esc"))
    assert esc.outcome == "escalated", esc.lines
    ok = run_tick(root, scenario(base, verdict="APPROVE", name="ok", reasons=["small and tested"]))
    assert ok.outcome == "fix-proposed", ok.lines
    return {"root": root, "esc": esc, "ok": ok}


@pytest.fixture
def c(ticks: dict[str, Any]) -> Iterator[Any]:
    with client(ticks["root"]) as cl:
        yield cl


def _section(html: str, ident: str) -> str:
    m = re.search(rf'id="{ident}".*?</(?:section|table|ol)>', html, re.S)
    assert m, f"no #{ident} in page"
    return m.group(0)


# ---------------------------------------------------------------------------- tick page


def test_tick_page_tells_an_escalated_tick_end_to_end(c: Any, ticks: dict[str, Any]) -> None:
    """Phases with durations, tokens per role vs reservation, triage items, verdict + reasons, tests, held diff."""
    tick = ticks["esc"].tick_id
    r = c.get(f"/ticks/{tick}")
    assert r.status_code == 200
    html = r.text
    phases = _section(html, "phases")
    names = re.findall(r'class="chip chip-([a-z-]+)"', phases)
    assert names[:1] == ["preflight"] or names[0] == "discovering"
    for want in ("discovering", "triaging", "implementing", "verifying", "escalated"):
        assert want in names
    assert len(re.findall(r'class="mono dur">[0-9.]+ (?:ms|s)<', phases)) == len(names)
    roles = _section(html, "roles")
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<tr data-role="(\w+)".*?>(.*?)</tr>', roles, re.S)}
    assert list(rows)[:3] == ["triage", "implementer", "verifier"]
    from loop_runtime.adapters.store.sqlite import RunStore

    with RunStore.open(ticks["root"]) as store:
        reserved = {p.phase.split(":")[1]: p.data["amount"] for p in store.phases(tick) if p.phase.startswith("reserve:")}
    for role, used in (("triage", 1000), ("implementer", 3000), ("verifier", 1000)):
        cells = re.findall(r'<td class="num">([^<]*)</td>', rows[role])
        assert cells == [f"{used:,}", f"{reserved[role]:,}"], (role, cells)
    triage = _section(html, "triage")
    assert "act" in triage and "EX-3" in triage and "1 item" in triage
    assert "ESCALATE_HUMAN" in html and "needs a security review" in html
    assert 'class="badge t-passed"' in html and "echo 3 tests passed" in html
    assert re.search(r'<span class="d-add">\+export const SESSION_TIMEOUT_S = 900;</span>', html)
    assert "Held diff" in html and f'href="/escalations/{ticks["esc"].escalation_id}"' in html


def test_tick_page_redacts_secrets_and_escapes_markup_from_agents(c: Any, ticks: dict[str, Any]) -> None:
    """A secret in agent text never reaches the page; a <script> in agent text arrives as text."""
    for result in (ticks["esc"], ticks["ok"]):
        html = c.get(f"/ticks/{result.tick_id}").text
        assert SECRET not in html
        assert "<script>alert" not in html and "&lt;script&gt;alert(" in html
        assert "[REDACTED]" in html


def test_tick_page_of_a_committed_tick_shows_the_commit_diff(c: Any, ticks: dict[str, Any]) -> None:
    """A committed tick shows the commit (read from git by its journaled sha) and the APPROVE verdict."""
    ok = ticks["ok"]
    html = c.get(f"/ticks/{ok.tick_id}").text
    assert "APPROVE" in html and "small and tested" in html
    sha = ok.commit
    assert sha and f"Committed diff ({sha[:10]})" in html
    assert re.search(r'<span class="d-add">\+export const SESSION_TIMEOUT_S = 900;</span>', html)
    assert re.search(r'<span class="d-del">-export const SESSION_TIMEOUT_S = 3600;</span>', html)


@pytest.mark.parametrize("bad", ["..%2F..%2Fetc%2Fpasswd", "%3Cscript%3E", "nope-000000000000", "a" * 300, ".hidden"])
def test_tick_ids_in_urls_are_validated(c: Any, bad: str) -> None:
    """Unknown or malformed tick ids are a plain 404 page that echoes nothing live."""
    r = c.get(f"/ticks/{bad}")
    assert r.status_code == 404
    assert "<script>" not in r.text


def test_tick_page_needs_the_token_when_reads_are_private(ticks: dict[str, Any]) -> None:
    """The tick page sits behind the same guard as every page."""
    tick = ticks["esc"].tick_id
    with client(ticks["root"], public_reads=False) as cl:
        assert cl.get(f"/ticks/{tick}").status_code == 401
        assert cl.get(f"/?token={TOKEN}").status_code == 303
        assert cl.get(f"/ticks/{tick}").status_code == 200


def test_tick_page_links_its_transcripts_and_they_are_redacted(c: Any, ticks: dict[str, Any]) -> None:
    """Transcripts saved under .loop-runtime/transcripts/<tick>/ are listed and open redacted and escaped."""
    tick = ticks["esc"].tick_id
    folder = ticks["root"] / ".loop-runtime" / "transcripts" / tick
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "verifier-1.jsonl").write_text(json.dumps({"text": f"{SCRIPT} DB_PASSWORD={SECRET}"}) + "\n")
    (folder / "link.jsonl").symlink_to(ticks["root"] / ".env")
    try:
        html = c.get(f"/ticks/{tick}").text
        assert f'href="/transcripts/{tick}/verifier-1.jsonl"' in html
        assert "link.jsonl" not in html  # a symlink is never followed
        page = c.get(f"/transcripts/{tick}/verifier-1.jsonl")
        assert page.status_code == 200 and SECRET not in page.text and "<script>alert" not in page.text
    finally:
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()


def test_timeline_and_escalation_link_to_the_tick_page(c: Any, ticks: dict[str, Any]) -> None:
    tick = ticks["esc"].tick_id
    assert f'href="/ticks/{tick}"' in c.get(f"/loops/{PATTERN}").text
    assert f'href="/ticks/{tick}"' in c.get(f"/escalations/{ticks['esc'].escalation_id}").text


def test_no_tests_is_neutral_not_green_and_the_verifier_is_told(tmp_path: Path) -> None:
    """Without a test command the page says "no tests" (neutral badge) and the verifier's prompt says so."""
    from loop_runtime.core.act import _test_summary
    from loop_runtime.ports import TestRun
    from tests.support.gitrepo import make_repo

    root = tmp_path / "repo"
    make_repo(root, {"src/session.ts": "export const SESSION_TIMEOUT_S = 3600;\n",
                     "loop-runtime.toml": f'[patterns.{PATTERN}]\nlevel = "L2"\n'})
    result = run_tick(root, scenario(tmp_path, verdict="ESCALATE_HUMAN", name="none"))
    assert result.outcome == "escalated", result.lines
    with client(root) as cl:
        html = cl.get(f"/ticks/{result.tick_id}").text
        esc_html = cl.get(f"/escalations/{result.escalation_id}").text
    for page in (html, esc_html):
        assert 'class="badge t-none">no tests<' in page
        assert "t-passed" not in page and ">passed<" not in page
    told = _test_summary(TestRun(command=None, exit_code=None, passed=True, output=""))
    assert "NO TESTS RAN" in told and "not a pass" in told


# ---------------------------------------------------------------------------- live activity


def test_live_activity_reads_as_sentences_linking_to_the_tick(c: Any, ticks: dict[str, Any]) -> None:
    """The overview's feed: `daily-triage · verifier approved · 5,000 tokens`, a link to the tick; no event names."""
    html = c.get("/").text
    feed = _section(html, "activity")
    ok = ticks["ok"].tick_id
    assert re.search(rf'<a class="sentence" href="/ticks/{ok}">daily-triage · verifier approved · 5,000 tokens</a>',
                     feed), feed
    assert "daily-triage · tick fix-proposed · 5,000 tokens" in feed
    assert "tick.phase" not in feed and "tick.usage" not in feed and "tick.record" not in feed


def test_event_sentences_for_every_tick_event() -> None:
    from loop_runtime.dashboard.tickview import event_sentence

    s = event_sentence
    assert s("tick.record", "ci-sweeper", {"phase": "verdict", "verdict": "APPROVE"}, 5000) == \
        "ci-sweeper · verifier approved · 5,000 tokens"
    assert s("tick.record", "ci-sweeper", {"phase": "verdict", "verdict": "REJECT"}) == "ci-sweeper · verifier rejected"
    assert s("tick.phase", "x", {"phase": "phase:implementing", "attempt": 2}) == "x · implementing (attempt 2)"
    assert s("tick.end", "x", {"outcome": "no-op", "tokens": 1234}) == "x · tick no-op · 1,234 tokens"
    assert s("tick.record", "x", {"phase": "tests", "command": None}) == "x · no tests found"
    assert s("tick.usage", "x", {"role": "triage", "tokens": 5}) is None
    assert s("kill", None, {"scope": "all"}) == "all loops · kill switch set"
    assert s("resume", "x", {"scope": "x"}) == "x · resumed"
    assert s("escalation.approved", "x", {"commit": "abc"}) == "x · escalation approved"
    assert s("escalation.rejected", "x", {"id": "esc-1"}) == "x · escalation esc-1 rejected"
    assert s("skip.runs-cap", "x", {}) == "x · skipped: runs/day cap reached"
    assert s("budget.topup", "x", {"tokens": 50000}) == "x · cap topped up by 50,000 tokens"
    assert s("tick.record", "x", {"phase": "reserve:triage"}) is None


def test_sse_store_events_carry_the_sentence_and_tick_link(c: Any, ticks: dict[str, Any]) -> None:
    from tests.test_dashboard_app import sse_messages

    msgs = sse_messages(c.get("/events?since=0&follow=0").text)
    store = [m["data"] for m in msgs if m["event"] == "store"]
    verdicts = [d for d in store if d["kind"] == "tick.record" and d["payload"].get("phase") == "verdict"]
    assert [d["text"] for d in verdicts] == ["daily-triage · verifier asked for a human · 5,000 tokens",
                                             "daily-triage · verifier approved · 5,000 tokens"]
    assert all(d["href"] == f"/ticks/{d['tick']}" for d in verdicts)
    assert SECRET not in json.dumps(store)


# ---------------------------------------------------------------------------- charts


def test_chart_scale_follows_the_spend_not_a_far_away_cap() -> None:
    """A 1.7% day is scaled to its spend (cap off the scale); a day near its cap shows the cap."""
    from loop_runtime.dashboard.charts import scale

    low = scale([0, 1000, 1700], [100_000, 100_000, 100_000])
    assert low["capVisible"] is False and 1700 < low["yMax"] <= 1700 * 1.3
    near = scale([0, 60_000, 90_000], [100_000, 100_000, 100_000])
    assert near["capVisible"] is True and near["yMax"] >= 100_000
    empty = scale([0, 0], [100_000, 100_000])
    assert empty["capVisible"] is False and 0 < empty["yMax"] < 100_000
    assert scale([], [])["yMax"] > 0


def test_burn_down_draws_the_cap_as_a_step_rising_at_a_top_up(ticks: dict[str, Any]) -> None:
    """After a top-up the cap series rises exactly at the top-up's time, and stays up."""
    from loop_runtime.adapters.store.sqlite import RunStore
    from loop_runtime.dashboard.charts import burn_down

    project = load_project(ticks["root"])
    now = now_utc()
    day_start = datetime(now.year, now.month, now.day, tzinfo=UTC)
    at = max(day_start + timedelta(seconds=1), now - timedelta(seconds=30))
    with RunStore.open(ticks["root"]) as store:
        before = burn_down(project, store, PATTERN, now)
        store.add_topup(PATTERN, now.date(), 50_000, "test", at)
        bd = burn_down(project, store, PATTERN, now + timedelta(seconds=1))
    assert set(before["capSteps"]) == {100_000}
    t = int(at.timestamp())
    assert t in bd["x"]
    for x, cap in zip(bd["x"], bd["capSteps"], strict=True):
        assert cap == (150_000 if x >= t else 100_000), (x, cap)
    assert bd["cap"] == 150_000 and bd["topups"] == [{"at": t, "tokens": 50_000}]
    assert bd["spent"][-1] == 10_000 and bd["capVisible"] is False and bd["yMax"] < 20_000


def test_budget_api_scales_history_bars_to_the_tokens(c: Any) -> None:
    doc = c.get("/api/budget").json()
    hist = doc["loops"][0]["history"]
    assert hist["tokens"][-1] == 10_000 and hist["yMax"] < 20_000 and hist["capVisible"] is False
    assert doc["stacked"] is None  # one loop: nothing to stack


def test_stacked_spend_sums_loops_in_order_on_one_axis() -> None:
    """Two loops' cumulative spend on the union of their times; the top series is the total."""
    from loop_runtime.dashboard.charts import stacked

    def loop(pid: str, xs: list[int], spent: list[int], cap: int, tokens: list[int]) -> dict[str, Any]:
        return {"pattern": pid, "name": pid.title(),
                "burnDown": {"x": xs, "spent": spent, "capSteps": [cap] * len(xs), "dayStart": 0, "dayEnd": 86400},
                "history": {"x": [0, 86400], "days": ["d1", "d2"], "tokens": tokens}}

    st = stacked([loop("a", [0, 100, 300], [0, 500, 800], 1000, [10, 800]),
                  loop("b", [0, 200, 300], [0, 300, 400], 500, [5, 400])])
    assert st is not None
    assert st["x"] == [0, 100, 200, 300]
    assert st["series"][0]["cumulative"] == [0, 500, 500, 800]
    assert st["series"][1]["cumulative"] == [0, 500, 800, 1200]
    assert st["capSteps"] == [1500] * 4
    assert st["history"]["series"][1]["cumulative"] == [15, 1200]
    assert st["capVisible"] is True and st["yMax"] >= 1500
    assert stacked([loop("a", [0], [0], 1, [0, 0])]) is None


# ---------------------------------------------------------------------------- markdown


def test_markdown_renders_tables_rules_and_links() -> None:
    from loop_runtime.dashboard.views import render_markdown

    out = render_markdown("# Title\n\n| a | b |\n|---|--:|\n| 1 | 2 |\n\n---\n\n[docs](https://example.com/x?a=1&b=2)\n"
                          "- [ ] open\n- [x] done\n")
    assert "<table>" in out and "<th>a</th>" in out and '<td class="md-right">2</td>' in out
    assert "<hr>" in out
    assert '<a href="https://example.com/x?a=1&amp;b=2" rel="noopener noreferrer nofollow">docs</a>' in out
    assert "<h2>Title</h2>" in out and "☐ open" in out and "☑ done" in out


@pytest.mark.parametrize("hostile", [
    "<script>alert(1)</script>", '<img src=x onerror="alert(1)">', "<iframe src=//evil></iframe>",
    '<a href="javascript:alert(1)">x</a>', "[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))",
    "[x](  javascript:alert(1))", "[x](data:text/html;base64,PHNjcmlwdD4=)", "[x](vbscript:msgbox)",
    "<svg onload=alert(1)>", '<div style="background:url(javascript:x)">d</div>', "[x](&#106;avascript:alert(1))",
])
def test_markdown_strips_raw_html_and_script_links(hostile: str) -> None:
    from loop_runtime.dashboard.views import render_markdown

    out = render_markdown(f"before\n\n{hostile}\n\nafter")
    tags = re.findall(r"<(/?[a-zA-Z0-9]+)([^<>]*)>", out)  # real tags only: escaped text has no '<'
    assert tags and not {name.lstrip("/") for name, _ in tags} & {"script", "img", "iframe", "svg", "div", "style"}
    for _, attrs in tags:
        assert not re.search(r'\bon[a-z]+\s*=', attrs, re.I)
        assert not re.search(r'href="\s*(javascript|data|vbscript|&#)', attrs, re.I)
    assert "<p>before</p>" in out and "<p>after</p>" in out


def test_loop_page_renders_the_state_file_with_markdown_it(ticks: dict[str, Any], c: Any) -> None:
    project = load_project(ticks["root"])
    state = ticks["root"] / project.plan(PATTERN).state_file
    original = state.read_text()
    try:
        state.write_text(original + "\n## Table\n\n| item | owner |\n|---|---|\n| EX-3 | me |\n\n---\n\n"
                         f"[ok](https://example.com) [bad](javascript:alert(1)) {SCRIPT}\n")
        html = c.get(f"/loops/{PATTERN}").text
    finally:
        state.write_text(original)
    md = re.search(r'<div class="markdown">(.*?)</div>\n  </section>', html, re.S)
    assert md, html
    body = md.group(1)
    assert "<table>" in body and "<td>EX-3</td>" in body and "<hr>" in body
    assert '<a href="https://example.com"' in body and 'href="javascript' not in body
    assert "<script>" not in body and "&lt;script&gt;" in body
