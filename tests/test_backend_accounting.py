"""Exact accounting end to end: the run log's tokens_estimate for a tick is exactly what the real
agent CLI (or API) reported, for every backend; and 0-token no-op ticks on unchanged inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loop_runtime.adapters.agents.claude_cli import _bundled_claude
from tests.conftest import run_cli
from tests.fakes.model_server import ModelServer
from tests.support import npm_tools
from tests.support.gitrepo import git, make_repo, write

pytestmark = [pytest.mark.realcli, pytest.mark.timeout(180)]

REPORT = json.dumps({"decision": "report", "summary": "one finding",
                     "items": [{"id": "#7", "title": "Flaky checkout test"}]})
NOOP = json.dumps({"decision": "noop", "summary": "nothing to do", "items": []})


def last_entry(repo: Path) -> dict:
    return json.loads((repo / "loop-run-log.md").read_text().strip().splitlines()[-1])


def claude_env(tmp_path: Path, server: ModelServer) -> dict[str, str]:
    if _bundled_claude() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("claude CLI (claude-agent-sdk) required under CI=true")
        pytest.skip("claude CLI not installed")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": "test", "HOME": str(home),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
            "LOOP_RUNTIME_AGENT_ENV": "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC,DISABLE_AUTOUPDATER"}


def test_claude_usage_lands_exactly_in_the_run_log(tmp_path: Path) -> None:
    """The real Claude CLI's reported usage (input + cache write + cache read + output) is the tick's tokens."""
    usage = {"input_tokens": 1200, "output_tokens": 300, "cache_creation_input_tokens": 100,
             "cache_read_input_tokens": 400}
    repo = make_repo(tmp_path / "repo", {"README.md": "hello\n"})
    with ModelServer([{"text": REPORT, "usage": usage}]) as server:
        proc = run_cli("run", "daily-triage", "--backend", "claude", cwd=repo, env=claude_env(tmp_path, server))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = last_entry(repo)
    assert entry["outcome"] == "report-only" and entry["tokens_estimate"] == 2000
    status = json.loads(run_cli("status", "--json", cwd=repo).stdout)
    (lp,) = [x for x in status["loops"] if x["pattern"] == "daily-triage"]
    assert lp["budget"]["spent"] == 2000
    transcripts = list((repo / ".loop-runtime" / "transcripts").rglob("*.jsonl"))
    assert transcripts and "test" not in transcripts[0].read_text().split('"apiKeySource"')[0][-20:]


def test_codex_usage_lands_exactly_in_the_run_log(tmp_path: Path) -> None:
    """The real Codex CLI's turn.completed usage (cached ⊂ input) is the tick's tokens."""
    codex = npm_tools.bin_path("codex")
    repo = make_repo(tmp_path / "repo", {"README.md": "hello\n"})
    usage = {"input_tokens": 1500, "input_tokens_details": {"cached_tokens": 500}, "output_tokens": 300}
    with ModelServer([{"text": REPORT, "usage": usage}]) as server:
        home = npm_tools.codex_home_dir()
        (home / "config.toml").write_text(
            'model_provider = "local"\nmodel = "gpt-test"\n[model_providers.local]\nname = "local"\n'
            f'base_url = "{server.base_url}/v1"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n')
        env = {"CODEX_HOME": str(home), "OPENAI_API_KEY": "test",
               "PATH": f"{codex.parent}{os.pathsep}{os.environ['PATH']}"}
        proc = run_cli("run", "daily-triage", "--backend", "codex", cwd=repo, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert last_entry(repo)["tokens_estimate"] == 1800


def test_openai_api_usage_lands_exactly_in_the_run_log(tmp_path: Path) -> None:
    """The OpenAI-compatible API backend sums each response's usage."""
    repo = make_repo(tmp_path / "repo", {"README.md": "hello\n"})
    with ModelServer([{"text": REPORT, "usage": {"prompt_tokens": 900, "completion_tokens": 100,
                                                  "prompt_tokens_details": {"cached_tokens": 200}}}]) as server:
        write(repo, "loop-runtime.toml", f'backend = "openai"\nmodel = "local-model"\n'
                                         f'openai_base_url = "{server.base_url}/v1"\n')
        proc = run_cli("run", "daily-triage", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert last_entry(repo)["tokens_estimate"] == 1000


def test_noop_fingerprint_skips_the_backend_until_something_changes(tmp_path: Path) -> None:
    """Two ticks on unchanged inputs: the second costs 0 tokens and calls no backend; a new commit → called."""
    repo = make_repo(tmp_path / "repo", {"README.md": "hello\n"})
    usage = {"input_tokens": 2500, "output_tokens": 500}
    with ModelServer([{"text": NOOP, "usage": usage, "repeat": 5}]) as server:
        env = claude_env(tmp_path, server)
        first = run_cli("run", "ci-sweeper", "--backend", "claude", cwd=repo, env=env)
        assert first.returncode == 0, first.stderr
        calls = len(server.bodies("/v1/messages"))
        second = run_cli("run", "ci-sweeper", "--backend", "claude", cwd=repo, env=env)
        assert second.returncode == 0 and len(server.bodies("/v1/messages")) == calls
        assert last_entry(repo)["tokens_estimate"] == 0 and "exit early" in second.stdout
        write(repo, "src/new.py", "x = 1\n")
        git(repo, "add", "src/new.py")
        git(repo, "commit", "-qm", "new code")
        third = run_cli("run", "ci-sweeper", "--backend", "claude", cwd=repo, env=env)
        assert third.returncode == 0 and len(server.bodies("/v1/messages")) > calls
        assert last_entry(repo)["tokens_estimate"] == 3000


def test_missing_binary_is_a_one_line_error(tmp_path: Path) -> None:
    """`--backend codex` with no codex on PATH: one line naming what to install, exit 1."""
    proc = run_cli("run", "daily-triage", "--backend", "codex", cwd=tmp_path,
                   env={"PATH": "/nonexistent", "OPENAI_API_KEY": "x"})
    assert proc.returncode == 1 and "npm i -g @openai/codex" in proc.stderr and "Traceback" not in proc.stderr
