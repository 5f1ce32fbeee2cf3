"""The REAL Gemini, OpenCode and Grok CLIs (issue 15), offline against local stand-ins, through the proxy.

Binaries: pinned npm packages installed by tests/support/npm_tools.agent_cli (skip without
npm, fail under CI=true). Each run gets a private HOME; usage is asserted exactly against
what the stand-in reported, per call, via the metering proxy's call log.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from loop_runtime.adapters.agents import GeminiCliBackend, GrokCliBackend, OpenCodeCliBackend, make_backend
from loop_runtime.adapters.agents.grok_cli import READ_ONLY_REFUSED, UNCONFINED_REFUSED
from loop_runtime.errors import AgentNotStarted
from loop_runtime.ports import AgentRequest, AgentResult, Permission, Usage
from tests.fakes.fake_cli import live_processes_in
from tests.fakes.model_server import ModelServer
from tests.support.npm_tools import agent_cli
from tests.test_realcli_claude import worktree  # noqa: F401 - fixture

pytestmark = [pytest.mark.realcli, pytest.mark.timeout(240)]

KEY = "test-key-0123456789abcdef"


def request(worktree: Path, tmp_path: Path, permission: Permission = Permission.READ_ONLY, **kw: Any) -> AgentRequest:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path / "user-home")}
    return AgentRequest(role="implementer", prompt="look at notes.txt", cwd=str(worktree), permission=permission,
                        token_limit=kw.pop("token_limit", 1_000_000), timeout_s=kw.pop("timeout_s", 120.0),
                        max_turns=kw.pop("max_turns", 10), env=env, transcript_dir=str(tmp_path / "transcripts"),
                        system_prompt=kw.pop("system_prompt", "SYSTEM RULES"), **kw)


def calls(tmp_path: Path) -> list[dict[str, Any]]:
    (path,) = (tmp_path / "transcripts").glob("proxy-implementer-*.jsonl")
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["type"] == "proxy.call"]


def run(backend: Any, req: AgentRequest) -> AgentResult:
    return asyncio.run(backend.run(req))


# --------------------------------------------------------------------------- gemini


@pytest.fixture(scope="module")
def gemini_bin() -> str:
    return str(agent_cli("gemini"))


def gemini(gemini_bin: str, server_url: str) -> GeminiCliBackend:
    return GeminiCliBackend(binary=gemini_bin, model="gemini-test",
                            env={"GEMINI_API_KEY": KEY, "GOOGLE_GEMINI_BASE_URL": server_url})


def test_gemini_reads_with_exact_per_call_usage(gemini_bin: str, worktree: Path, tmp_path: Path) -> None:
    turns = [{"tool_use": {"name": "read_file", "input": {"file_path": "notes.txt"}},
              "usage": {"promptTokenCount": 1000, "cachedContentTokenCount": 200, "candidatesTokenCount": 10}},
             {"text": "status is broken", "usage": {"promptTokenCount": 1200, "candidatesTokenCount": 20,
                                                    "thoughtsTokenCount": 5}}]
    with ModelServer(turns) as server:
        res = run(gemini(gemini_bin, server.base_url), request(worktree, tmp_path))
        bodies = server.bodies("/v1beta/models/gemini-test:streamGenerateContent")
        headers = [r["headers"] for r in server.requests]
    assert res.status == "ok", res.error
    assert res.text == "status is broken"
    assert [c["usage"]["total"] for c in calls(tmp_path)] == [1010, 1225]
    assert res.usage == Usage(input=2000, output=35, cache_read=200)
    assert "SYSTEM RULES" in json.dumps(bodies[0]) and len(bodies) == 2
    assert all(KEY in json.dumps(h) for h in headers)  # the key went through untouched
    assert not (worktree / ".gemini").exists() and live_processes_in(worktree) == []


def test_gemini_edits_only_at_edit_worktree(gemini_bin: str, worktree: Path, tmp_path: Path) -> None:
    target = worktree / "notes.txt"
    write = {"tool_use": {"name": "write_file", "input": {"file_path": str(target), "content": "status: fixed\n"}},
             "usage": {"promptTokenCount": 100, "candidatesTokenCount": 10}}
    done = {"text": "done", "usage": {"promptTokenCount": 100, "candidatesTokenCount": 1}}
    with ModelServer([write, done]) as server:
        res = run(gemini(gemini_bin, server.base_url), request(worktree, tmp_path))
    assert target.read_text() == "status: broken\n", "read-only run wrote a file"
    with ModelServer([write, done]) as server:
        res = run(gemini(gemini_bin, server.base_url), request(worktree, tmp_path / "b", Permission.EDIT_WORKTREE))
    assert res.status == "ok", res.error
    assert target.read_text() == "status: fixed\n" and res.files_changed == ("notes.txt",)


def test_gemini_dead_upstream_and_runaway(gemini_bin: str, worktree: Path, tmp_path: Path) -> None:
    with ModelServer() as server:
        dead = server.base_url
    res = run(gemini(gemini_bin, dead), request(worktree, tmp_path / "a"))
    assert res.status == "error" and (res.error or "").startswith("cannot reach the model API")
    loop = {"tool_use": {"name": "read_file", "input": {"file_path": "notes.txt"}},
            "usage": {"promptTokenCount": 10, "candidatesTokenCount": 3000}, "repeat": 30}
    with ModelServer([loop]) as server:
        res = run(gemini(gemini_bin, server.base_url), request(worktree, tmp_path / "b", token_limit=5_000))
        served = server.served
    assert (res.status, res.stop_reason) == ("halted", "budget") and served == 2
    assert res.usage.total == 6020 and live_processes_in(worktree) == []


# --------------------------------------------------------------------------- opencode


@pytest.fixture(scope="module")
def opencode_bin() -> str:
    return str(agent_cli("opencode"))


def opencode(opencode_bin: str, server_url: str) -> OpenCodeCliBackend:
    return OpenCodeCliBackend(binary=opencode_bin, model="m1", env={"OPENAI_API_KEY": KEY,
                                                                    "OPENAI_BASE_URL": f"{server_url}/v1"})


TITLE = {"when": "title generator", "text": "Notes", "usage": {"prompt_tokens": 50, "completion_tokens": 2}}


def test_opencode_meters_its_own_title_call_and_every_step(opencode_bin: str, worktree: Path,
                                                           tmp_path: Path) -> None:
    turns = [TITLE,
             {"tool_use": {"name": "read", "input": {"filePath": str(worktree / "notes.txt")}},
              "usage": {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 300}}},
             {"text": "status is broken", "usage": {"prompt_tokens": 1200, "completion_tokens": 20}}]
    with ModelServer(turns) as server:
        res = run(opencode(opencode_bin, server.base_url), request(worktree, tmp_path))
        bodies = server.bodies("/v1/chat/completions")
        assert server.remaining == 0 and server.exhausted == 0
    assert res.status == "ok", res.error
    assert "status is broken" in res.text
    assert sorted(c["usage"]["total"] for c in calls(tmp_path)) == [52, 1010, 1220]
    assert res.usage.total == 2282 and res.usage.cache_read == 300  # the title call is billed too
    assert all(b.get("stream_options", {}).get("include_usage") for b in bodies if b.get("stream"))
    assert live_processes_in(worktree) == []


def test_opencode_read_only_cannot_edit_and_dead_upstream_is_quick(opencode_bin: str, worktree: Path,
                                                                    tmp_path: Path) -> None:
    target = worktree / "notes.txt"
    turns = [TITLE,
             {"tool_use": {"name": "write", "input": {"filePath": str(target), "content": "pwned\n"}},
              "usage": {"prompt_tokens": 100, "completion_tokens": 10}},
             {"text": "tried", "usage": {"prompt_tokens": 100, "completion_tokens": 1}}]
    with ModelServer(turns) as server:
        run(opencode(opencode_bin, server.base_url), request(worktree, tmp_path / "a"))
    assert target.read_text() == "status: broken\n"
    with ModelServer() as server:
        dead = server.base_url
    res = run(opencode(opencode_bin, dead), request(worktree, tmp_path / "b", timeout_s=120))
    assert res.status == "error" and (res.error or "").startswith("cannot reach the model API")
    assert res.stop_reason is None and live_processes_in(worktree) == []


# --------------------------------------------------------------------------- grok


@pytest.fixture(scope="module")
def grok_bin() -> str:
    return str(agent_cli("grok"))


def grok(grok_bin: str, server_url: str, **kw: Any) -> GrokCliBackend:
    return GrokCliBackend(binary=grok_bin, model="grok-test",
                          env={"GROK_API_KEY": KEY, "GROK_BASE_URL": f"{server_url}/v1"}, **kw)


def test_grok_is_refused_unless_sandboxed(grok_bin: str, worktree: Path, tmp_path: Path) -> None:
    """No read-only mode (L0/L1, verifier) and no confinement at L2 (its create_file writes anywhere)."""
    with ModelServer() as server:
        for permission, reason in ((Permission.READ_ONLY, READ_ONLY_REFUSED),
                                   (Permission.EDIT_WORKTREE, UNCONFINED_REFUSED)):
            with pytest.raises(AgentNotStarted) as err:
                run(grok(grok_bin, server.base_url), request(worktree, tmp_path, permission))
            assert str(err.value) == reason and "\n" not in reason
        assert server.requests == []
    with ModelServer([{"text": "ok", "usage": {"prompt_tokens": 5, "completion_tokens": 1}}]) as server:
        res = run(grok(grok_bin, server.base_url, sandboxed=True), request(worktree, tmp_path / "s"))
    assert res.status == "ok", res.error


def test_grok_edits_and_is_billed_from_the_proxy_alone(grok_bin: str, worktree: Path, tmp_path: Path) -> None:
    """Grok prints no usage: the bill is the proxy's, exactly the stand-in's numbers."""
    turns = [{"tool_use": {"name": "view_file", "input": {"path": "notes.txt"}},
              "usage": {"prompt_tokens": 900, "completion_tokens": 15}},
             {"tool_use": {"name": "str_replace_editor", "input": {"path": "notes.txt", "old_str": "broken",
                                                                   "new_str": "fixed"}},
              "usage": {"prompt_tokens": 1000, "completion_tokens": 25, "prompt_tokens_details": {"cached_tokens": 800}}},
             {"text": "fixed the notes", "usage": {"prompt_tokens": 1100, "completion_tokens": 5}}]
    with ModelServer(turns) as server:
        res = run(grok(grok_bin, server.base_url, sandboxed=True),
                  request(worktree, tmp_path, Permission.EDIT_WORKTREE))
        assert server.exhausted == 0
    assert res.status == "ok", res.error
    assert (worktree / "notes.txt").read_text().startswith("status: fixed")
    assert res.usage == Usage(input=2200, output=45, cache_read=800)
    assert res.text.endswith("fixed the notes") and "notes.txt" in res.files_changed
    assert not (worktree / ".grok").exists()  # its settings folder does not end up in the diff


def test_grok_api_failure_is_an_error_though_it_exits_0(grok_bin: str, worktree: Path, tmp_path: Path) -> None:
    with ModelServer([{"status": 400, "message": "bad model"}]) as server:
        res = run(grok(grok_bin, server.base_url, sandboxed=True),
                  request(worktree, tmp_path, Permission.EDIT_WORKTREE))
    assert res.status == "error" and "grok reported an API error" in (res.error or "")
    assert res.usage.total == 0


def test_make_backend_builds_the_new_backends(grok_bin: str, gemini_bin: str, opencode_bin: str) -> None:
    env = {"GROK_API_KEY": KEY, "GEMINI_API_KEY": KEY, "OPENAI_API_KEY": KEY}
    for name, binary in (("grok", grok_bin), ("gemini", gemini_bin), ("opencode", opencode_bin)):
        backend = make_backend(name, binary=binary, env=env, model="m")
        assert backend.name == name
    assert make_backend("grok", binary=grok_bin, env={"GROK_API_KEY": KEY}).upstream == "https://api.x.ai/v1"


def test_gemini_and_opencode_edits_stay_inside_the_worktree(gemini_bin: str, opencode_bin: str, worktree: Path,
                                                            tmp_path: Path) -> None:
    """EDIT_WORKTREE: a write to an absolute path outside the worktree and one through ``..`` are refused."""
    outside, dotdot = tmp_path / "outside.txt", worktree.parent / "dotdot.txt"
    g_turns = [{"tool_use": {"name": "write_file", "input": {"file_path": str(outside), "content": "x\n"}},
                "usage": {"promptTokenCount": 10, "candidatesTokenCount": 1}},
               {"tool_use": {"name": "write_file", "input": {"file_path": "../dotdot.txt", "content": "x\n"}},
                "usage": {"promptTokenCount": 10, "candidatesTokenCount": 1}},
               {"text": "tried", "usage": {"promptTokenCount": 10, "candidatesTokenCount": 1}}]
    with ModelServer(g_turns) as server:
        run(gemini(gemini_bin, server.base_url), request(worktree, tmp_path / "g", Permission.EDIT_WORKTREE))
        assert server.served == 3  # both writes were attempted and answered, the run went on
        answers = json.dumps(server.bodies("/v1beta")[-1])
    assert not outside.exists() and not dotdot.exists()
    assert answers.count("functionResponse") >= 2
    o_turns = [TITLE,
               {"tool_use": {"name": "write", "input": {"filePath": str(outside), "content": "x\n"}},
                "usage": {"prompt_tokens": 10, "completion_tokens": 1}},
               {"tool_use": {"name": "write", "input": {"filePath": str(dotdot), "content": "x\n"}},
                "usage": {"prompt_tokens": 10, "completion_tokens": 1}},
               {"text": "tried", "usage": {"prompt_tokens": 10, "completion_tokens": 1}}]
    with ModelServer(o_turns) as server:
        run(opencode(opencode_bin, server.base_url), request(worktree, tmp_path / "o", Permission.EDIT_WORKTREE))
        assert server.served == 4
        answers = json.dumps(server.bodies("/v1/chat/completions")[-1])
    assert not outside.exists() and not dotdot.exists()
    assert answers.count('"role": "tool"') >= 2
