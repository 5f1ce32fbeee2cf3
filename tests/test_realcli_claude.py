"""ClaudeCliBackend driving the REAL Claude Code CLI offline, against the local model stand-in.

The CLI is the one bundled in the claude-agent-sdk wheel. ``ANTHROPIC_BASE_URL`` points it
at ``tests/fakes/model_server.py``, whose scripted turns make the real CLI run its real
Read/Write/Edit tools in the worktree. Each run gets its own HOME. These tests skip when
the bundled CLI is absent, except under ``CI=true`` where they must run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from loop_runtime.adapters.agents import ClaudeCliBackend
from loop_runtime.adapters.agents.claude_cli import _bundled_claude
from loop_runtime.errors import BackendError
from loop_runtime.ports import AgentRequest, AgentResult, Permission, Usage
from tests.fakes.fake_cli import live_processes_in
from tests.fakes.model_server import ModelServer

Turns = list[dict[str, Any]]  # a model-server script

pytestmark = [pytest.mark.realcli, pytest.mark.timeout(120)]

U = {"input_tokens": 1000, "output_tokens": 200, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 500}


@pytest.fixture(scope="module")
def claude_bin() -> str:
    path = _bundled_claude()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the claude CLI bundled in claude-agent-sdk is required under CI=true")
        pytest.skip("claude-agent-sdk's bundled CLI not installed")
    return path


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "notes.txt").write_text("status: broken\n")
    return wt.resolve()


def run_real(claude_bin: str, server: ModelServer, worktree: Path, tmp_path: Path, permission: Permission,
             **kw: Any) -> AgentResult:
    """One real `claude -p` run through our backend with an isolated HOME and the stand-in as API."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    backend = ClaudeCliBackend(binary=claude_bin, env={"ANTHROPIC_API_KEY": "test",
                                                       "ANTHROPIC_BASE_URL": server.base_url})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
    request = AgentRequest(role="implementer", prompt="update notes.txt", cwd=str(worktree), permission=permission,
                           token_limit=kw.pop("token_limit", 1_000_000), timeout_s=kw.pop("timeout_s", 60.0),
                           max_turns=10, env=env, transcript_dir=str(tmp_path / ".loop-runtime" / "transcripts"),
                           **kw)
    return asyncio.run(backend.run(request))


def result_line(res: AgentResult) -> dict[str, Any]:
    lines = [json.loads(line) for line in Path(res.transcript or "").read_text().splitlines() if line.strip()]
    return next(e for e in lines if e.get("type") == "result")


def tool_results(server: ModelServer) -> list[dict[str, Any]]:
    """The tool_result blocks the CLI sent back to the model, in order."""
    last = server.bodies("/v1/messages")[-1]
    return [b for m in last["messages"] if isinstance(m.get("content"), list)
            for b in m["content"] if b.get("type") == "tool_result"]


def test_real_cli_reads_and_edits_in_the_worktree_with_exact_usage(claude_bin: str, worktree: Path,
                                                                   tmp_path: Path) -> None:
    """EDIT_WORKTREE: Read, Edit and Write really change files; usage equals the script's sum exactly."""
    target = worktree / "notes.txt"
    turns: Turns = [{"tool_use": {"name": "Read", "input": {"file_path": str(target)}}, "usage": U},
             {"tool_use": {"name": "Edit", "input": {"file_path": str(target), "old_string": "broken",
                                                     "new_string": "fixed"}}, "usage": U},
             {"tool_use": {"name": "Write", "input": {"file_path": str(worktree / "src" / "new.py"),
                                                      "content": "X = 1\n"}}, "usage": U},
             {"text": "updated the notes", "usage": U}]
    with ModelServer(turns) as server:
        res = run_real(claude_bin, server, worktree, tmp_path, Permission.EDIT_WORKTREE)
        assert server.exhausted == 0
    assert res.status == "ok", res.error
    assert target.read_text() == "status: fixed\n"
    assert (worktree / "src" / "new.py").read_text() == "X = 1\n"
    assert res.usage == Usage(input=4000, output=800, cache_write=1200, cache_read=2000,
                              cost_usd=res.usage.cost_usd)
    assert res.text == "updated the notes" and res.turns == 4
    assert set(res.files_changed) == {"notes.txt", "src/new.py"}
    assert result_line(res)["permission_denials"] == []


