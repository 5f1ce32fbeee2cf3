"""Optional loop-runtime.toml and its environment overrides."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from loop_runtime.adapters.project_files import load_project_config
from loop_runtime.errors import ConfigError
from loop_runtime.formats import project_config
from loop_runtime.formats.project_config import (
    PatternConfig,
    ProjectConfig,
    parse_project_config,
)

FULL = """
backend = "claude"
model = "claude-sonnet-4-5"
test_command = "pytest -q"
test_timeout_s = 120
max_attempts = 2
global_daily_cap = 2000000
notify = ["mailto://ops@example.com"]
dashboard_token = "s3cret"
discovery = ["gh issue list --json number,title"]
openai_base_url = "http://localhost:8000/v1"
agent_timeout_s = 300.5
max_turns = 12

[patterns.daily-triage]
level = "L2"
cadence = "1d"
backend = "codex"
model = "gpt-5-codex"
early_exit = true
discovery = ["gh pr list"]
enabled = false
daily_cap = 50000
"""


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_project_config(text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_every_key_is_read() -> None:
    """A file using every documented key parses to the matching values."""
    config = parse_project_config(FULL)
    assert (config.backend, config.model, config.test_command) == ("claude", "claude-sonnet-4-5", "pytest -q")
    assert (config.test_timeout_s, config.max_attempts, config.global_daily_cap) == (120.0, 2, 2_000_000)
    assert config.notify == ("mailto://ops@example.com",)
    assert config.dashboard_token == "s3cret"
    assert config.discovery == ("gh issue list --json number,title",)
    assert (config.openai_base_url, config.agent_timeout_s, config.max_turns) == ("http://localhost:8000/v1", 300.5, 12)
    assert config.for_pattern("daily-triage") == PatternConfig(
        level="L2", cadence="1d", backend="codex", model="gpt-5-codex", early_exit=True,
        discovery=("gh pr list",), enabled=False, daily_cap=50000,
    )


def test_empty_file_is_all_defaults() -> None:
    """An empty file gives the documented defaults."""
    config = parse_project_config("")
    assert config == ProjectConfig()
    assert (config.backend, config.test_timeout_s, config.max_attempts, config.max_turns) == ("mock", 600.0, 3, 30)
    assert config.for_pattern("anything") == PatternConfig()


def test_token_is_not_in_repr() -> None:
    """The dashboard token never shows up in a logged repr."""
    assert "s3cret" not in repr(parse_project_config(FULL))


def test_docstring_documents_every_key() -> None:
    """The module docstring (copied into the README) names every config key."""
    doc = project_config.__doc__ or ""
    for f in fields(ProjectConfig) + fields(PatternConfig):
        if f.name not in ("patterns", "mcp", "mcp_servers", "github", "backends", "temporal"):  # tables
            assert f"{f.name} =" in doc, f.name
    assert "[patterns.daily-triage]" in doc and "[mcp]" in doc and "[github]" in doc and "[backends.gemini]" in doc
    assert "[temporal]" in doc
    for f in fields(project_config.BackendConfig):
        assert f"{f.name} =" in doc, f.name
    from loop_runtime.formats.github_config import GithubConfig

    for f in fields(GithubConfig):
        assert f"{f.name} =" in doc.split("[github]", 1)[1], f"github.{f.name}"
    for key in project_config._TEMPORAL:
        assert f"{key} =" in doc.split("[temporal]", 1)[1], f"temporal.{key}"


def test_unknown_key_names_key_and_valid_keys() -> None:
    """An unknown top-level key is refused naming it and the valid keys."""
    message = _error('backnd = "claude"\n')
    assert message.startswith("loop-runtime.toml: unknown key 'backnd' (valid: agent_timeout_s, backend, ")


def test_unknown_pattern_key_is_named_with_its_table() -> None:
    """An unknown key in a pattern table is named with its full path."""
    message = _error('[patterns.daily-triage]\nlevl = "L1"\n')
    assert message.startswith("loop-runtime.toml: unknown key 'patterns.daily-triage.levl' (valid: backend, cadence, ")


def test_bad_level_names_field_and_valid_levels() -> None:
    """A level outside L0–L3 is one line naming patterns.<id>.level."""
    assert _error('[patterns.daily-triage]\nlevel = "L4"\n') == (
        "loop-runtime.toml: patterns.daily-triage.level invalid: 'L4' (valid: L0, L1, L2, L3)"
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('backend = "gpt"', "backend"),
        ("max_attempts = 0", "max_attempts"),
        ("max_attempts = true", "max_attempts"),
        ('test_timeout_s = "10m"', "test_timeout_s"),
        ("global_daily_cap = 1.5", "global_daily_cap"),
        ("notify = [1, 2]", "notify"),
        ('model = ""', "model"),
        ('[patterns.ci-sweeper]\ncadence = "15s"', "patterns.ci-sweeper.cadence"),
        ('[patterns.ci-sweeper]\nearly_exit = "yes"', "patterns.ci-sweeper.early_exit"),
        ("[patterns.ci-sweeper]\ndaily_cap = -1", "patterns.ci-sweeper.daily_cap"),
        ("[patterns.ci-sweeper]\ncadence = 15", "patterns.ci-sweeper.cadence"),
    ],
)
def test_wrong_types_name_the_field(text: str, field: str) -> None:
    """Wrong types and values are one-line errors naming the dotted field."""
    assert f"loop-runtime.toml: {field} invalid: " in _error(text)


def test_bad_pattern_table_shapes() -> None:
    """patterns must be tables keyed by valid ids."""
    assert "pattern id invalid: 'Daily Triage'" in _error('[patterns."Daily Triage"]\nlevel = "L1"\n')
    assert "patterns must be a table" in _error('patterns = "all"\n')
    assert "patterns.x must be a table" in _error('patterns = { x = 3 }\n')


def test_toml_syntax_error_is_one_line() -> None:
    """A TOML syntax error names the file and position."""
    assert _error("backend = \n").startswith("loop-runtime.toml: TOML syntax error: ")


def test_single_string_lists_are_accepted() -> None:
    """notify and discovery accept a single string for convenience."""
    config = parse_project_config('notify = "mailto://a@b.c"\ndiscovery = "gh issue list"\n')
    assert (config.notify, config.discovery) == (("mailto://a@b.c",), ("gh issue list",))


def test_load_without_file_uses_defaults(tmp_path: Path) -> None:
    """The file is optional: no file, no error, defaults."""
    assert load_project_config(tmp_path, env={}) == ProjectConfig()


def test_load_reads_the_file_and_names_its_path(tmp_path: Path) -> None:
    """A present file is parsed; its errors carry the real path."""
    path = tmp_path / "loop-runtime.toml"
    path.write_text('backend = "codex"\n', encoding="utf-8")
    assert load_project_config(tmp_path, env={}).backend == "codex"
    path.write_text('[patterns.daily-triage]\nlevel = "L7"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_project_config(tmp_path, env={})
    assert str(info.value).startswith(f"{path}: patterns.daily-triage.level invalid: 'L7'")


def test_environment_overrides_file(tmp_path: Path) -> None:
    """LOOP_RUNTIME_* variables override the file; NOTIFY is comma-separated; empty values are unset."""
    (tmp_path / "loop-runtime.toml").write_text(FULL, encoding="utf-8")
    env = {
        "LOOP_RUNTIME_BACKEND": "openai",
        "LOOP_RUNTIME_MODEL": "local-model",
        "LOOP_RUNTIME_TEST_COMMAND": "make test",
        "LOOP_RUNTIME_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "LOOP_RUNTIME_DASHBOARD_TOKEN": "tok",
        "LOOP_RUNTIME_NOTIFY": " mailto://a@b.c , ,slack://x ",
        "UNRELATED": "x",
    }
    config = load_project_config(tmp_path, env=env)
    assert (config.backend, config.model, config.test_command) == ("openai", "local-model", "make test")
    assert (config.openai_base_url, config.dashboard_token) == ("http://127.0.0.1:9/v1", "tok")
    assert config.notify == ("mailto://a@b.c", "slack://x")
    assert config.max_turns == 12
    unchanged = load_project_config(tmp_path, env={"LOOP_RUNTIME_BACKEND": ""})
    assert unchanged.backend == "claude"


def test_bad_backend_in_environment() -> None:
    """An invalid LOOP_RUNTIME_BACKEND is a ConfigError naming the variable."""
    with pytest.raises(ConfigError) as info:
        load_project_config(Path("/nonexistent-root"), env={"LOOP_RUNTIME_BACKEND": "gpt"})
    assert str(info.value) == (
        "environment: LOOP_RUNTIME_BACKEND invalid: 'gpt' (valid: mock, claude, codex, openai, grok, opencode, gemini)"
    )


def test_checks_cover_every_dataclass_field() -> None:
    """Every ProjectConfig/PatternConfig field has a validator (no key silently unsupported)."""
    tables = {"patterns", "mcp", "mcp_servers", "github", "backends", "temporal"}  # [github]: formats.github_config
    assert set(project_config._TOP) | tables == {f.name for f in fields(ProjectConfig)}
    assert set(project_config._PATTERN) == {f.name for f in fields(PatternConfig)}
    assert set(project_config._BACKEND) == {f.name for f in fields(project_config.BackendConfig)}


def test_the_temporal_table_is_checked_like_the_rest() -> None:
    """``[temporal]`` (issue 16): where the project's Temporal is; a wrong key or value is one line."""
    cfg = parse_project_config('[temporal]\naddress = "temporal.internal:7233"\nescalation_expiry_s = 3600\n')
    assert dict(cfg.temporal) == {"address": "temporal.internal:7233", "escalation_expiry_s": 3600}
    assert dict(parse_project_config("").temporal) == {}
    assert _error('[temporal]\nadress = "x"\n').startswith("loop-runtime.toml: unknown key 'temporal.adress' (valid: ")
    assert "temporal.escalation_expiry_s" in _error("[temporal]\nescalation_expiry_s = -1\n")
    assert "temporal must be a [temporal] table" in _error('temporal = "localhost:7233"\n')
