"""Agents see MCP servers only when the project lists them for their level (issue 15, section 4).

``[mcp] l1/l2/l3`` in loop-runtime.toml names servers from the project's ``.mcp.json``; the
engine hands the servers of the tick's *effective* level to the backend; the Claude backend
always runs ``--strict-mcp-config`` with a generated config holding only those. The real
Claude Code CLI (bundled in claude-agent-sdk) is driven offline against the model stand-in
with a tiny stdio MCP server built on the SDK (tests/fakes/mcp_echo_server.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import pytest

from loop_runtime import BudgetBreaker, LoopEngine, MemoryStateWriter, MockBackend, build_plan
from loop_runtime.adapters.agents.claude_cli import ClaudeCliBackend, permission_flags
from loop_runtime.adapters.clock import ManualClock
from loop_runtime.adapters.mock import MemoryWorkspace, load_scenario
from loop_runtime.adapters.project_files import load_project_config, load_registry
from loop_runtime.errors import ConfigError
from loop_runtime.formats.mcp_json import parse_mcp_json
from loop_runtime.formats.project_config import parse_project_config
from loop_runtime.formats.registry import find_pattern
from loop_runtime.ports import AgentRequest, AgentResult, Permission
from tests.conftest import run_cli
from tests.fakes.model_server import ModelServer
from tests.test_realcli_claude import claude_bin  # noqa: F401 - fixture

ECHO = Path(__file__).parent / "fakes" / "mcp_echo_server.py"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
U = {"input_tokens": 100, "output_tokens": 20}


def mcp_project(root: Path, toml: str, log: Path | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    args = [str(ECHO)] + ([str(log)] if log else [])
    (root / ".mcp.json").write_text(json.dumps({"mcpServers": {
        "echo": {"command": sys.executable, "args": args},
        "other": {"command": sys.executable, "args": [str(ECHO)]}}}))
    (root / "loop-runtime.toml").write_text(toml)
    return root


# ---------------------------------------------------------------------------- configuration


def test_servers_are_listed_per_level_and_none_by_default(tmp_path: Path) -> None:
    cfg = load_project_config(mcp_project(tmp_path / "p", '[mcp]\nl2 = ["echo"]\nl3 = ["echo", "other"]\n'), env={})
    assert dict(cfg.mcp_for("L1")) == {} and dict(cfg.mcp_for("L0")) == {}
    assert list(cfg.mcp_for("L2")) == ["echo"] and list(cfg.mcp_for("L3")) == ["echo", "other"]
    assert cfg.mcp_for("L2")["echo"]["command"] == sys.executable
    assert dict(load_project_config(mcp_project(tmp_path / "q", ""), env={}).mcp_for("L3")) == {}


@pytest.mark.parametrize(("toml", "needle"), [
    ('[mcp]\nl2 = ["nope"]\n', "mcp.l2 invalid: 'nope' is not a server in .mcp.json (defined: echo, other)"),
    ('[mcp]\nl4 = ["echo"]\n', "unknown key 'mcp.l4' (valid: l1, l2, l3)"),
    ('[mcp]\nL2 = ["echo"]\n', "unknown key 'mcp.L2'"),
    ('[mcp]\nl2 = "echo"\n', "mcp.l2 must be a list of server names"),
    ('[mcp]\nl2 = ["../x"]\n', "mcp.l2 invalid: '../x'"),
    ('mcp = ["echo"]\n', "mcp must be a table"),
])
def test_bad_mcp_listing_is_one_line_naming_file_field_value(tmp_path: Path, toml: str, needle: str) -> None:
    root = mcp_project(tmp_path / "p", toml)
    with pytest.raises(ConfigError) as err:
        load_project_config(root, env={})
    assert needle in str(err.value) and "loop-runtime.toml" in str(err.value) and "\n" not in str(err.value)
    proc = run_cli("status", "--root", str(root))
    assert proc.returncode == 1 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_listing_without_an_mcp_json_and_a_broken_mcp_json_are_errors(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "loop-runtime.toml").write_text('[mcp]\nl1 = ["echo"]\n')
    with pytest.raises(ConfigError, match=r"mcp.l1 names 'echo' but there is no .mcp.json"):
        load_project_config(root, env={})
    for text, needle in (("{", "JSON syntax error"), ('{"mcpServers": []}', "mcpServers must be an object"),
                         ('{"mcpServers": {"a b": {"command": "x"}}}', "server name invalid: 'a b'"),
                         ('{"mcpServers": {"x": {"args": []}}}', "mcpServers.x.command"),
                         ('{"mcpServers": {"x": {"type": "ws", "url": "u"}}}', "mcpServers.x.type")):
        with pytest.raises(ConfigError, match=needle):
            parse_mcp_json(text)
    assert parse_project_config("").mcp == {}


# ---------------------------------------------------------------------------- engine → request




def engine_at(level: str, **kw: Any) -> tuple[LoopEngine, MockBackend]:
    plan = build_plan(find_pattern(load_registry(Path("/nonexistent")), "daily-triage"), level)
    ws = MemoryWorkspace()
    backend = MockBackend(load_scenario("default"), memory=ws)
    budget = BudgetBreaker(kw.pop("cap", plan.daily_token_cap), spent=kw.pop("spent", 0), day=T0.date())
    servers = {"L1": {"one": {"command": "x"}}, "L2": {"echo": {"command": "y"}}}
    return LoopEngine(plan, backend=backend, state=MemoryStateWriter({}), budget=budget, clock=ManualClock(T0),
                      workspace=ws, mcp_servers=servers, **kw), backend


@pytest.mark.parametrize(("level", "spent", "expected"), [("L1", 0, ["one"]), ("L2", 0, ["echo"]),
                                                          ("L2", 90_000, ["one"]), ("L3", 0, [])])
def test_each_agent_call_gets_the_servers_of_the_effective_level(level: str, spent: int, expected: list[str]) -> None:
    """L2 capped to L1 by the budget (≥80%) gets L1's servers, not L2's; an unlisted level gets none."""
    engine, backend = engine_at(level, cap=100_000, spent=spent)
    asyncio.run(engine.tick())
    assert backend.calls and all(list(c.mcp_servers) == expected for c in backend.calls)


def test_claude_flags_allow_only_listed_servers() -> None:
    assert "mcp__" not in " ".join(permission_flags(Permission.READ_ONLY))
    flags = permission_flags(Permission.EDIT_WORKTREE, ["echo"])
    assert flags[flags.index("--allowedTools") + 1] == "Read(./**),Edit(./**),mcp__echo"
    backend = ClaudeCliBackend.__new__(ClaudeCliBackend)
    backend.binary, backend.model = "claude", None
    argv = backend.argv(AgentRequest(role="triage", prompt="p", cwd=".", permission=Permission.READ_ONLY,
                                     token_limit=1), "/t/mcp.json")
    assert argv[argv.index("--mcp-config") + 1] == "/t/mcp.json" and "--strict-mcp-config" in argv
    assert argv[-2:] == ["--", "p"]


# ---------------------------------------------------------------------------- the real Claude CLI


def real_claude(claude_bin: str, root: Path, tmp_path: Path, level: str) -> tuple[AgentResult, ModelServer, Path]:
    """One real `claude -p` run in the project whose model calls mcp__echo__echo, with the level's servers."""
    turns = [{"tool_use": {"name": "mcp__echo__echo", "input": {"text": "hello from the agent"}}, "usage": U},
             {"text": "done", "usage": U}]
    home = tmp_path / f"home-{level}"
    home.mkdir()
    cfg = load_project_config(root, env={})
    transcripts = tmp_path / f"transcripts-{level}"
    with ModelServer(turns) as server:
        backend = ClaudeCliBackend(binary=claude_bin, env={"ANTHROPIC_API_KEY": "test",
                                                           "ANTHROPIC_BASE_URL": server.base_url})
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
        request = AgentRequest(role="implementer", prompt="call the echo tool", cwd=str(root),
                               permission=Permission.EDIT_WORKTREE if level >= "L2" else Permission.READ_ONLY,
                               token_limit=1_000_000, timeout_s=90, max_turns=5, env=env,
                               transcript_dir=str(transcripts), mcp_servers=dict(cfg.mcp_for(level)))
        result = asyncio.run(backend.run(request))
    return result, server, transcripts


