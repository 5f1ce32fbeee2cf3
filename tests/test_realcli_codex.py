"""CodexCliBackend driving the REAL Codex CLI (npm @openai/codex) offline, against the local stand-in.

``$CODEX_HOME/config.toml`` declares a custom provider whose ``base_url`` is
``tests/fakes/model_server.py`` speaking the OpenAI Responses stream, so the real
``codex exec`` runs real shell commands in the worktree under its own sandbox. The binary
comes from ``tests/support/npm_tools.py`` (skips without npm, fails under ``CI=true``).
Codex 0.169 offers the stand-in model (unknown metadata) ``exec_command`` but no
``apply_patch`` tool; codex intercepts an ``apply_patch`` heredoc sent through
``exec_command`` and applies it itself (reported as ``file_change`` items), so both
patch edits and plain shell edits are exercised.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from loop_runtime.adapters.agents import CodexCliBackend
from loop_runtime.ports import AgentRequest, AgentResult, Permission, Usage
from tests.fakes.fake_cli import live_processes_in
from tests.fakes.model_server import ModelServer
from tests.support.npm_tools import bin_path, codex_home_dir
from tests.test_realcli_claude import worktree  # noqa: F401 - fixture

Turns = list[dict[str, Any]]  # a model-server script

pytestmark = [pytest.mark.realcli, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def codex_bin() -> str:
    return str(bin_path("codex"))


def run_real(codex_bin: str, server: ModelServer, worktree: Path, tmp_path: Path, permission: Permission,
             **kw: Any) -> AgentResult:
    """One real `codex exec` through our backend, with a private CODEX_HOME pointing at the stand-in."""
    codex_home = codex_home_dir()
    (codex_home / "config.toml").write_text(
        'model_provider = "local"\nmodel = "gpt-test"\n\n[model_providers.local]\nname = "local"\n'
        f'base_url = "{server.base_url}/v1"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
        "request_max_retries = 0\nstream_max_retries = 1\n")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    backend = CodexCliBackend(binary=codex_bin, env={"OPENAI_API_KEY": "test"}, codex_home=str(codex_home))
    request = AgentRequest(role="implementer", prompt="update notes.txt", cwd=str(worktree), permission=permission,
                           token_limit=kw.pop("token_limit", 1_000_000), timeout_s=kw.pop("timeout_s", 60.0),
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)},
                           transcript_dir=str(tmp_path / ".loop-runtime" / "transcripts"), **kw)
    return asyncio.run(backend.run(request))


def responses_usage(inp: int, cached: int, out: int) -> dict[str, Any]:
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": out}


def function_outputs(server: ModelServer) -> list[str]:
    """The outputs of tool calls that codex sent back to the model."""
    last = server.bodies("/v1/responses")[-1]
    return [str(i.get("output")) for i in last["input"] if i.get("type") == "function_call_output"]


def test_real_codex_text_answer_usage_lands_exactly(codex_bin: str, worktree: Path, tmp_path: Path) -> None:
    """input 1,500 of which 500 cached, output 300 → Usage(input 1000, output 300, cache_read 500)."""
    with ModelServer([{"text": "the answer", "usage": responses_usage(1500, 500, 300)}]) as server:
        res = run_real(codex_bin, server, worktree, tmp_path, Permission.READ_ONLY, system_prompt="be brief")
        (body,) = server.bodies("/v1/responses")
    assert res.status == "ok", res.error
    assert res.usage == Usage(input=1000, output=300, cache_read=500)
    assert res.text == "the answer" and res.turns == 1
    developer = [c["text"] for i in body["input"] if i.get("role") == "developer" for c in i["content"]]
    assert "be brief" in developer  # system_prompt arrived as developer_instructions
    assert body["input"][-1]["content"][0]["text"] == "update notes.txt"


def test_real_codex_server_error_is_an_error_charged_what_the_proxy_saw(codex_bin: str, worktree: Path,
                                                                        tmp_path: Path) -> None:
    """A server answering 500: codex reports turn.failed without usage → status error. The metering
    proxy saw every call fail with no usage (providers do not bill a 500), so nothing is charged."""
    with ModelServer([{"status": 500, "repeat": 50}]) as server:
        res = run_real(codex_bin, server, worktree, tmp_path, Permission.READ_ONLY, token_limit=20_000)
        calls = len(server.bodies("/v1/responses"))
    assert res.status == "error"
    assert res.usage == Usage()
    assert calls >= 1 and "the proxy metered 0 tokens" in (res.error or "")
    assert "charged the full reservation" not in (res.error or "")


def test_real_codex_edits_a_file_in_workspace_write(codex_bin: str, worktree: Path, tmp_path: Path) -> None:
    """workspace-write: a shell edit really changes the worktree; the cumulative usage is billed exactly."""
    edit = "sed -i s/broken/fixed/ notes.txt && echo ok"
    turns: Turns = [{"tool_use": {"name": "exec_command", "input": {"cmd": edit}},
              "usage": responses_usage(100, 0, 10)},
             {"text": "fixed it", "usage": responses_usage(200, 50, 20)}]
    with ModelServer(turns) as server:
        res = run_real(codex_bin, server, worktree, tmp_path, Permission.EDIT_WORKTREE)
        outputs = function_outputs(server)
    assert res.status == "ok", res.error
    assert (worktree / "notes.txt").read_text() == "status: fixed\n"
    assert "exited with code 0" in outputs[0]
    assert res.usage == Usage(input=250, output=30, cache_read=50) and res.usage.total == 330
    assert res.text == "fixed it"


def patch(body: str) -> dict[str, Any]:
    """A model turn asking codex to apply a patch (intercepted from exec_command by codex itself)."""
    script = f"apply_patch <<'EOF'\n*** Begin Patch\n{body}*** End Patch\nEOF\n"
    return {"tool_use": {"name": "exec_command", "input": {"cmd": script}}, "usage": responses_usage(100, 0, 10)}


def test_real_codex_applies_a_patch_and_reports_the_file(codex_bin: str, worktree: Path, tmp_path: Path) -> None:
    """workspace-write: an apply_patch edit lands on disk and comes back as files_changed."""
    turns: Turns = [patch("*** Update File: notes.txt\n@@\n-status: broken\n+status: patched\n"),
             {"text": "patched", "usage": responses_usage(200, 0, 20)}]
    with ModelServer(turns) as server:
        res = run_real(codex_bin, server, worktree, tmp_path, Permission.EDIT_WORKTREE)
    assert res.status == "ok", res.error
    assert (worktree / "notes.txt").read_text() == "status: patched\n"
    assert res.files_changed == ("notes.txt",) and res.usage.total == 330


def test_real_codex_rejects_a_patch_outside_the_worktree(codex_bin: str, worktree: Path, tmp_path: Path) -> None:
    """workspace-write: a patch adding a file outside the worktree (even in /tmp) is rejected; nothing written."""
    outside = tmp_path / "escaped.txt"
    turns: Turns = [patch(f"*** Add File: {outside}\n+escaped\n"), {"text": "no", "usage": responses_usage(200, 0, 20)}]
    with ModelServer(turns) as server:
        res = run_real(codex_bin, server, worktree, tmp_path, Permission.EDIT_WORKTREE)
        outputs = function_outputs(server)
    assert not outside.exists() and "patch rejected" in outputs[0]
    assert res.files_changed == ()


def test_real_codex_shell_cannot_write_to_tmp_at_workspace_write(codex_bin: str, worktree: Path,
                                                                 tmp_path: Path) -> None:
    """workspace-write with our overrides: /tmp and .git are not writable from the sandbox, the worktree is."""
    subprocess.run(["git", "init", "-q", str(worktree)], check=True)
    outside = tmp_path / "escaped.txt"
    cmd = f"echo x > {outside}; echo x > .git/hooks/pre-commit; echo x > inside.txt"
    turns: Turns = [{"tool_use": {"name": "exec_command", "input": {"cmd": cmd}},
              "usage": responses_usage(100, 0, 10)}, {"text": "done", "usage": responses_usage(200, 0, 20)}]
    with ModelServer(turns) as server:
        run_real(codex_bin, server, worktree, tmp_path, Permission.EDIT_WORKTREE)
        outputs = function_outputs(server)
    assert not outside.exists() and not (worktree / ".git" / "hooks" / "pre-commit").exists()
    assert outputs[0].count("Read-only file system") == 2
    assert (worktree / "inside.txt").read_text() == "x\n"


def test_real_codex_read_only_sandbox_blocks_writes(codex_bin: str, worktree: Path, tmp_path: Path) -> None:
    """read-only: a shell write fails inside codex's sandbox and a patch is rejected; the file is unchanged."""
    turns: Turns = [{"tool_use": {"name": "exec_command", "input": {"cmd": "echo pwned > notes.txt"}},
              "usage": responses_usage(100, 0, 10)},
             patch("*** Update File: notes.txt\n@@\n-status: broken\n+status: pwned\n"),
             {"text": "could not", "usage": responses_usage(200, 0, 20)}]
    with ModelServer(turns) as server:
        res = run_real(codex_bin, server, worktree, tmp_path, Permission.READ_ONLY)
        outputs = function_outputs(server)
    assert (worktree / "notes.txt").read_text() == "status: broken\n"
    assert "Read-only file system" in outputs[0] and "patch rejected" in outputs[1]
    assert res.status == "ok" and res.usage.total == 440 and res.files_changed == ()


def test_real_codex_unreachable_server_is_stopped_at_the_deadline(codex_bin: str, worktree: Path,
                                                                  tmp_path: Path) -> None:
    """A model that never answers keeps codex waiting; the deadline halts it and charges the reservation."""
    with ModelServer([{"text": "late", "delay": 60}]) as server:
        res = run_real(codex_bin, server, worktree, tmp_path, Permission.READ_ONLY, timeout_s=3,
                       token_limit=9000)
    assert (res.status, res.stop_reason, res.usage.total) == ("halted", "timeout", 9000)
    assert live_processes_in(worktree) == []
