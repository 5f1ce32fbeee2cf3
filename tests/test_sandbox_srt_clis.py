"""The REAL Gemini, OpenCode and Grok CLIs inside the REAL srt sandbox (issue 14), through the metering proxy.

Each CLI runs wrapped in srt: its network namespace has no loopback to the host, so it reaches the
metering proxy only through srt's own HTTP proxy (``HTTPS_PROXY``/``HTTP_PROXY``, allowlisted
``127.0.0.1:<port>`` taken out of ``NO_PROXY``). The stand-in model makes it write inside the worktree
(works) and outside it — directly and through a symlink in the worktree (both refused by the CLI's own
tool: nothing written, no false violation). A process the CLI starts (an MCP server) is inside the same
sandbox: its write in the worktree works, its writes outside and into HOME are refused and reported as
sandbox denials. Usage is still exactly what the stand-in reported, metered by the proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from loop_runtime.adapters.agents import make_backend
from loop_runtime.adapters.sandbox import SrtSandbox, make_sandbox
from loop_runtime.adapters.agents.grok_cli import UNREACHABLE_IN_SANDBOX
from loop_runtime.errors import AgentNotStarted
from loop_runtime.ports import AgentRequest, AgentResult, Permission
from tests.fakes.model_server import ModelServer
from tests.support.srt import srt, unavailable  # noqa: F401  (srt: the module's fixture)
from tests.support.npm_tools import agent_cli

pytestmark = [pytest.mark.sandbox, pytest.mark.realcli, pytest.mark.timeout(300)]

KEY = "test-key-0123456789abcdef"


@pytest.fixture
def place(tmp_path: Path) -> dict[str, Path]:
    """A project root holding the worktree; a fake user HOME; a folder outside both."""
    root = tmp_path / "proj"
    wt = root / "wt"
    wt.mkdir(parents=True)
    (wt / "notes.txt").write_text("status: broken\n")
    home = tmp_path / "home"
    home.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (wt / "link").symlink_to(outside)  # a way out the CLI's own path check may miss
    return {"root": root.resolve(), "wt": wt.resolve(), "home": home.resolve(), "outside": outside.resolve(),
            "tmp": tmp_path}


def sandbox(srt: str, p: dict[str, Path], level: str = "L2") -> SrtSandbox:
    env = {"PATH": os.environ["PATH"], "HOME": str(p["home"]), "LOOP_RUNTIME_SRT": srt}
    box = make_sandbox("srt", root=p["root"], level=level, env=env)
    assert isinstance(box, SrtSandbox) and box.active
    return box


ESCAPE = ("import pathlib, socket, sys\n"
          "pathlib.Path(sys.argv[1], 'inside.txt').write_text('ok')\n"
          "for path in sys.argv[2:]:\n"
          "    try:\n"
          "        pathlib.Path(path).write_text('pwned')\n"
          "    except OSError:\n"
          "        pass\n")


def escaping_server(p: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """An MCP server (a process the CLI starts, so inside its sandbox) that writes in the worktree, then
    outside it and into the user's HOME — then exits, a failed server the CLI goes on without."""
    args = ["-c", ESCAPE, str(p["wt"]), str(p["outside"] / "mcp.txt"), str(p["home"] / "mcp.txt")]
    return {"escape": {"command": sys.executable, "args": args}}


def request(p: dict[str, Path], permission: Permission, level: str = "L2", **kw: Any) -> AgentRequest:
    env = {"PATH": os.environ["PATH"], "HOME": str(p["home"])}
    return AgentRequest(role="implementer", prompt="fix notes.txt", cwd=str(p["wt"]), permission=permission,
                        token_limit=1_000_000, timeout_s=150.0, max_turns=10, env=env, level=level,
                        transcript_dir=str(p["tmp"] / "transcripts"), **kw)


def metered(p: dict[str, Path]) -> list[int]:
    (path,) = (p["tmp"] / "transcripts").glob("proxy-implementer-*.jsonl")
    return [e["usage"]["total"] for e in map(json.loads, path.read_text().splitlines()) if e["type"] == "proxy.call"]


def denied_lines(p: dict[str, Path]) -> list[str]:
    (path,) = (p["tmp"] / "transcripts").glob("implementer-*.jsonl")
    return [e["detail"] for e in map(json.loads, path.read_text().splitlines())
            if e.get("type") == "loop_runtime.sandbox_denied"]


def run(name: str, srt: str, p: dict[str, Path], turns: list[dict[str, Any]], env: dict[str, str],
        permission: Permission = Permission.EDIT_WORKTREE, level: str = "L2") -> tuple[AgentResult, int]:
    """Run backend ``name`` in srt against a stand-in playing ``turns``; check how denials are reported."""
    warnings: list[str] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "agent.warning":
            warnings.append(str(data.get("message")))

    with ModelServer(turns) as server:
        url = server.base_url
        env = {k: v.replace("{url}", url) for k, v in env.items()}
        backend = make_backend(name, binary=str(agent_cli(name)), env=env, model="m1",
                               sandbox=sandbox(srt, p, level))
        res = asyncio.run(backend.run(request(p, permission, level, mcp_servers=escaping_server(p)),
                                      on_event=on_event))
        served = server.served
    # The MCP server the CLI started ran inside the sandbox: its own-worktree write worked, the others
    # were refused — and each refusal is on the result, in the transcript and an agent.warning, nothing more.
    assert (p["wt"] / "inside.txt").read_text() == "ok"
    assert not (p["outside"] / "mcp.txt").exists() and not (p["home"] / "mcp.txt").exists()
    assert sorted(res.sandbox_denials) == sorted(f"blocked: deny openat {path}" for path in
                                                 (p["outside"] / "mcp.txt", p["home"] / "mcp.txt"))
    assert denied_lines(p) == list(res.sandbox_denials)
    assert [w for w in warnings if w.startswith("sandbox denied: ")] == [f"sandbox denied: {d}"
                                                                        for d in res.sandbox_denials]
    return res, served


