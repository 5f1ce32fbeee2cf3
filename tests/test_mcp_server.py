"""``loop-runtime mcp`` spoken to by the MCP SDK's own client over stdio (a real subprocess).

The tools must give exactly what the CLI gives (same JSON keys, same rules): the kill
switch pauses a confirmed run_tick, an escalation made by a real mock tick on a temp git
repository is approved/rejected through MCP, run_tick without ``confirm`` writes nothing,
and bad inputs come back as one-line tool errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.support.gitrepo import git, make_repo

mcp = pytest.importorskip("mcp")
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
TOOLS = {"list_patterns", "plan", "status", "cost", "run_tick", "kill", "resume", "escalations", "approve", "reject"}


def project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {
        "calc.py": BUGGY, "tests/test_calc.py": TEST, "conftest.py": "",
        "loop-runtime.toml": f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"\n',
    })


def escalating_scenario(tmp_path: Path) -> str:
    doc = {
        "triage": {"decision": "act", "summary": "CI red", "tokens": 1000,
                   "items": [{"id": "CI-1", "title": "test_add fails", "detail": "add() subtracts",
                              "files": ["calc.py"]}]},
        "implementer": [{"tokens": 3000, "files": {"calc.py": FIXED}}],
        "verifier": [{"verdict": "ESCALATE_HUMAN", "reasons": ["touches math"], "tokens": 1000}],
    }
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(doc))
    return str(path)


def with_server(root: Path, body: Callable[[Any], Awaitable[Any]], *, cwd: Path | None = None,
                env: dict[str, str] | None = None, args: tuple[str, ...] | None = None) -> Any:
    """Spawn ``python -m loop_runtime mcp --root <root>`` and run ``body(client)`` against it."""
    full_env = {k: v for k, v in os.environ.items() if k != "LOOP_PROJECT_ROOT"}
    full_env.update(env or {})
    argv = list(args) if args is not None else ["-m", "loop_runtime", "mcp", "--root", str(root)]
    params = StdioServerParameters(command=sys.executable, args=argv, env=full_env, cwd=str(cwd or root))

    async def main() -> Any:
        async with Client(params, read_timeout_seconds=120) as client:
            return await body(client)

    return asyncio.run(main())


def doc(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    data = json.loads(result.content[0].text)
    assert result.structured_content in (None, data) or result.structured_content == {"result": data}
    return data


def error(result: Any) -> str:
    assert result.is_error, result.content
    text = result.content[0].text
    assert "\n" not in text.strip() and "Traceback" not in text
    return text


def cli_json(root: Path, *args: str) -> dict[str, Any]:
    proc = run_cli(*args, "--json", "--root", str(root))
    assert proc.returncode in (0, 2), proc.stderr
    return json.loads(proc.stdout)


def test_lists_every_tool_and_read_tools_match_the_cli_json(tmp_path: Path) -> None:
    """Tools list; list_patterns/plan/cost/status/escalations return the CLI's --json documents."""
    root = project(tmp_path)

    async def body(c: Any) -> dict[str, Any]:
        names = {t.name for t in (await c.list_tools()).tools}
        return {"names": names,
                "list": doc(await c.call_tool("list_patterns", {})),
                "plan": doc(await c.call_tool("plan", {"pattern": "ci-sweeper", "level": "L2"})),
                "cost": doc(await c.call_tool("cost", {"pattern": "ci-sweeper", "level": "L2"})),
                "status": doc(await c.call_tool("status", {})),
                "esc": doc(await c.call_tool("escalations", {}))}

    got = with_server(root, body)
    assert got["names"] == TOOLS
    assert got["list"] == cli_json(root, "list")
    assert got["plan"] == cli_json(root, "plan", "ci-sweeper", "--level", "L2")
    assert got["cost"] == cli_json(root, "cost", "ci-sweeper", "--level", "L2")
    status = cli_json(root, "status")
    assert set(got["status"]) == set(status) and got["status"]["loops"] == status["loops"]
    assert got["esc"] == cli_json(root, "escalations") == {"escalations": []}


def test_run_tick_is_a_dry_run_unless_confirmed_and_the_kill_switch_pauses_it(tmp_path: Path) -> None:
    """Without confirm nothing is written; confirm runs for real; after kill a confirmed tick is paused."""
    root = project(tmp_path)

    async def body(c: Any) -> dict[str, Any]:
        dry = doc(await c.call_tool("run_tick", {"pattern": "daily-triage"}))
        after_dry = sorted(p.name for p in root.iterdir())
        real = doc(await c.call_tool("run_tick", {"pattern": "daily-triage", "confirm": True}))
        killed = doc(await c.call_tool("kill", {"reason": "from mcp"}))
        paused = doc(await c.call_tool("run_tick", {"pattern": "daily-triage", "confirm": True}))
        resumed = doc(await c.call_tool("resume", {}))
        return {"dry": dry, "after_dry": after_dry, "real": real, "killed": killed, "paused": paused,
                "resumed": resumed}

    got = with_server(root, body)
    assert got["dry"]["dryRun"] is True and "confirm" in got["dry"]["note"]
    assert set(got["dry"]) >= {"pattern", "backend", "dryRun", "ticks"}
    assert got["after_dry"] == sorted([".git", "calc.py", "conftest.py", "loop-runtime.toml", "tests"])
    assert got["real"]["dryRun"] is False and got["real"]["exitCode"] == 0
    assert got["real"]["ticks"][0]["runId"] in (root / "loop-run-log.md").read_text()
    assert got["killed"] == {"file": "loop-pause-all", "scope": "all"}
    assert got["paused"]["ticks"][0]["decision"] == "paused" and got["paused"]["exitCode"] == 0
    assert got["resumed"] == {"cleared": ["loop-pause-all"], "remaining": []}
    assert not (root / "loop-pause-all").exists()


