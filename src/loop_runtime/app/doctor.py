"""``loop-runtime doctor``: is this project ready to run its loops, and if not, what fixes it.

Each check is cheap (no agent call; one GitHub API call when the connector is on) and
ends as a ``core.doctor.Check``: ready, informational, a human must act (log in, grant
a permission, add a test command), or broken (a file that does not parse).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.doctor import BROKEN, HUMAN, INFO, OK, Check
from ..errors import ConfigError, GithubError, LoopError


def run_checks(root: Path, env: Mapping[str, str] | None = None) -> list[Check]:
    env = os.environ if env is None else env
    checks: list[Check] = []
    project = _files(root, checks)
    checks += _git(root)
    if project is not None:
        checks.append(_tests(project))
        checks += _backends(project, env)
        checks += _github(project, env)
    checks.append(_temporal(env))
    return checks


# ---------------------------------------------------------------------------- files


def _files(root: Path, checks: list[Check]) -> Any:
    from .preflight import preflight
    from .runtime import load_project

    try:
        project = load_project(root)
    except ConfigError as e:
        checks.append(Check("files", "registry / LOOP.md / loop-runtime.toml", BROKEN, str(e), "fix the file named"))
        return None
    checks.append(Check("files", "registry / LOOP.md / loop-runtime.toml", OK,
                        f"{len(project.registry.patterns)} pattern(s), {len(project.enabled_patterns())} enabled"))
    bad = 0
    for pid in project.enabled_patterns():
        try:
            plan = project.plan(pid)
            preflight(project, plan, level=plan.level, backend="mock", dry_run=True, check_scenario=False)
        except ConfigError as e:
            bad += 1
            checks.append(Check("files", f"{pid} state files", BROKEN, str(e), "fix the file named"))
    if not bad:
        checks.append(Check("files", "state files", OK, "every enabled loop's files parse"))
    for name, parse in (("repair.yaml", _parse_repair), ("promotion.yaml", _parse_promotion)):
        text = project.read(name)
        if text is None:
            continue
        try:
            parse(text)
            checks.append(Check("files", name, OK, "valid"))
        except ConfigError as e:
            checks.append(Check("files", name, BROKEN, str(e), f"fix {name}"))
    return project


def _parse_repair(text: str) -> None:
    from ..formats.repair import parse_repair_contract

    parse_repair_contract(text)


def _parse_promotion(text: str) -> None:
    from ..formats.promotion import parse_promotion_contract

    parse_promotion_contract(text)


# ---------------------------------------------------------------------------- git, tests


def _git_out(root: Path, *args: str) -> tuple[int, str]:
    try:
        p = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20,
                           stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e)
    return p.returncode, p.stdout.strip()


def _git(root: Path) -> list[Check]:
    if shutil.which("git") is None:
        return [Check("git", "git", HUMAN, "git is not installed", "install git")]
    code, inside = _git_out(root, "rev-parse", "--is-inside-work-tree")
    if code != 0 or inside != "true":
        return [Check("git", "repository", HUMAN, "not a git repository: L2/L3 loops need worktrees",
                      "git init && git add -A && git commit -m init")]
    code, head = _git_out(root, "rev-parse", "--verify", "-q", "HEAD")
    if code != 0:
        return [Check("git", "repository", HUMAN, "no commit yet: worktrees branch from HEAD",
                      "git add -A && git commit -m init")]
    _, branch = _git_out(root, "symbolic-ref", "-q", "--short", "HEAD")
    _, dirty = _git_out(root, "status", "--porcelain", "--untracked-files=no")
    out = [Check("git", "repository", OK, f"on {branch or 'a detached HEAD'} at {head[:12]}")]
    if dirty:
        out.append(Check("git", "working tree", INFO, f"{len(dirty.splitlines())} uncommitted change(s) "
                         "(worktrees start from HEAD, not from them)"))
    return out


def _tests(project: Any) -> Check:
    from ..adapters.test_runner import detect_test_command

    configured = project.config.test_command
    if configured:
        return Check("tests", "test command", OK, f"{configured} (loop-runtime.toml)")
    found = detect_test_command(project.root)
    if found:
        return Check("tests", "test command", OK, f"{found} (detected)")
    return Check("tests", "test command", HUMAN, "no test command found: the verifier would judge fixes untested",
                 'set test_command = "…" in loop-runtime.toml')


# ---------------------------------------------------------------------------- backends


def _backends(project: Any, env: Mapping[str, str]) -> list[Check]:
    chosen = env.get("LOOP_RUNTIME_BACKEND") or project.config.backend or "mock"
    home = Path(env.get("HOME", "~")).expanduser()
    codex_home = Path(env.get("CODEX_HOME") or home / ".codex")
    claude_dir = Path(env.get("CLAUDE_CONFIG_DIR") or home / ".claude")
    facts = {
        "claude": (shutil.which("claude", path=env.get("PATH")) or _bundled_claude(),
                   bool(env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_AUTH_TOKEN"))
                   or (claude_dir / ".credentials.json").exists() or (home / ".claude.json").exists(),
                   "claude login (or set ANTHROPIC_API_KEY)",
                   "install Claude Code: npm i -g @anthropic-ai/claude-code"),
        "codex": (shutil.which("codex", path=env.get("PATH")),
                  bool(env.get("OPENAI_API_KEY") or env.get("CODEX_API_KEY")) or (codex_home / "auth.json").exists(),
                  "codex login (or set OPENAI_API_KEY)", "install Codex: npm i -g @openai/codex"),
        "openai": ("(HTTP API)", bool(env.get("OPENAI_API_KEY")) or bool(project.config.openai_base_url),
                   "set OPENAI_API_KEY (or openai_base_url for a local server)", ""),
    }
    from ..adapters.agents import CLI_BACKENDS

    for name, cls in CLI_BACKENDS.items():  # gemini, opencode, grok: the backend's own binary and key names
        keys = tuple(k for k in (project.config.for_backend(name).api_key_env, *cls.key_vars) if k)
        facts[name] = (shutil.which(cls.binary_name, path=env.get("PATH")), any(env.get(k) for k in keys),
                       f"set {' or '.join(keys)}", cls.install_hint)
    out = [Check("backend", "mock", OK if chosen == "mock" else INFO,
                 "the configured backend: no agent runs (set backend in loop-runtime.toml)" if chosen == "mock"
                 else "available for dry runs")]
    for name, (binary, authed, login, install) in facts.items():
        needed = name == chosen
        if not binary:
            out.append(Check("backend", name, HUMAN if needed else INFO, "not installed", install))
        elif not authed:
            out.append(Check("backend", name, HUMAN if needed else INFO, f"{binary}: not authenticated", login))
        else:
            out.append(Check("backend", name, OK if needed else INFO, f"{binary}: authenticated"
                             + (" (the configured backend)" if needed else "")))
    return out


def _bundled_claude() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec is None or not spec.origin:
        return None
    bundled = Path(spec.origin).parent / "_bundled" / "claude"
    return str(bundled) if bundled.is_file() else None


# ---------------------------------------------------------------------------- GitHub, Temporal


def _github(project: Any, env: Mapping[str, str]) -> list[Check]:
    from ..adapters.github import resolve

    found = resolve(project.root, project.config.github, env)
    out = [Check("github", "configuration", HUMAN, p, "see the message") for p in found.problems]
    s = found.settings
    if s is None:
        return [*out, Check("github", "connector", INFO, found.reason
                            + (f" (repository {found.repository} from {found.repository_source})"
                               if found.repository else ""),
                            "export GITHUB_TOKEN or `gh auth login`" if found.repository else "")]
    out.append(Check("github", "connector", OK, f"{s.repository} ({s.repository_source}) via {s.api_url}, "
                     f"token from {s.token_source}"))
    from ..adapters.github.client import GithubClient, GithubUnreachable, models

    try:
        with GithubClient(s, deadline_s=15.0, backoff_s=0.5) as client:
            repo, _ = client.get(f"/repos/{s.repository}", models().FullRepository, permission="metadata: read")
    except GithubUnreachable as e:
        return [*out, Check("github", "API", HUMAN, str(e), f"check the network and {s.api_url}")]
    except (GithubError, LoopError) as e:
        return [*out, Check("github", "token", HUMAN, str(e), "grant the token the permission named, or replace it")]
    perms = getattr(repo, "permissions", None)
    push = bool(getattr(perms, "push", False))
    if push:
        out.append(Check("github", "permissions", OK, "the token can push loop/* branches and open pull requests"))
    else:
        out.append(Check("github", "permissions", HUMAN, "the token can read but not push: L2 draft PRs need "
                         "contents: write and pull_requests: write", "grant those permissions (Actions: "
                         "`permissions:` in the workflow)"))
    return out


def _temporal(env: Mapping[str, str]) -> Check:
    address = env.get("TEMPORAL_ADDRESS", "").strip()
    if not address:
        return Check("temporal", "server", INFO, "not configured (TEMPORAL_ADDRESS unset): loops run locally")
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 7233)), timeout=3):
            pass
    except (OSError, ValueError) as e:
        return Check("temporal", "server", HUMAN, f"{address} unreachable: {e}",
                     "start Temporal or fix TEMPORAL_ADDRESS")
    return Check("temporal", "server", OK, f"{address} reachable")