def test_real_cli_denies_write_at_read_only(claude_bin: str, worktree: Path, tmp_path: Path) -> None:
    """READ_ONLY: the CLI itself refuses Write (disabled for the session, not even offered); file unchanged."""
    target = worktree / "notes.txt"
    turns: Turns = [{"tool_use": {"name": "Read", "input": {"file_path": str(target)}}, "usage": U},
             {"tool_use": {"name": "Write", "input": {"file_path": str(target), "content": "pwned\n"}}, "usage": U},
             {"tool_use": {"name": "Edit", "input": {"file_path": str(target), "old_string": "broken",
                                                     "new_string": "pwned"}}, "usage": U},
             {"text": "could not write", "usage": U}]
    with ModelServer(turns) as server:
        res = run_real(claude_bin, server, worktree, tmp_path, Permission.READ_ONLY)
        results = tool_results(server)
        offered = {t["name"] for t in server.bodies("/v1/messages")[0]["tools"]}
    assert target.read_text() == "status: broken\n"
    assert results[0].get("is_error") is not True and "status: broken" in str(results[0]["content"])
    assert results[1]["is_error"] is True and "Write is disabled" in str(results[1]["content"])
    assert results[2]["is_error"] is True and "Edit is disabled" in str(results[2]["content"])
    assert not {"Write", "Edit", "Bash", "NotebookEdit"} & offered
    assert res.status == "ok" and res.usage.total == 4 * 2000 and res.files_changed == ()