def test_gemini_runs_inside_srt_and_reaches_the_proxy(srt: str, place: dict[str, Path]) -> None:
    p = place
    u = {"promptTokenCount": 100, "candidatesTokenCount": 7}
    turns = [{"tool_use": {"name": "write_file", "input": {"file_path": str(p["wt"] / "notes.txt"),
                                                          "content": "status: fixed\n"}}, "usage": u},
             {"tool_use": {"name": "write_file", "input": {"file_path": str(p["outside"] / "x.txt"),
                                                          "content": "x\n"}}, "usage": u},
             {"tool_use": {"name": "write_file", "input": {"file_path": str(p["wt"] / "link" / "y.txt"),
                                                          "content": "y\n"}}, "usage": u},
             {"text": "done", "usage": u}]
    res, served = run("gemini", srt, p, turns, {"GEMINI_API_KEY": KEY, "GOOGLE_GEMINI_BASE_URL": "{url}"})
    assert res.status == "ok", res.error
    assert served == len(turns)
    assert (p["wt"] / "notes.txt").read_text() == "status: fixed\n"
    assert not (p["outside"] / "x.txt").exists()
    assert metered(p) == [107] * 4 and res.usage.total == 428


def test_opencode_runs_inside_srt_and_reaches_the_proxy(srt: str, place: dict[str, Path]) -> None:
    p = place
    u = {"prompt_tokens": 100, "completion_tokens": 7}
    turns = [{"when": "title generator", "text": "Notes", "usage": {"prompt_tokens": 50, "completion_tokens": 2}},
             {"tool_use": {"name": "write", "input": {"filePath": str(p["wt"] / "notes.txt"),
                                                     "content": "status: fixed\n"}}, "usage": u},
             {"tool_use": {"name": "write", "input": {"filePath": str(p["outside"] / "x.txt"),
                                                     "content": "x\n"}}, "usage": u},
             {"tool_use": {"name": "write", "input": {"filePath": str(p["wt"] / "link" / "y.txt"),
                                                     "content": "y\n"}}, "usage": u},
             {"text": "done", "usage": u}]
    res, served = run("opencode", srt, p, turns, {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "{url}/v1"})
    assert res.status == "ok", res.error
    assert served == len(turns)
    assert (p["wt"] / "notes.txt").read_text() == "status: fixed\n"
    assert not (p["outside"] / "x.txt").exists()
    assert sorted(metered(p)) == [52, *[107] * 4] and res.usage.total == 480


def test_grok_is_refused_inside_srt_because_it_cannot_reach_the_proxy(srt: str, place: dict[str, Path]) -> None:
    """Its API client ignores HTTPS_PROXY (checked: "Connection error" from inside srt), so it would never
    reach the metering proxy; it is refused — never run outside the sandbox the user asked for — even with
    ``sandboxed = true``, at every level, before any process starts or any model call is made."""
    p = place
    with ModelServer() as server:
        for permission, level in ((Permission.READ_ONLY, "L1"), (Permission.EDIT_WORKTREE, "L2")):
            for sandboxed in (False, True):
                backend = make_backend("grok", binary=str(agent_cli("grok")), sandboxed=sandboxed,
                                       env={"GROK_API_KEY": KEY, "GROK_BASE_URL": f"{server.base_url}/v1"},
                                       sandbox=sandbox(srt, p, level))
                with pytest.raises(AgentNotStarted) as err:
                    asyncio.run(backend.run(request(p, permission, level)))
                assert str(err.value) == UNREACHABLE_IN_SANDBOX and "\n" not in str(err.value)
        assert server.requests == []
    assert not (p["tmp"] / "transcripts").exists()


def test_without_an_active_sandbox_the_clis_run_as_before(place: dict[str, Path]) -> None:
    """``sandbox = "auto"`` without srt: the backend is not wrapped (the runner logs the sandbox off) and
    grok keeps needing the user's ``sandboxed = true``."""
    off = make_sandbox("none", root=place["root"], level="L2", env={"PATH": os.environ["PATH"]})
    assert not off.active
    u = {"prompt_tokens": 5, "completion_tokens": 1}
    with ModelServer([{"text": "ok", "usage": u}]) as server:
        backend = make_backend("grok", binary=str(agent_cli("grok")), sandboxed=True, sandbox=off,
                               env={"GROK_API_KEY": KEY, "GROK_BASE_URL": f"{server.base_url}/v1"})
        res = asyncio.run(backend.run(request(place, Permission.EDIT_WORKTREE)))
    assert res.status == "ok", res.error
    assert res.usage.total == 6 and res.sandbox_denials == ()
