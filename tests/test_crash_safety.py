"""Crash safety: `kill -9` at any phase, then the next run recovers (issue: act path §7),
and budget top-up resumes a halted tick without repeating its completed phases (always-on §6)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.gitrepo import git, make_repo
from tests.test_act_path import BUGGY, FIXED, TEST, scenario

pytestmark = pytest.mark.slow

PHASES = ["phase:discovering", "phase:triaging", "reserve:triage", "agent:triage", "phase:implementing",
          "workspace", "agent:implementer:1", "phase:verifying", "tests", "agent:verifier:1", "phase:gated",
          "phase:committed", "commit", "logged"]


def project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {
        "calc.py": BUGGY, "tests/test_calc.py": TEST, "conftest.py": "",
        "loop-runtime.toml": f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"\n',
    })


def entries(repo: Path) -> list[dict]:
    text = (repo / "loop-run-log.md").read_text() if (repo / "loop-run-log.md").exists() else ""
    marker = "<!-- Loop appends below this line -->"
    return [json.loads(line) for line in text.split(marker, 1)[-1].splitlines() if line.startswith("{")]


def store_query(repo: Path, sql: str) -> list[tuple]:
    import sqlite3

    con = sqlite3.connect(repo / ".loop-runtime" / "runtime.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("phase", PHASES)
def test_kill_9_at_each_phase_then_recover(tmp_path: Path, phase: str) -> None:
    """After a SIGKILL at `phase`, the next run recovers: one log entry per tick, reservations settled,
    orphan worktree stale and removed, no commit twice."""
    repo = project(tmp_path)
    scen = scenario(tmp_path, [{"files": {"calc.py": FIXED}}])
    crashed = run_cli("run", "ci-sweeper", "--level", "L2", "--scenario", scen, cwd=repo,
                      env={"LOOP_RUNTIME_FAULT_AT": phase})
    assert crashed.returncode == -9, (crashed.returncode, crashed.stderr)
    commits_before = git(repo, "for-each-ref", "refs/heads/loop/", "--format=%(objectname)")

    again = run_cli("run", "ci-sweeper", "--level", "L2", "--scenario", scen, cwd=repo)
    assert again.returncode == 0, again.stdout + again.stderr

    ticks = store_query(repo, "select tick_id, run_id, status from ticks order by started_at")
    assert [t[2] for t in ticks] == ["crashed", "finished"]
    assert len(entries(repo)) == 2  # exactly one entry per tick, the crashed one included
    assert store_query(repo, "select count(*) from reservations where settled is null") == [(0,)]
    manifest = json.loads((repo / ".loop-worktrees" / "manifest.json").read_text())
    statuses = [w["status"] for w in manifest["worktrees"]]
    assert "active" in statuses[-1:] and statuses.count("active") == 1
    for w in manifest["worktrees"]:
        if w["status"] == "stale":
            assert not (repo / w["path"]).exists()
    for sha in commits_before.split():
        assert git(repo, "branch", "--contains", sha, "--list", "loop/*")  # the crashed commit is kept, not redone


def test_two_processes_never_tick_the_same_pattern_at_once(tmp_path: Path) -> None:
    """While one process holds a pattern's lease, a second `run` of it fails cleanly (exit 1)."""
    repo = project(tmp_path)
    slow = tmp_path / "slow.yaml"
    slow.write_text("triage: {decision: noop, tokens: 100, sleep_s: 4}\n")
    first = subprocess.Popen([sys.executable, "-m", "loop_runtime", "run", "ci-sweeper", "--scenario", str(slow)],
                             cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import time

    deadline = time.time() + 10
    import sqlite3

    while time.time() < deadline:
        try:  # the file exists a moment before its tables do
            if (repo / ".loop-runtime" / "runtime.db").exists() and store_query(
                    repo, "select count(*) from ticks where status='running'") == [(1,)]:
                break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    second = run_cli("run", "ci-sweeper", "--scenario", str(slow), cwd=repo)
    assert second.returncode == 1 and "being ticked by another process" in second.stderr
    assert first.wait(30) == 0


def test_topup_resumes_a_budget_halted_tick_without_repeating_phases(tmp_path: Path) -> None:
    """A tick halted by its budget mid-way keeps its worktree; `topup --resume` finishes it,
    replaying triage and the implementer from the journal (no second call, no second charge)."""
    repo = project(tmp_path)
    (repo / "loop-runtime.toml").write_text(
        f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"\n\n'
        "[patterns.ci-sweeper]\ndaily_cap = 4500\n")
    git(repo, "commit", "-qam", "cap")
    scen = scenario(tmp_path, [{"files": {"calc.py": FIXED}}])
    halted = run_cli("run", "ci-sweeper", "--level", "L2", "--scenario", scen, cwd=repo)
    assert halted.returncode == 2, halted.stdout + halted.stderr
    assert "halted" in halted.stdout
    spent_before = store_query(repo, "select coalesce(sum(settled),0) from reservations")[0][0]

    resumed = run_cli("topup", "ci-sweeper", "10000", "--reason", "finish the CI fix", "--resume",
                      "--scenario", scen, cwd=repo)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "committed: safe + allowlisted" in resumed.stdout
    spent_after = store_query(repo, "select coalesce(sum(settled),0) from reservations")[0][0]
    assert spent_after - spent_before == 1000  # only the verifier ran
    roles = [r[0] for r in store_query(repo, "select phase from phases where phase like 'agent:%' order by id")]
    assert roles.count("agent:triage") == 1 and roles.count("agent:implementer:1") == 1
    assert "finish the CI fix" in (repo / "ci-sweeper-state.md").read_text()


def test_global_daily_cap_is_shared_by_every_loop(tmp_path: Path) -> None:
    """global_daily_cap bounds the sum over loops: the second loop is halted when the first spent it."""
    repo = project(tmp_path)
    (repo / "loop-runtime.toml").write_text("global_daily_cap = 5000\n")
    first = run_cli("run", "daily-triage", "--scenario", "report-only", cwd=repo)  # 4,000 tokens
    assert first.returncode == 0, first.stderr
    second = run_cli("run", "issue-triage", "--scenario", "report-only", cwd=repo)
    assert second.returncode == 2 and "halted" in second.stdout
    spent = store_query(repo, "select coalesce(sum(settled),0) from reservations where pattern != '*'")[0][0]
    assert spent <= 5000
