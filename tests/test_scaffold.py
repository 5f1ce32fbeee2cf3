"""Drops into a real project: a `loop-init` scaffold, unchanged, runs with no extra file (R9, R29)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git
from tests.support import npm_tools

pytestmark = pytest.mark.parity


def scaffold(tmp_path: Path, pattern: str) -> Path:
    repo = tmp_path / pattern
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "Test")
    proc = npm_tools.run_tool("loop-init", ".", "--pattern", pattern, "--tool", "claude", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "scaffold")
    return repo


def changed_files(repo: Path) -> set[str]:
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    return {line[3:] for line in out.splitlines()}


@pytest.mark.parametrize("pattern", ["daily-triage", "ci-sweeper"])
def test_list_plan_run_on_a_loop_init_scaffold(tmp_path: Path, cli, pattern: str) -> None:
    """list, plan and a real (mock-backend) run work; only the state file and run log change at L1."""
    repo = scaffold(tmp_path, pattern)
    listed = cli("list", "--json", cwd=repo)
    assert listed.returncode == 0, listed.stderr
    assert pattern in [p["id"] for p in json.loads(listed.stdout)["patterns"]]

    plan = json.loads(cli("plan", pattern, "--json", cwd=repo).stdout)
    state_file = plan["stateFile"]
    assert (repo / state_file).exists()

    run = cli("run", pattern, "--level", "L1", "--scenario", "report-only", cwd=repo)
    assert run.returncode == 0, run.stderr
    assert "report-only" in run.stdout or "triage decision: report" in run.stdout
    assert changed_files(repo) <= {state_file, "loop-run-log.md"}
    assert state_file in changed_files(repo) and "loop-run-log.md" in changed_files(repo)

    state = (repo / state_file).read_text()
    assert "Last run: 20" in state and "`#12`" in state
    log = (repo / "loop-run-log.md").read_text()
    tail = log.split("<!-- Loop appends below this line -->", 1)[1].strip().splitlines()
    entry = json.loads(tail[-1])
    assert list(entry)[:8] == ["run_id", "pattern", "duration_s", "items_found", "actions_taken", "escalations",
                               "tokens_estimate", "outcome"]
    assert entry["pattern"] == pattern and entry["outcome"] == "report-only" and entry["tokens_estimate"] == 4000


def test_daily_triage_scaffold_caps_from_loop_budget(tmp_path: Path, cli) -> None:
    """The loop-budget.md row (100k, 2 runs/day) and LOOP.md's L1/1d row reach the plan."""
    repo = scaffold(tmp_path, "daily-triage")
    plan = json.loads(cli("plan", "daily-triage", "--json", cwd=repo).stdout)
    assert plan["dailyTokenCap"] == 100_000 and plan["maxRunsPerDay"] == 2
    assert plan["level"] == "L1" and plan["levelSource"] == "LOOP.md"
    assert plan["cadence"] == "1d" and plan["cadenceSource"] == "LOOP.md"


def test_ci_sweeper_scaffold_acts_at_l2_in_a_worktree(tmp_path: Path, cli) -> None:
    """On a loop-init ci-sweeper scaffold, an L2 tick fixes in a worktree and proposes a branch."""
    repo = scaffold(tmp_path, "ci-sweeper")
    scen = tmp_path / "fix.yaml"
    scen.write_text("triage: {decision: act, tokens: 1000, items: [{id: CI-9, title: fix lint, files: [src/a.py]}]}\n"
                    "implementer: [{files: {src/a.py: \"x = 1\\n\"}, tokens: 2000}]\n"
                    "verifier: [{verdict: APPROVE, tokens: 1000}]\n")
    proc = cli("run", "ci-sweeper", "--level", "L2", "--scenario", str(scen), cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "committed: safe + allowlisted" in proc.stdout
    assert git(repo, "branch", "--list", "loop/*")
    ledger = json.loads((repo / "loop-ledger.json").read_text())
    assert ledger["attempts"][-1]["outcome"] == "success"
    assert changed_files(repo) <= {"ci-sweeper-state.md", "loop-run-log.md", "loop-ledger.json"}


def test_prompts_come_from_the_project_itself(tmp_path: Path) -> None:
    """Triage sees the scaffold's triage skill, AGENTS.md and constraints; the verifier its agent definition."""
    import asyncio

    from loop_runtime import BudgetBreaker, LoopEngine, MemoryStateWriter, MemoryWorkspace, MockBackend
    from loop_runtime.adapters.mock import load_scenario
    from loop_runtime.adapters.project import load_context
    from loop_runtime.app.runtime import load_project

    repo = scaffold(tmp_path, "daily-triage")
    project = load_project(repo)
    plan = project.plan("daily-triage", "L2")
    ws = MemoryWorkspace()
    backend = MockBackend(load_scenario("default"), memory=ws)
    engine = LoopEngine(plan, backend=backend, state=MemoryStateWriter(), budget=BudgetBreaker(100_000),
                        workspace=ws, context=load_context(repo))
    asyncio.run(engine.tick())
    triage, _, verifier = backend.calls
    skill = (repo / ".claude" / "skills" / "loop-triage" / "SKILL.md").read_text()
    assert skill.strip().splitlines()[-1] in triage.prompt
    assert (repo / "AGENTS.md").read_text().strip().splitlines()[0] in triage.system_prompt
    agent = (repo / ".claude" / "agents" / "loop-verifier.md").read_text()
    assert agent.strip().splitlines()[-1] in verifier.prompt
