"""Which agent backend a tick talks to, and the sandbox, MCP servers and GitHub session around it.

Why a module of its own: the CLI's ``run``, the daemon, the dry run, resume and the Temporal
worker all build the same backend from the same settings (``--backend`` > the loop's
``[patterns.<id>]`` > the project's ``backend`` > mock); built in one place, a setting read
here holds for every driver.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .runtime import Project

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..core.plan import Plan
    from ..ports import AgentBackend, Sandbox

BACKENDS = ("mock", "claude", "codex", "openai", "grok", "opencode", "gemini")
LEVELS = ("L0", "L1", "L2", "L3")


def backend_name(project: Project, plan: Plan, opts: Any) -> str:
    """The backend of one loop: ``opts.backend`` (``--backend``) > the loop's setting > the project's > mock."""
    name = opts.backend or project.config.for_pattern(plan.pattern_id).backend or project.config.backend or "mock"
    if name not in BACKENDS:
        raise ConfigError("--backend", "backend", name, valid=BACKENDS)
    return name


def make_backend(name: str, project: Project, plan: Plan, opts: Any, memory: Any = None,
                 sandbox: Any = None) -> AgentBackend:
    """The backend ``name`` for ``plan``; ``opts`` gives ``scenario`` (mock) and ``model`` (``--model``)."""
    if name == "mock":
        from ..adapters.mock import MockBackend, load_scenario

        return MockBackend(load_scenario(opts.scenario), memory=memory, root=str(project.root))
    from ..adapters.agents import make_backend as real_backend

    cfg = project.config
    table = cfg.for_backend(name)
    model = opts.model or cfg.for_pattern(plan.pattern_id).model or table.model or cfg.model
    # openai_base_url is the openai backend's endpoint only; [backends.<name>] base_url is the real API
    # behind the metering proxy (the CLI's own variable, e.g. ANTHROPIC_BASE_URL, still wins).
    base_url = table.base_url or (cfg.openai_base_url if name == "openai" else None)
    return real_backend(name, model=model, base_url=base_url, api_key_env=table.api_key_env,
                        sandboxed=table.sandboxed, sandbox=sandbox)


def project_sandbox(project: Project, level: str) -> Sandbox:
    """The project's ``ports.Sandbox`` (``sandbox`` in loop-runtime.toml); srt missing under "srt" is an error."""
    from ..adapters.sandbox import SandboxLimits, make_sandbox

    cfg = project.config
    limits = SandboxLimits(cpu_s=cfg.sandbox_cpu_s, memory_mb=cfg.sandbox_memory_mb, processes=cfg.sandbox_processes)
    return make_sandbox(cfg.sandbox, root=project.root, level=level, allow_domains=cfg.sandbox_allow_domains,
                        limits=limits)


def sandbox_note(sandbox: Any, backend: str) -> str | None:
    """The line every tick of a real agent logs while its agents and tests run unconfined."""
    if backend == "mock" or sandbox.active:
        return None
    return f"sandbox off: {sandbox.reason} — agents get no shell; tests run unconfined"


def mcp_by_level(project: Project) -> dict[str, Mapping[str, Any]]:
    """Level → the MCP servers ``[mcp]`` lists for it (none unless listed)."""
    return {level: project.config.mcp_for(level) for level in LEVELS}


def github_session(project: Project, plan: Plan) -> Any:
    """The GitHub connector for one tick, or None when it is off (no repository/token, or disabled)."""
    from ..adapters.github import GithubSession, resolve

    found = resolve(project.root, project.config.github, os.environ)
    if found.settings is None:
        return None
    return GithubSession(project.root, found.settings, plan.pattern_id,
                         deadline_s=env_seconds("LOOP_RUNTIME_GITHUB_DEADLINE_S", 120.0),
                         backoff_s=env_seconds("LOOP_RUNTIME_GITHUB_BACKOFF_S", 1.0))


def env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment (tests shorten GitHub retries with it)."""
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        raise ConfigError(name, name, os.environ.get(name), message=f"{name} must be a number of seconds") from None
    if not 0 < value < 86_400:
        raise ConfigError(name, name, value, message=f"{name} must be between 0 and 86400 seconds")
    return value
