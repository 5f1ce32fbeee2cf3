"""The REAL Claude Code and Codex CLIs through the metering proxy (issue 15), against local stand-ins.

What only the network can prove: each call is billed exactly what the stand-in reported; a
runaway agent whose own stdout hides its spend (Claude prints ``output_tokens: 1`` until a
message ends; Codex prints usage only when its turn completes) is refused at the network on
the call after its reservation is spent, and its process group is gone; a dead upstream, a
401 and a 500 each end the run with a clear error, well inside the agent timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from loop_runtime.adapters.agents import ClaudeCliBackend, CodexCliBackend
from loop_runtime.errors import BackendError
from loop_runtime.ports import AgentRequest, AgentResult, Permission, Usage
from tests.fakes.fake_cli import live_processes_in
from tests.fakes.model_server import ModelServer
from tests.support.npm_tools import bin_path, codex_home_dir
from tests.test_realcli_claude import claude_bin, worktree  # noqa: F401 - fixtures

pytestmark = [pytest.mark.realcli, pytest.mark.timeout(180)]

TIMEOUT_S = 90.0


def request(worktree: Path, tmp_path: Path, token_limit: int) -> AgentRequest:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
    return AgentRequest(role="implementer", prompt="look at notes.txt", cwd=str(worktree),
                        permission=Permission.READ_ONLY, token_limit=token_limit, timeout_s=TIMEOUT_S,
                        max_turns=30, env=env, transcript_dir=str(tmp_path / "transcripts"))


def proxy_log(tmp_path: Path) -> list[dict[str, Any]]:
    (path,) = (tmp_path / "transcripts").glob("proxy-implementer-*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------- claude


def run_claude(claude_bin: str, upstream: str, worktree: Path, tmp_path: Path, token_limit: int) -> AgentResult:
    backend = ClaudeCliBackend(binary=claude_bin, env={"ANTHROPIC_API_KEY": "sk-ant-metering-test-000000",
                                                       "ANTHROPIC_BASE_URL": upstream})
    return asyncio.run(backend.run(request(worktree, tmp_path, token_limit)))


def test_claude_per_call_usage_is_exactly_what_the_stand_in_reported(claude_bin: str, worktree: Path,
                                                                     tmp_path: Path) -> None:
    u1 = {"input_tokens": 1234, "output_tokens": 56, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 890}
    u2 = {"input_tokens": 11, "output_tokens": 2222, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3}
    turns = [{"tool_use": {"name": "Read", "input": {"file_path": str(worktree / "notes.txt")}}, "usage": u1},
             {"text": "read it", "usage": u2}]
    with ModelServer(turns) as server:
        res = run_claude(claude_bin, server.base_url, worktree, tmp_path, 1_000_000)
        assert server.exhausted == 0
    assert res.status == "ok", res.error
    calls = [e for e in proxy_log(tmp_path) if e["type"] == "proxy.call"]
    assert [(c["usage"]["input"], c["usage"]["output"], c["usage"]["cache_write"], c["usage"]["cache_read"])
            for c in calls] == [(1234, 56, 7, 890), (11, 2222, 0, 3)]
    assert all(c["exact"] for c in calls)
    assert res.usage == Usage(input=1245, output=2278, cache_write=7, cache_read=893, cost_usd=res.usage.cost_usd)
    assert not [e for e in proxy_log(tmp_path) if e["type"] == "proxy.disagreement"]  # the CLI agrees


def test_claude_runaway_is_refused_at_the_network_and_its_group_killed(claude_bin: str, worktree: Path,
                                                                        tmp_path: Path) -> None:
    """Each call costs 3,010 tokens but the CLI's stream shows ~11 until a message ends: only the proxy
    knows. Reservation 5,000: calls 1 and 2 go through (6,020 spent), call 3 is refused and never
    reaches the upstream; the run halts on budget, billed exactly the two calls."""
    usage = {"input_tokens": 10, "output_tokens": 3000}
    turns = [{"tool_use": {"name": "Read", "input": {"file_path": str(worktree / "notes.txt")}}, "usage": usage,
              "repeat": 20}]
    with ModelServer(turns) as server:
        res = run_claude(claude_bin, server.base_url, worktree, tmp_path, 5_000)
        served = len(server.bodies("/v1/messages"))
    assert (res.status, res.stop_reason) == ("halted", "budget"), res.error
    assert served == 2
    assert res.usage.total == 6_020 and (res.usage.input, res.usage.output) == (20, 6000)
    assert "refused the next model call" in (res.error or "")
    assert [e["type"] for e in proxy_log(tmp_path)][:3] == ["proxy.call", "proxy.call", "proxy.refused"]
    assert live_processes_in(worktree) == []


def test_claude_dead_upstream_is_a_clear_error_long_before_the_timeout(claude_bin: str, worktree: Path,
                                                                       tmp_path: Path) -> None:
    with ModelServer() as server:
        dead = server.base_url
    res = run_claude(claude_bin, dead, worktree, tmp_path, 10_000)
    assert res.status == "error" and res.stop_reason is None
    assert (res.error or "").startswith("cannot reach the model API at 127.0.0.1:")
    assert res.usage.total == 0 and live_processes_in(worktree) == []


def test_claude_rejected_key_is_a_clear_error(claude_bin: str, worktree: Path, tmp_path: Path) -> None:
    with ModelServer([{"status": 401, "repeat": 20}]) as server, pytest.raises(BackendError, match="rejected"):
        run_claude(claude_bin, server.base_url, worktree, tmp_path, 10_000)
    assert live_processes_in(worktree) == []


def test_claude_server_errors_end_the_run_instead_of_minutes_of_retries(claude_bin: str, worktree: Path,
                                                                        tmp_path: Path) -> None:
    with ModelServer([{"status": 500, "repeat": 50}]) as server:
        res = run_claude(claude_bin, server.base_url, worktree, tmp_path, 10_000)
        served = len(server.bodies("/v1/messages"))
    assert res.status == "error" and res.stop_reason is None, res
    assert "kept failing (HTTP 500" in (res.error or "") and served <= 5
    assert res.usage.total == 0 and live_processes_in(worktree) == []


# --------------------------------------------------------------------------- codex


@pytest.fixture(scope="module")
def codex_bin() -> str:
    return str(bin_path("codex"))


def run_codex(codex_bin: str, upstream: str, worktree: Path, tmp_path: Path, token_limit: int) -> AgentResult:
    codex_home = codex_home_dir()
    (codex_home / "config.toml").write_text(
        'model_provider = "local"\nmodel = "gpt-test"\n\n[model_providers.local]\nname = "local"\n'
        f'base_url = "{upstream}/v1"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
        "request_max_retries = 0\nstream_max_retries = 1\n")
    backend = CodexCliBackend(binary=codex_bin, env={"OPENAI_API_KEY": "sk-metering-test-0000000000"},
                              codex_home=str(codex_home))
    return asyncio.run(backend.run(request(worktree, tmp_path, token_limit)))


def ru(inp: int, out: int) -> dict[str, Any]:
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": out}


def test_codex_runaway_is_refused_at_the_network_and_its_group_killed(codex_bin: str, worktree: Path,
                                                                       tmp_path: Path) -> None:
    """Codex reports usage only when its turn completes; a turn of endless tool calls is cut by the proxy."""
    turns = [{"tool_use": {"name": "exec_command", "input": {"cmd": "cat notes.txt"}}, "usage": ru(1000, 2000),
              "repeat": 20}]
    with ModelServer(turns) as server:
        res = run_codex(codex_bin, server.base_url, worktree, tmp_path, 5_000)
        served = len(server.bodies("/v1/responses"))
    assert (res.status, res.stop_reason) == ("halted", "budget"), res.error
    assert served == 2 and res.usage == Usage(input=2000, output=4000)
    assert live_processes_in(worktree) == []


def test_codex_dead_upstream_is_a_clear_error_not_endless_reconnecting(codex_bin: str, worktree: Path,
                                                                       tmp_path: Path) -> None:
    with ModelServer() as server:
        dead = server.base_url
    res = run_codex(codex_bin, dead, worktree, tmp_path, 10_000)
    assert res.status == "error" and res.stop_reason is None
    assert (res.error or "").startswith("cannot reach the model API at 127.0.0.1:")
    assert res.usage.total == 0 and live_processes_in(worktree) == []


def test_codex_rejected_key_is_a_clear_error(codex_bin: str, worktree: Path, tmp_path: Path) -> None:
    with ModelServer([{"status": 401, "repeat": 20}]) as server:
        res = run_codex(codex_bin, server.base_url, worktree, tmp_path, 10_000)
    assert res.status == "error" and "rejected the credentials (HTTP 401)" in (res.error or "")
    assert res.usage.total == 0 and live_processes_in(worktree) == []