def events(res: AgentResult) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(res.transcript or "").read_text().splitlines() if line.strip()]


@pytest.mark.realcli
@pytest.mark.timeout(240)
def test_real_claude_calls_the_listed_mcp_tool_at_l2_and_gets_no_server_at_l1(claude_bin: str,
                                                                               tmp_path: Path) -> None:
    log = tmp_path / "echo.log"
    root = mcp_project(tmp_path / "proj", '[mcp]\nl2 = ["echo"]\n', log)

    res, server, transcripts = real_claude(claude_bin, root, tmp_path, "L2")
    assert res.status == "ok", res.error
    ev = events(res)
    init = next(e for e in ev if e.get("type") == "system" and e.get("subtype") == "init")
    assert [(s["name"], s["status"]) for s in init["mcp_servers"]] == [("echo", "connected")]
    results = [b for e in ev if e.get("type") == "user" for b in e["message"]["content"]
               if isinstance(b, dict) and b.get("type") == "tool_result"]
    assert "echo: hello from the agent" in str(results[0]["content"]) and not results[0].get("is_error")
    assert any(b.get("name") == "mcp__echo__echo" for e in ev if e.get("type") == "assistant"
               for b in e["message"]["content"])
    assert log.read_text() == "hello from the agent\n"  # the server really ran the tool
    assert "mcp__echo__echo" in json.dumps(server.bodies("/v1/messages")[0])  # offered to the model
    assert not list(transcripts.glob("mcp-*.json"))  # the generated config is not left behind

    log.unlink()
    res1, server1, _ = real_claude(claude_bin, root, tmp_path, "L1")
    ev1 = events(res1)
    init1 = next(e for e in ev1 if e.get("type") == "system" and e.get("subtype") == "init")
    assert init1["mcp_servers"] == []  # not even the project's .mcp.json, which is right there in the cwd
    assert "mcp__echo__echo" not in json.dumps(server1.bodies("/v1/messages")[0])  # never offered
    results1 = [b for e in ev1 if e.get("type") == "user" for b in e["message"]["content"]
                if isinstance(b, dict) and b.get("type") == "tool_result"]
    assert results1[0]["is_error"] is True and "No such tool available" in str(results1[0]["content"])
    assert not log.exists()


