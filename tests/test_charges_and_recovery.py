"""Charges are real and recovery tells the truth (issue 10 §7, §8).

A fail-closed charge is for an agent that actually ran; a backend that never started one
(missing or broken binary, no credentials, bad working directory) settles 0. A tick killed
after its L3 merge is recovered as ``fix-proposed`` with its commit and merge commit.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from datetime import datetime, UTC
from pathlib import Path
from types import SimpleNamespace

import pytest

from loop_runtime import BudgetBreaker, LoopEngine, MemoryStateWriter, build_plan
from loop_runtime.adapters.clock import ManualClock
from loop_runtime.adapters.mock import MemoryWorkspace
from loop_runtime.errors import AgentNotStarted, BackendError
from loop_runtime.adapters.project_files import load_registry
from loop_runtime.formats.registry import find_pattern
from loop_runtime.app.recovery import recovered_outcome
from tests.conftest import run_cli
from tests.support.gitrepo import git, make_repo
from tests.test_act_path import BUGGY, FIXED, TEST, scenario

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


class _Failing:
    """A backend whose every call raises ``error`` (the public fakes never fail this way)."""

    name = "failing"

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def run(self, request, *, stop=None, on_event=None):  # noqa: ANN001, ANN201
        raise self.error


def _tick_with(error: Exception) -> tuple[BudgetBreaker, MemoryStateWriter]:
    plan = build_plan(find_pattern(load_registry(Path("/nonexistent")), "daily-triage"), "L1")
    budget = BudgetBreaker(plan.daily_token_cap, day=T0.date())
    state = MemoryStateWriter()
    engine = LoopEngine(plan, backend=_Failing(error), state=state, budget=budget, clock=ManualClock(T0),
                        workspace=MemoryWorkspace())
    with pytest.raises(type(error)):
        asyncio.run(engine.tick())
    return budget, state


def test_an_agent_that_never_started_is_charged_nothing() -> None:
    """AgentNotStarted (configuration or spawn error) settles the reservation at 0: nothing ran."""
    budget, _ = _tick_with(AgentNotStarted("cannot start claude: No such file or directory"))
    st = budget.status(T0)
    assert (st.spent, st.reserved) == (0, 0)


def test_an_agent_that_failed_after_starting_is_charged_the_reservation() -> None:
    """Any other backend failure fails closed: the agent ran, its usage is unknown, the reservation is charged."""
    budget, _ = _tick_with(BackendError("claude exited with code 1 without a result"))
    st = budget.status(T0)
    assert st.spent > 0 and st.reserved == 0


def _fake_codex(tmp_path: Path, body: str) -> dict[str, str]:
    folder = tmp_path / "bin"
    folder.mkdir()
    exe = folder / "codex"
    exe.write_text(body)
    exe.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "OPENAI_API_KEY": "sk-test-not-real-0000",
            "CODEX_HOME": str(tmp_path / "codex-home")}


def _store(repo: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(repo / ".loop-runtime" / "runtime.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _entries(repo: Path) -> list[dict]:
    path = repo / "loop-run-log.md"
    text = path.read_text() if path.exists() else ""
    return [json.loads(ln) for ln in text.split("<!-- Loop appends below this line -->", 1)[-1].splitlines()
            if ln.startswith("{")]


def test_a_binary_that_cannot_be_executed_charges_nothing(tmp_path: Path) -> None:
    """A `codex` on PATH whose interpreter is missing never starts: exit 1, 0 tokens settled, none logged."""
    repo = make_repo(tmp_path / "repo", {"README.md": "hello\n"})
    env = _fake_codex(tmp_path, "#!/nonexistent/interpreter\n")
    proc = run_cli("run", "daily-triage", "--backend", "codex", cwd=repo, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cannot start" in proc.stderr and "Traceback" not in proc.stderr
    assert _store(repo, "select count(*), coalesce(sum(settled), -1) from reservations") == [(1, 0)]
    assert _store(repo, "select tokens from ticks") == [(0,)]
    assert all(e["tokens_estimate"] == 0 for e in _entries(repo))


def test_a_process_that_ran_and_died_without_usage_is_charged_its_reservation(tmp_path: Path) -> None:
    """A `codex` that starts and exits 3 with no usage: the full reservation is charged and logged."""
    repo = make_repo(tmp_path / "repo", {"README.md": "hello\n"})
    env = _fake_codex(tmp_path, "#!/bin/sh\necho 'boom' >&2\nexit 3\n")
    run_cli("run", "daily-triage", "--backend", "codex", cwd=repo, env=env)
    ((amount, settled),) = _store(repo, "select amount, settled from reservations where pattern != '*'")
    assert settled == amount > 0
    assert [e["tokens_estimate"] for e in _entries(repo)] in ([amount], [])
    assert _store(repo, "select tokens from ticks") == [(amount,)]


# --------------------------------------------------------------------------- recovery


def _l3_project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {
        "calc.py": BUGGY, "tests/test_calc.py": TEST, "conftest.py": "",
        "gate.yaml": "version: 1\ndenylist: ['**/.env']\nautoMergeAllowlist: ['calc.py']\n",
        "loop-runtime.toml": f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"\n',
    })


@pytest.mark.parametrize("phase", ["merged", "commit"])
def test_a_tick_killed_after_its_l3_merge_is_recovered_as_merged(tmp_path: Path, phase: str) -> None:
    """kill -9 right after the merge: the next run logs the crashed tick as fix-proposed with its
    commit and the merge commit now on main, not no-op."""
    repo = _l3_project(tmp_path)
    scen = scenario(tmp_path, [{"files": {"calc.py": FIXED}}])
    crashed = run_cli("run", "ci-sweeper", "--level", "L3", "--scenario", scen, cwd=repo,
                      env={"LOOP_RUNTIME_FAULT_AT": phase})
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    main = git(repo, "rev-parse", "main")
    assert git(repo, "show", "main:calc.py") + "\n" == FIXED  # the merge happened before the kill

    again = run_cli("run", "ci-sweeper", "--level", "L3", "--scenario", "noop", cwd=repo)
    assert again.returncode == 0, again.stdout + again.stderr
    first = _entries(repo)[0]
    assert first["outcome"] == "fix-proposed"
    assert first["merge"] == main and git(repo, "merge-base", "--is-ancestor", first["commit"], "main") == ""
    assert first["branch"].startswith("loop/") and "recovered after crash" in first["note"]
    assert first["tokens_estimate"] == 5000
    assert _store(repo, "select status, outcome from ticks order by started_at")[0] == ("crashed", "fix-proposed")


def _phase(name: str, **data: object) -> SimpleNamespace:
    return SimpleNamespace(phase=name, data=data)


def test_recovery_asks_git_when_the_kill_fell_between_merge_and_journal() -> None:
    """Only `phase:committed` on record, but git shows the commit on the base branch → merged."""
    phases = [_phase("workspace", attempt=1, run_id="r", path="/x", branch="loop/r"),
              _phase("phase:implementing", attempt=1, item="CI-1"), _phase("phase:committed", attempt=1, commit="abc")]
    done = recovered_outcome(phases, merged_into=lambda sha: "m3rg3" if sha == "abc" else None)
    assert (done.outcome, done.extras["commit"], done.extras["merge"]) == ("fix-proposed", "abc", "m3rg3")
    not_merged = recovered_outcome(phases, merged_into=lambda sha: None)
    assert not_merged.outcome == "fix-proposed" and "merge" not in not_merged.extras


def test_recovery_of_an_escalation_and_of_nothing() -> None:
    """An escalation on record is recovered as escalated; a tick with nothing durable as no-op crashed."""
    esc = recovered_outcome([_phase("escalation", id="esc-1", item="CI-1", reason="verifier", title="t")])
    assert (esc.outcome, esc.escalations, esc.extras["escalation"]) == ("escalated", 1, "esc-1")
    nothing = recovered_outcome([_phase("phase:triaging"), _phase("agent:triage", usage={})])
    assert (nothing.outcome, nothing.extras) == ("no-op", {"note": "crashed"})
