"""`loop-runtime start` as a real process: ticks on its own, stops an in-flight tick within 5 s of
`kill`, exits cleanly on SIGTERM; notifications reach a local endpoint; progress as JSON events."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.gitrepo import make_repo
from datetime import UTC

pytestmark = pytest.mark.slow


def rows(repo: Path, sql: str) -> list[tuple]:
    db = repo / ".loop-runtime" / "runtime.db"
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def wait_for(pred, timeout: float = 20.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def start(repo: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "loop_runtime", "start", *args, "--log-format", "plain"],
                            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_daemon_ticks_and_kill_stops_a_running_tick_within_5s(tmp_path: Path) -> None:
    """A slow tick is running; `loop-runtime kill` stops it within 5 s, settled, logged; SIGTERM exits 0."""
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    slow = tmp_path / "slow.yaml"
    slow.write_text("triage: {decision: noop, tokens: 1000, sleep_s: 60}\n")
    proc = start(repo, "issue-triage", "--scenario", str(slow))
    try:
        assert wait_for(lambda: rows(repo, "select count(*) from ticks where status='running'") == [(1,)]), \
            proc.stderr.read() if proc.poll() is not None else "no running tick"
        t0 = time.time()
        assert run_cli("kill", "issue-triage", cwd=repo).returncode == 0
        assert wait_for(lambda: rows(repo, "select count(*) from ticks where status='running'") == [(0,)], 10)
        assert time.time() - t0 < 5.0
        assert rows(repo, "select count(*) from reservations where settled is null") == [(0,)]
        (outcome,) = rows(repo, "select outcome from ticks")[0]
        assert outcome == "halted"
        log = (repo / "loop-run-log.md").read_text()
        assert '"note":"halted: kill"' in log
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    assert "loop-runtime: stopped" in err


def test_daemon_runs_enabled_loops_from_loop_md(tmp_path: Path, fixtures: Path) -> None:
    """With no pattern named, `start` runs the loops LOOP.md lists, and records next-due times."""
    repo = make_repo(tmp_path / "repo", {"LOOP.md": (fixtures / "starters__issue-pr-repair__LOOP.md").read_text()})
    (repo / "loop-runtime.toml").write_text("[patterns.issue-pr-repair]\nlevel = \"L1\"\n")
    proc = start(repo, "--scenario", "noop")
    try:
        assert wait_for(lambda: rows(repo, "select count(*) from ticks where status='finished'") >= [(1,)])
        assert wait_for(lambda: len(rows(repo, "select * from schedule")) >= 1 or
                        len(rows(repo, "select * from next_due")) >= 1, 5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    status = json.loads(run_cli("status", "--json", cwd=repo).stdout)
    (loop,) = [lp for lp in status["loops"] if lp["pattern"] == "issue-pr-repair"]
    assert loop["nextRun"] is not None and loop["lastRun"]["outcome"] == "no-op"


class _Sink(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Sink.received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_escalation_notifies_a_local_endpoint(tmp_path: Path) -> None:
    """An escalation sends a short apprise notification (json://) to a localhost endpoint, no secrets."""
    server = HTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        repo = make_repo(tmp_path / "repo", {"src/session.ts": "export const t = 1;\n"})
        (repo / "loop-runtime.toml").write_text(f'notify = ["json://127.0.0.1:{server.server_port}/"]\n')
        proc = run_cli("run", "daily-triage", "--level", "L2", "--scenario", "escalate", cwd=repo,
                       env={"ANTHROPIC_API_KEY": "sk-ant-secret-value-123456"})
        assert proc.returncode == 2, proc.stderr
        assert wait_for(lambda: len(_Sink.received) >= 1, 10)
        note = json.dumps(_Sink.received)
        assert "escalation" in note.lower() and "EX-3" in note
        assert "sk-ant-secret" not in note
    finally:
        server.shutdown()


def test_log_format_json_emits_structured_events(tmp_path: Path) -> None:
    """`run --log-format json` writes one JSON event per line on stderr; stdout keeps the report."""
    proc = run_cli("run", "daily-triage", "--scenario", "noop", "--log-format", "json", cwd=tmp_path)
    assert proc.returncode == 0
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    kinds = {e["event"] for e in events}
    assert {"tick.phase", "tick.agent", "tick.end"} <= kinds
    assert proc.stdout.startswith("Ran 1 tick(s) of Daily Triage")


def test_two_daemons_on_one_project_never_tick_a_pattern_twice_at_once(tmp_path: Path) -> None:
    """Two real `start` processes: each pattern is ticked by one at a time (lease); spend stays under the cap."""
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    slow = tmp_path / "slow.yaml"
    slow.write_text("triage: {decision: report, tokens: 1000, sleep_s: 2, items: [{id: A, title: a}]}\n")
    (repo / "loop-runtime.toml").write_text("[patterns.issue-triage]\ndaily_cap = 1500\n")
    a = start(repo, "issue-triage", "--scenario", str(slow))
    b = start(repo, "issue-triage", "--scenario", str(slow))
    try:
        assert wait_for(lambda: rows(repo, "select count(*) from ticks where status!='running'") >= [(1,)], 30)
        time.sleep(1.0)
    finally:
        for p in (a, b):
            p.send_signal(signal.SIGTERM)
        errs = [p.communicate(timeout=40)[1] for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, errs
    ticks = rows(repo, "select started_at, finished_at from ticks where pattern='issue-triage' order by started_at")
    for (_, f1), (s2, _) in zip(ticks, ticks[1:], strict=False):
        assert f1 is not None and f1 <= s2  # no overlap
    # either the second daemon met the lease, or it read the first one's next-due time from the store
    assert any("skipped — pattern" in e for e in errs) or len(ticks) == 1
    spent = rows(repo, "select coalesce(sum(settled), 0) from reservations where pattern='issue-triage'")[0][0]
    assert spent <= 1500


def test_daily_summary_is_sent_after_each_utc_midnight(tmp_path: Path) -> None:
    """With daily_summary on, one summary of the previous UTC day goes out after midnight."""
    import asyncio
    from datetime import datetime

    from loop_runtime.adapters.clock import ManualClock
    from loop_runtime.adapters.notify import RecordingNotifier
    from loop_runtime.adapters.store.sqlite import RunStore
    from loop_runtime.daemon import _daily_summaries

    clock = ManualClock(datetime(2026, 11, 25, 22, 0, tzinfo=UTC))
    store = RunStore.open(tmp_path)
    notes = RecordingNotifier()
    sleeps = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)
        if len(sleeps) >= 2:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_daily_summaries(store, notes, clock, ["daily-triage"], lambda *a: None, sleep=fake_sleep))
    store.close()
    assert [n.kind for n in notes.notes] == ["daily-summary"]
    assert "2026-11-25" in notes.notes[0].title and sleeps[0] == 2 * 3600 + 5
