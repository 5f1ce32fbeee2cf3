"""Real agent backends: Claude Code CLI, Codex CLI and OpenAI-compatible chat APIs.

Each implements ``ports.AgentBackend``: one ``run(request)`` is one fresh agent session
in the request's working directory, bounded by its token limit, deadline and stop
check, and returns exact usage (fail closed when the provider reported none). Build
one with ``make_backend(name, **config)`` in the composition root (CLI or worker).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ...errors import ConfigError
from ...ports import AgentBackend
from .claude_cli import ClaudeCliBackend
from .codex_cli import CodexCliBackend
from .openai_api import OpenAIBackend

BACKENDS = ("claude", "codex", "openai")
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


def make_backend(name: str, **config: Any) -> AgentBackend:
    """The backend called ``name``, configured from project-config keys.

    Keys used (others are ignored, so a whole project config can be passed):
    ``model``, ``binary``, ``env`` (credential source, default ``os.environ``),
    ``codex_home`` (codex), ``base_url``, ``api_key``, ``max_retries``, ``transport`` (openai),
    ``sandbox`` (a ``ports.Sandbox``: claude runs inside it; openai runs its ``run_command`` there;
    codex keeps its own sandbox, which its ``-s`` flags configure).
    """
    model = config.get("model")
    sandbox = config.get("sandbox")
    env: Mapping[str, str] | None = config.get("env")
    if name == "claude":
        return ClaudeCliBackend(binary=config.get("binary"), model=model, env=env, sandbox=sandbox)
    if name == "codex":
        return CodexCliBackend(binary=config.get("binary"), model=model, env=env,
                               codex_home=config.get("codex_home"))
    if name == "openai":
        source = os.environ if env is None else env
        if not model:
            raise ConfigError("", "model", None, message="the openai backend needs a model: pass --model "
                              "or set model in loop-runtime.toml")
        base_url = config.get("base_url") or source.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL
        api_key = (config.get("api_key") or source.get("LOOP_RUNTIME_OPENAI_API_KEY")
                   or source.get("OPENAI_API_KEY"))
        return OpenAIBackend(base_url=base_url, model=model, api_key=api_key,
                             max_retries=int(config.get("max_retries", 4)), transport=config.get("transport"),
                             sandbox=sandbox)
    raise ConfigError("", "backend", name, valid=BACKENDS)


__all__ = ["BACKENDS", "ClaudeCliBackend", "CodexCliBackend", "OpenAIBackend", "make_backend"]
