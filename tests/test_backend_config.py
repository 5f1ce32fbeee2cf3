"""``[backends.<name>]`` in loop-runtime.toml (issue 15): each backend's real API, model and key variable."""

from __future__ import annotations

import pytest

from loop_runtime.adapters.agents import make_backend
from loop_runtime.errors import AgentNotStarted, ConfigError
from loop_runtime.formats.project_config import BackendConfig, parse_project_config


def test_backend_tables_parse() -> None:
    cfg = parse_project_config('[backends.gemini]\nbase_url = "https://gemini.example/api"\nmodel = "g-1"\n'
                               'api_key_env = "TEAM_GEMINI_KEY"\n[backends.claude]\nmodel = "opus"\n')
    assert cfg.for_backend("gemini") == BackendConfig("https://gemini.example/api", "g-1", "TEAM_GEMINI_KEY")
    assert cfg.for_backend("claude").model == "opus" and cfg.for_backend("grok") == BackendConfig()


@pytest.mark.parametrize("text, field", [
    ('[backends.gpt]\nmodel = "x"\n', "backends.gpt"),
    ('[backends.mock]\nmodel = "x"\n', "backends.mock"),
    ('[backends.grok]\nbase_url = "ftp://x"\n', "backends.grok.base_url"),
    ('[backends.grok]\napi_key_env = "A B"\n', "backends.grok.api_key_env"),
    ('[backends.grok]\nkey = "sk-..."\n', "backends.grok.key"),
    ('backends = 3\n', "backends"),
    ('[backends.claude]\nsandboxed = true\n', "backends.claude.sandboxed"),
    ('[backends.grok]\nsandboxed = "yes"\n', "backends.grok.sandboxed"),
])
def test_bad_backend_tables_are_one_line_errors(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_project_config(text, file="loop-runtime.toml")
    assert field in str(err.value) and "\n" not in str(err.value)


def test_api_key_env_hands_the_key_to_the_cli_as_its_usual_variable() -> None:
    backend = make_backend("claude", env={"TEAM_KEY": "sk-ant-team-0123456789"}, api_key_env="TEAM_KEY")
    assert backend.credentials["ANTHROPIC_API_KEY"] == "sk-ant-team-0123456789"  # type: ignore[attr-defined]
    with pytest.raises(AgentNotStarted, match="TEAM_KEY, which is not set"):
        make_backend("claude", env={}, api_key_env="TEAM_KEY")


def test_the_clis_own_variable_wins_over_the_configured_base_url() -> None:
    b = make_backend("claude", env={"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://127.0.0.1:1"},
                     base_url="https://configured.example")
    assert b.upstream == "http://127.0.0.1:1"  # type: ignore[attr-defined]
    b = make_backend("claude", env={"ANTHROPIC_API_KEY": "k"}, base_url="https://configured.example")
    assert b.upstream == "https://configured.example"  # type: ignore[attr-defined]
    b = make_backend("claude", env={"ANTHROPIC_API_KEY": "k"})
    assert b.upstream == "https://api.anthropic.com"  # type: ignore[attr-defined]


def test_openai_base_url_follows_the_same_order_env_then_config_then_official() -> None:
    env = {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://127.0.0.1:2/v1"}
    b = make_backend("openai", model="m", env=env, base_url="https://configured.example/v1")
    assert b.base_url == "http://127.0.0.1:2/v1"  # type: ignore[attr-defined]
    b = make_backend("openai", model="m", env={"OPENAI_API_KEY": "k"}, base_url="https://configured.example/v1")
    assert b.base_url == "https://configured.example/v1"  # type: ignore[attr-defined]
    b = make_backend("openai", model="m", env={"OPENAI_API_KEY": "k"})
    assert b.base_url.startswith("https://api.openai.com")  # type: ignore[attr-defined]


def test_codex_provider_overrides_point_every_provider_kind_at_the_proxy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from loop_runtime.adapters.agents.codex_cli import METERED_PROVIDER, provider_overrides

    url = "http://127.0.0.1:1/secret"
    assert provider_overrides(url, "local", {}) == ("-c", f'model_providers.local.base_url="{url}"')
    with_key = provider_overrides(url, None, {"OPENAI_API_KEY": "k"})
    assert f"model_provider=\"{METERED_PROVIDER}\"" in with_key and '"env_key" = "OPENAI_API_KEY"' in with_key[1]
    home = tmp_path / "codex"
    home.mkdir()
    (home / "auth.json").write_text("{}")
    login = provider_overrides(url, None, {"CODEX_HOME": str(home)})
    assert '"requires_openai_auth" = true' in login[1] and "env_key" not in login[1]


@pytest.mark.parametrize("name", ["gemini", "opencode", "grok"])
def test_new_backends_missing_binary_and_missing_key_are_one_line_errors(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from loop_runtime.ports import AgentRequest, Permission

    with pytest.raises(AgentNotStarted) as err:
        make_backend(name, binary=str(tmp_path / "nope"), env={})
    assert f"{name} CLI not found" in str(err.value) and "npm i -g" in str(err.value)
    fake = tmp_path / name
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    backend = make_backend(name, binary=str(fake), env={}, sandboxed=True)
    req = AgentRequest(role="implementer", prompt="p", cwd=str(tmp_path), permission=Permission.EDIT_WORKTREE,
                       token_limit=100)
    with pytest.raises(AgentNotStarted, match="has no API key: set "):
        asyncio.run(backend.run(req))