def test_approve_and_reject_escalations_made_by_a_real_tick(tmp_path: Path) -> None:
    """A confirmed mock tick escalates (exit code 2); approve commits the held diff; reject discards another."""
    root = project(tmp_path)
    scen = escalating_scenario(tmp_path)

    async def body(c: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first = doc(await c.call_tool("run_tick", {"pattern": "ci-sweeper", "level": "L2", "scenario": scen,
                                                   "confirm": True}))
        out["first"] = first
        (esc,) = doc(await c.call_tool("escalations", {}))["escalations"]
        out["esc"] = esc
        out["approved"] = doc(await c.call_tool("approve", {"escalation_id": esc["id"]}))
        out["again"] = error(await c.call_tool("approve", {"escalation_id": esc["id"]}))
        doc(await c.call_tool("run_tick", {"pattern": "ci-sweeper", "level": "L2", "scenario": scen,
                                           "confirm": True, "force": True}))
        (esc2,) = doc(await c.call_tool("escalations", {}))["escalations"]
        out["esc2"] = esc2
        out["rejected"] = doc(await c.call_tool("reject", {"escalation_id": esc2["id"], "reason": "not this way"}))
        out["all"] = doc(await c.call_tool("escalations", {"all": True}))["escalations"]
        out["unknown"] = error(await c.call_tool("approve", {"escalation_id": "esc-nope"}))
        return out

    got = with_server(root, body)
    assert got["first"]["exitCode"] == 2 and got["first"]["ticks"][0]["escalationId"] == got["esc"]["id"]
    assert got["approved"]["id"] == got["esc"]["id"] and got["approved"]["branch"] == got["esc"]["branch"]
    assert git(root, "show", f"{got['esc']['branch']}:calc.py") + "\n" == FIXED
    assert "already approved" in got["again"]
    assert got["rejected"]["id"] == got["esc2"]["id"]
    assert "not this way" in (root / "ci-sweeper-state.md").read_text()
    assert {e["id"]: e["status"] for e in got["all"]} == {got["esc"]["id"]: "approved",
                                                           got["esc2"]["id"]: "rejected"}
    assert "esc-nope" in got["unknown"]


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    """Unknown pattern → did you mean; bad level/backend/flags → the valid values; nothing is written."""
    root = project(tmp_path)

    async def body(c: Any) -> list[str]:
        calls = [("plan", {"pattern": "ci-sweepr"}), ("plan", {"pattern": "ci-sweeper", "level": "l2"}),
                 ("plan", {"pattern": "ci-sweeper", "level": "L9"}), ("cost", {"pattern": "ci-sweeper", "level": "L0"}),
                 ("run_tick", {"pattern": "ci-sweeper", "backend": "gpt"}),
                 ("run_tick", {"pattern": "ci-sweeper", "confirm": "yes"}), ("run_tick", {"pattern": ""}),
                 ("kill", {"pattern": "../etc"}), ("reject", {"escalation_id": "x", "reason": "  "}),
                 ("run_tick", {"pattern": "ci-sweeper", "scenario": "no-such-scenario"}),
                 ("plan", {"pattern": "ci-sweeper", "cadence": "sometimes"})]
        errs = [error(await c.call_tool(name, args)) for name, args in calls]
        # the SDK's own schema checks (a missing required argument, an unknown tool): named, not one line
        for name, args in (("approve", {}), ("no_such_tool", {})):
            result = await c.call_tool(name, args)
            assert result.is_error
            errs.append(result.content[0].text)
        return errs

    errs = with_server(root, body)
    assert "did you mean 'ci-sweeper'" in errs[0]
    assert "did you mean 'L2'" in errs[1] and "valid: L0, L1, L2, L3" in errs[2]
    assert "valid: L1, L2, L3" in errs[3]
    assert "backend invalid: 'gpt'" in errs[4] and "claude" in errs[4]
    assert "confirm" in errs[5]
    assert "pattern" in errs[6] and "pattern invalid: '../etc'" in errs[7]
    assert "reason" in errs[8] and "no-such-scenario" in errs[9] and "sometimes" in errs[10]
    assert "escalation_id" in errs[11] and "no_such_tool" in errs[12]
    assert not (root / "loop-pause-all").exists() and not (root / "loop-run-log.md").exists()
    assert not (root / ".loop-runtime").exists()


def test_resources_are_the_state_files_and_the_run_log_redacted(tmp_path: Path) -> None:
    """Each state file and the run log are resources; a secret from the project's .env never comes out."""
    root = project(tmp_path)
    secret = "sk-live-abcdefghijklmnop1234567890"
    (root / ".env").write_text(f"API_TOKEN={secret}\n")
    (root / "ci-sweeper-state.md").write_text(f"# CI sweeper\n\nnote: the token is {secret}\n")

    async def body(c: Any) -> dict[str, Any]:
        listed = {str(r.uri): r for r in (await c.list_resources()).resources}
        state = (await c.read_resource("loop-runtime://state/ci-sweeper")).contents[0].text
        log = (await c.read_resource("loop-runtime://run-log")).contents[0].text
        return {"uris": set(listed), "state": state, "log": log}

    got = with_server(root, body)
    assert "loop-runtime://run-log" in got["uris"] and "loop-runtime://state/ci-sweeper" in got["uris"]
    assert "# CI sweeper" in got["state"] and secret not in got["state"]
    assert got["log"] == ""


def test_a_state_file_symlinked_out_of_the_project_is_not_served(tmp_path: Path) -> None:
    root = project(tmp_path)
    outside = tmp_path / "outside.md"
    outside.write_text("private notes outside the project\n")
    (root / "ci-sweeper-state.md").symlink_to(outside)

    async def body(c: Any) -> str:
        from mcp.shared.exceptions import MCPError

        try:
            result = await c.read_resource("loop-runtime://state/ci-sweeper")
        except MCPError as e:
            return f"error: {e}"
        return result.contents[0].text

    got = with_server(root, body)
    assert got.startswith("error:") and "outside the project root" in got and "private notes" not in got


def test_root_comes_from_the_environment_then_the_cwd(tmp_path: Path) -> None:
    """--root > LOOP_PROJECT_ROOT > cwd, like every command."""
    root = project(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()

    async def body(c: Any) -> str:
        return doc(await c.call_tool("status", {}))["root"]

    base = ["-m", "loop_runtime", "mcp"]
    assert with_server(root, body, cwd=other, env={"LOOP_PROJECT_ROOT": str(root)}, args=tuple(base)) == str(root)
    assert with_server(root, body, cwd=root, args=tuple(base)) == str(root)
    assert with_server(root, body, cwd=root, env={"LOOP_PROJECT_ROOT": str(other)},
                       args=(*base, "--root", str(root))) == str(root)


def test_a_missing_extra_is_one_line_naming_it(tmp_path: Path) -> None:
    """Without the mcp package: one line naming loop-runtime[mcp], exit 1."""
    hide = tmp_path / "hide.py"
    hide.write_text("import sys\nsys.modules['mcp'] = None\nfrom loop_runtime.cli import main\nmain(sys.argv[1:])\n")
    import subprocess

    proc = subprocess.run([sys.executable, str(hide), "mcp", "--root", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "loop-runtime[mcp]" in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_stdout_carries_only_the_protocol_even_while_a_real_tick_runs_tests(tmp_path: Path) -> None:
    """Raw JSON-RPC over the pipes: every stdout line is a JSON-RPC message, although the tick runs the
    project's test command (pytest prints plenty) and a print() in the server process would go to fd 1."""
    import subprocess

    root = project(tmp_path)
    scen = escalating_scenario(tmp_path)
    (root / "conftest.py").write_text("print('conftest says hello on stdout')\n")
    git(root, "commit", "-qam", "noisy conftest")
    msgs = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "run_tick", "arguments": {"pattern": "ci-sweeper", "level": "L2", "scenario": scen,
                                                      "confirm": True}}},
    ]
    env = {k: v for k, v in os.environ.items() if k != "LOOP_PROJECT_ROOT"}
    harness = ("import runpy, sys\n"
               "import loop_runtime.app.run as c\n"
               "real = c.run_ticks\n"
               "def noisy(*a, **k):\n"
               "    print('stray print inside a tool')\n"
               "    return real(*a, **k)\n"
               "c.run_ticks = noisy\n"
               f"sys.argv = ['loop-runtime', 'mcp', '--root', {str(root)!r}]\n"
               "runpy.run_module('loop_runtime', run_name='__main__')\n")
    proc = subprocess.Popen([sys.executable, "-c", harness],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    lines = []
    for m in msgs:
        proc.stdin.write(json.dumps(m) + "\n")
        proc.stdin.flush()
        if "id" in m:
            while True:
                line = proc.stdout.readline()
                assert line, proc.stderr.read() if proc.stderr else ""
                lines.append(line)
                if json.loads(line).get("id") == m["id"]:
                    break
    proc.stdin.close()
    proc.stdin = None  # closed: communicate() must not flush it
    rest, err = proc.communicate(timeout=60)
    lines += [ln for ln in rest.splitlines() if ln.strip()]
    docs = [json.loads(ln) for ln in lines]
    assert all(d.get("jsonrpc") == "2.0" for d in docs)
    assert "stray print inside a tool" in err  # diverted to stderr
    final = next(d for d in docs if d.get("id") == 2)
    assert final["result"]["isError"] is False
    assert json.loads(final["result"]["content"][0]["text"])["exitCode"] == 2
