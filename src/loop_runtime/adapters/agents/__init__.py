"""Real agent backends: Claude Code, Codex, Gemini, OpenCode and Grok CLIs, and OpenAI-compatible chat APIs.

Each implements ``ports.AgentBackend``: one ``run(request)`` is one fresh agent session
in the request's working directory, bounded by its token limit, deadline and stop
check, and returns exact usage (fail closed when the provider reported none). Every model
call goes through the per-run metering proxy (``adapters/metering_proxy``), which bills each
call from the provider's own numbers and refuses the next once the reservation is spent. Build
one with ``make_backend(name, **config)`` in the composition root (CLI or worker).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ...errors import AgentNotStarted, ConfigError
from ...ports import AgentBackend
from .claude_cli import ClaudeCliBackend
from .codex_cli import CodexCliBackend
from .gemini_cli import GeminiCliBackend
from .grok_cli import GrokCliBackend
from .openai_api import OpenAIBackend
from .opencode_cli import OpenCodeCliBackend

BACKENDS = ("claude", "codex", "openai", "grok", "opencode", "gemini")
CLI_BACKENDS = {"gemini": GeminiCliBackend, "opencode": OpenCodeCliBackend, "grok": GrokCliBackend}
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
KEY_VARIABLE = {"claude": "ANTHROPIC_API_KEY", "codex": "OPENAI_API_KEY"}  # the variable each CLI reads


def make_backend(name: str, **config: Any) -> AgentBackend:
    """The backend called ``name``, configured from project-config keys.

    Keys used (others are ignored, so a whole project config can be passed):
    ``model``, ``binary``, ``env`` (credential source, default ``os.environ``),
    ``codex_home`` (codex), ``base_url`` (the upstream API; the CLI's own variable wins),
    ``api_key``, ``max_retries``, ``transport`` (openai), ``api_key_env``, ``sandboxed`` (grok),
    ``sandbox`` (a ``ports.Sandbox``: claude, gemini and opencode run inside it — grok is refused under
    an active one, it cannot reach the metering proxy from there; openai runs its ``run_command`` there;
    codex keeps its own sandbox, which its ``-s`` flags configure).
    """
    model = config.get("model")
    sandbox = config.get("sandbox")
    env: Mapping[str, str] | None = config.get("env")
    key_env = config.get("api_key_env")
    if key_env and name in KEY_VARIABLE:  # [backends.<name>] api_key_env: hand that key over as the usual one
        source = dict(os.environ if env is None else env)
        if not source.get(key_env):
            raise AgentNotStarted(f"{name}: api_key_env names {key_env}, which is not set")
        env = {**source, KEY_VARIABLE[name]: source[key_env]}
    if name == "claude":
        return ClaudeCliBackend(binary=config.get("binary"), model=model, env=env, sandbox=sandbox,
                                base_url=config.get("base_url"))
    if name == "codex":
        return CodexCliBackend(binary=config.get("binary"), model=model, env=env,
                               codex_home=config.get("codex_home"), base_url=config.get("base_url"))
    if name in CLI_BACKENDS:
        extra = {"sandboxed": bool(config.get("sandboxed"))} if name == "grok" else {}
        return CLI_BACKENDS[name](binary=config.get("binary"), model=model, env=env,  # type: ignore[call-arg]
                                  base_url=config.get("base_url"), api_key_env=config.get("api_key_env"),
                                  sandbox=sandbox, **extra)
    if name == "openai":
        source = os.environ if env is None else env
        if not model:
            raise ConfigError("", "model", None, message="the openai backend needs a model: pass --model "
                              "or set model in loop-runtime.toml")
        # as for every backend: the variable the client itself reads wins, then loop-runtime.toml
        base_url = source.get("OPENAI_BASE_URL") or config.get("base_url") or DEFAULT_OPENAI_BASE_URL
        api_key = (config.get("api_key") or (source.get(key_env) if key_env else None)
                   or source.get("LOOP_RUNTIME_OPENAI_API_KEY")
                   or source.get("OPENAI_API_KEY"))
        return OpenAIBackend(base_url=base_url, model=model, api_key=api_key,
                             max_retries=int(config.get("max_retries", 4)), transport=config.get("transport"),
                             sandbox=sandbox)
    raise ConfigError("", "backend", name, valid=BACKENDS)


__all__ = ["BACKENDS", "ClaudeCliBackend", "CodexCliBackend", "GeminiCliBackend", "GrokCliBackend",
           "OpenAIBackend", "OpenCodeCliBackend", "make_backend"]