def test_real_cli_read_rule_confines_grep_and_glob(claude_bin: str, worktree: Path, tmp_path: Path) -> None:
    """READ_ONLY: Read, Grep and Glob work inside the worktree and are denied outside it (dontAsk)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("status: secret\n")
    calls = [("Grep", {"pattern": "status", "output_mode": "content"}),
             ("Grep", {"pattern": "status", "path": str(outside), "output_mode": "content"}),
             ("Glob", {"pattern": "*", "path": str(outside)}),
             ("Read", {"file_path": str(outside / "secret.txt")})]
    turns: Turns = [{"tool_use": {"name": n, "input": i}, "usage": U} for n, i in calls] + [{"text": "x", "usage": U}]
    with ModelServer(turns) as server:
        res = run_real(claude_bin, server, worktree, tmp_path, Permission.READ_ONLY)
        results = tool_results(server)
    assert "notes.txt:1:status: broken" in str(results[0]["content"])
    assert all(r["is_error"] is True and "secret" not in str(r["content"]) for r in results[1:])
    assert [d["tool_name"] for d in result_line(res)["permission_denials"]] == ["Grep", "Glob", "Read"]


def test_real_cli_denies_write_outside_the_worktree_at_edit_level(claude_bin: str, worktree: Path,
                                                                  tmp_path: Path) -> None:
    """EDIT_WORKTREE: Writes outside, through an outward symlink or into .git/hooks are denied."""
    subprocess.run(["git", "init", "-q", str(worktree)], check=True)
    hook = worktree / ".git" / "hooks" / "pre-commit"
    outside = tmp_path / "outside"
    outside.mkdir()
    (worktree / "link").symlink_to(outside)
    turns: Turns = [{"tool_use": {"name": "Write", "input": {"file_path": str(hook), "content": "#!/bin/sh\n"}},
                     "usage": U},
             {"tool_use": {"name": "Write", "input": {"file_path": str(tmp_path / "escaped.txt"),
                                                      "content": "escaped\n"}}, "usage": U},
             {"tool_use": {"name": "Write", "input": {"file_path": str(worktree / "link" / "escaped.txt"),
                                                      "content": "escaped\n"}}, "usage": U},
             {"tool_use": {"name": "Write", "input": {"file_path": str(worktree / "inside.txt"),
                                                      "content": "ok\n"}}, "usage": U},
             {"text": "done", "usage": U}]
    with ModelServer(turns) as server:
        res = run_real(claude_bin, server, worktree, tmp_path, Permission.EDIT_WORKTREE)
    assert not (tmp_path / "escaped.txt").exists() and list(outside.iterdir()) == []
    assert (worktree / "inside.txt").read_text() == "ok\n"
    denials = result_line(res)["permission_denials"]
    assert [d["tool_input"]["file_path"] for d in denials] == [str(hook), str(tmp_path / "escaped.txt"),
                                                               str(worktree / "link" / "escaped.txt")]
    assert not hook.exists()
    assert res.files_changed == ("inside.txt",)


def test_real_cli_runaway_is_halted_at_its_reservation(claude_bin: str, worktree: Path, tmp_path: Path) -> None:
    """A real run that keeps calling tools is killed once the next turn would pass its reservation."""
    turn = {"tool_use": {"name": "Glob", "input": {"pattern": "*.txt"}}, "usage": U}
    with ModelServer([turn] * 40) as server:
        res = run_real(claude_bin, server, worktree, tmp_path, Permission.READ_ONLY, token_limit=7000)
        served = server.served
    assert (res.status, res.stop_reason) == ("halted", "budget")
    # live signal per message: input + cache write + cache read + placeholder output (1)
    assert 7000 - 1801 < res.usage.total <= 7000
    assert served <= 5


def test_real_cli_rejected_key_is_a_credentials_error(claude_bin: str, worktree: Path, tmp_path: Path) -> None:
    """A 401 from the API makes the CLI retry for minutes; we stop at once with a one-line error."""
    with ModelServer([{"status": 401, "message": "invalid x-api-key", "repeat": 20}]) as server:
        with pytest.raises(BackendError, match="set ANTHROPIC_API_KEY"):
            run_real(claude_bin, server, worktree, tmp_path, Permission.READ_ONLY, timeout_s=20)
        assert len(server.requests) <= 2


def test_real_cli_timeout_leaves_no_process(claude_bin: str, worktree: Path, tmp_path: Path) -> None:
    """A model that never answers: the run halts at the deadline and the CLI's group is gone."""
    with ModelServer([{"text": "late", "delay": 30}]) as server:
        res = run_real(claude_bin, server, worktree, tmp_path, Permission.READ_ONLY, timeout_s=3,
                       token_limit=5000)
    assert (res.status, res.stop_reason, res.usage.total) == ("halted", "timeout", 5000)
    init = json.loads(Path(res.transcript or "").read_text().splitlines()[0])
    assert init["type"] == "system"
    assert live_processes_in(worktree) == []



def test_real_cli_project_settings_cannot_re_enable_bash(claude_bin: str, worktree: Path, tmp_path: Path) -> None:
    """A repo's own .claude/settings.json allowing Bash does not give the implementer a shell: our
    --disallowedTools wins over project allow rules (checked with the real CLI)."""
    marker = tmp_path / "pwned.txt"
    (worktree / ".claude").mkdir()
    (worktree / ".claude" / "settings.json").write_text(json.dumps({"permissions": {"allow": ["Bash", "Bash(*)"]}}))
    turns: Turns = [{"tool_use": {"name": "Bash", "input": {"command": f"touch {marker}"}}, "usage": U},
                    {"text": "tried", "usage": U}]
    with ModelServer(turns) as server:
        res = run_real(claude_bin, server, worktree, tmp_path, Permission.EDIT_WORKTREE)
        offered = {t["name"] for t in server.bodies("/v1/messages")[0]["tools"]}
    assert not marker.exists()
    assert "Bash" not in offered
    assert res.status == "ok"
