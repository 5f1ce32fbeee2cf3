"""`loop-runtime doctor`: what is ready, what is missing (each with its fix); exit 0 ready / 2 human / 1 broken."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli
from tests.fakes.github_server import TOKEN, GithubStandIn
from tests.test_act_path import project

CLEAN = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "TEMPORAL_ADDRESS": "", "GITHUB_TOKEN": "", "GH_TOKEN": "",
         "GITHUB_REPOSITORY": "", "ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": "", "LOOP_RUNTIME_BACKEND": ""}


def doctor(repo: Path, **env: str):
    return run_cli("doctor", "--json", cwd=repo, env={**CLEAN, **env})


def by_area(doc: dict, area: str) -> list[dict]:
    return [c for c in doc["checks"] if c["area"] == area]


def test_a_ready_project_with_github_exits_0(tmp_path: Path) -> None:
    repo = project(tmp_path)
    with GithubStandIn() as gh:
        proc = doctor(repo, GITHUB_TOKEN=TOKEN, GITHUB_REPOSITORY=gh.repo.full_name, GITHUB_API_URL=gh.url)
        assert len(gh.requests) == 1  # one cheap API call
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["status"] == "ready", proc.stdout
    gh_checks = {c["name"]: c for c in by_area(doc, "github")}
    assert gh_checks["permissions"]["status"] == "ok" and "GITHUB_TOKEN" in gh_checks["connector"]["detail"]
    assert TOKEN not in proc.stdout + proc.stderr


def test_a_bad_token_needs_a_human_and_names_its_source(tmp_path: Path) -> None:
    repo = project(tmp_path)
    with GithubStandIn() as gh:
        proc = doctor(repo, GH_TOKEN="ghp_notthetokennotthetoken000000000000", GITHUB_REPOSITORY=gh.repo.full_name,
                      GITHUB_API_URL=gh.url)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 2
    token = [c for c in by_area(doc, "github") if c["status"] == "human"]
    assert token and "401" in token[0]["detail"] and "GH_TOKEN" in token[0]["detail"] and token[0]["fix"]


def test_missing_test_command_and_backend_login_are_human(tmp_path: Path) -> None:
    repo = project(tmp_path, {"loop-runtime.toml": 'backend = "codex"\n'})
    (repo / "tests" / "test_calc.py").unlink()
    proc = run_cli("doctor", cwd=repo, env=CLEAN)
    assert proc.returncode == 2
    assert "! backend: codex" in proc.stdout and "fix:" in proc.stdout


def test_a_broken_file_exits_1_naming_it(tmp_path: Path) -> None:
    repo = project(tmp_path, {"loop-runtime.toml": '[github]\nrepository = "not a repo"\n'})
    proc = doctor(repo)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["status"] == "broken"
    broken = [c for c in doc["checks"] if c["status"] == "broken"]
    assert "loop-runtime.toml" in broken[0]["detail"] and "github.repository" in broken[0]["detail"]


def test_temporal_when_configured_is_checked(tmp_path: Path) -> None:
    repo = project(tmp_path)
    proc = doctor(repo, TEMPORAL_ADDRESS="127.0.0.1:9")
    doc = json.loads(proc.stdout)
    assert by_area(doc, "temporal")[0]["status"] == "human" and proc.returncode == 2


def test_every_cli_backend_is_checked_for_its_binary_and_its_own_key(tmp_path: Path) -> None:
    """gemini, opencode and grok too: the binary on PATH and the key variable the CLI reads (or
    ``[backends.<name>] api_key_env``)."""
    repo = project(tmp_path, {"loop-runtime.toml": 'backend = "gemini"\n[backends.grok]\napi_key_env = "MY_XAI"\n'})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gemini", "grok"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    path = f"{bin_dir}:/usr/bin:/bin"
    doc = json.loads(doctor(repo, PATH=path).stdout)
    backends = {c["name"]: c for c in by_area(doc, "backend")}
    assert backends["gemini"]["status"] == "human" and "GEMINI_API_KEY" in backends["gemini"]["fix"]
    assert backends["opencode"]["detail"] == "not installed" and "opencode-ai" in backends["opencode"]["fix"]
    assert "MY_XAI" in backends["grok"]["fix"]
    doc = json.loads(doctor(repo, PATH=path, GEMINI_API_KEY="k", MY_XAI="x").stdout)
    backends = {c["name"]: c for c in by_area(doc, "backend")}
    assert backends["gemini"]["status"] == "ok" and "authenticated" in backends["gemini"]["detail"]
    assert "authenticated" in backends["grok"]["detail"]