# ---------------------------------------------------------------------------- the real Codex CLI


@pytest.mark.realcli
@pytest.mark.timeout(120)
def test_real_codex_config_holds_exactly_the_listed_servers(tmp_path: Path) -> None:
    """The overrides the codex backend passes, as the real CLI resolves them (`codex mcp list --json`):
    the listed server is added and enabled, the user's own server is switched off; with none listed, none is on."""
    import subprocess

    from loop_runtime.adapters.agents.codex_cli import mcp_overrides, user_mcp_servers
    from tests.support.npm_tools import bin_path, codex_home_dir

    codex = str(bin_path("codex"))
    home = codex_home_dir()
    (home / "config.toml").write_text(f'[mcp_servers.usersrv]\ncommand = "{sys.executable}"\nargs = ["{ECHO}"]\n')
    root = mcp_project(tmp_path / "proj", '[mcp]\nl2 = ["echo"]\n')
    cfg = load_project_config(root, env={})

    def enabled(level: str) -> dict[str, bool]:
        flags = mcp_overrides(cfg.mcp_for(level), user_mcp_servers(str(home)))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "CODEX_HOME": str(home)}
        proc = subprocess.run([codex, *flags, "mcp", "list", "--json"], capture_output=True, text=True, env=env,
                              timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        listed = json.loads(proc.stdout[proc.stdout.index("["):])
        return {s["name"]: s["enabled"] for s in listed}

    assert enabled("L2") == {"echo": True, "usersrv": False}
    assert enabled("L1") == {"usersrv": False}
    assert user_mcp_servers(str(tmp_path / "nowhere")) == ()
