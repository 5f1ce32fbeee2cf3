"""Loading a project's config files: the adapter reads, the formats parse (issue 11).

``adapters.project_files`` decides which file is read, whether it exists and what the
environment says; ``formats/`` only turns text into values. These tests pin that split:
the loader gives exactly what the parser gives for the same text, an unreadable file is one
line naming it, and no module under ``formats/`` or ``core/`` touches the file system, the
environment, a process or a database.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loop_runtime.adapters import project_files
from loop_runtime.adapters.project_files import load_gate_policy, load_project_config, load_registry
from loop_runtime.errors import ConfigError
from loop_runtime.formats.gate_config import DEFAULT_POLICY, parse_gate_yaml
from loop_runtime.formats.project_config import ProjectConfig, apply_env, parse_project_config, with_mcp_servers

SRC = Path(project_files.__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"

# ---------------------------------------------------------------------------- formats and core do no I/O

#: calls that read or probe the file system, the environment, a process or a database
IO_ATTRIBUTES = {"read_text", "read_bytes", "write_text", "write_bytes", "open", "exists", "is_file", "is_dir",
                 "iterdir", "stat", "lstat", "glob", "rglob", "mkdir", "unlink", "rmdir", "touch", "getenv", "environ",
                 "listdir", "scandir", "expanduser"}
IO_NAMES = {"open", "getenv", "environ"}


def _io_calls(path: Path) -> list[str]:
    """Every ``x.read_text(...)``/``open(...)``/``os.environ``-style use in one module, as ``line: name``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in IO_ATTRIBUTES:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in IO_NAMES and isinstance(node.ctx, ast.Load):
            found.append(f"{node.lineno}: {node.id}")
    return found


@pytest.mark.parametrize("layer", ["formats", "core"])
def test_formats_and_core_read_no_file_and_no_environment(layer: str) -> None:
    """Text in, values out: a file read or an environment lookup in these layers belongs in an adapter."""
    offenders = {str(p.relative_to(SRC)): calls for p in sorted((SRC / layer).rglob("*.py"))
                 if (calls := _io_calls(p))}
    assert offenders == {}


def test_the_io_scan_can_fail(tmp_path: Path) -> None:
    """The scan above finds each kind of access it claims to (else it would pass on anything)."""
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom pathlib import Path\n"
                      "a = Path('x').read_text()\nb = os.environ['X']\nc = open('y')\nd = Path('z').exists()\n"
                      "e = os.getenv('Y')\n")
    assert [c.split(": ")[1] for c in _io_calls(sample)] == [".read_text", ".environ", "open", ".exists", ".getenv"]


# ---------------------------------------------------------------------------- loop-runtime.toml

_values = st.one_of(st.integers(min_value=-5, max_value=10**7), st.booleans(),
                    st.text(alphabet="abcL0123 -_.:/", max_size=12), st.lists(st.text(alphabet="ab:/.", max_size=6),
                                                                               max_size=3))
_keys = st.sampled_from(["backend", "model", "test_command", "max_attempts", "max_turns", "sandbox", "notify",
                         "retention_days", "daily_summary", "unknown_key", "global_daily_cap"])


def _toml(table: dict[str, object]) -> str:
    import json

    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.dictionaries(_keys, _values, max_size=4))
def test_the_loader_gives_what_the_parser_gives_for_the_same_text(tmp_path: Path, table: dict[str, object]) -> None:
    """Same value, or the same one-line error naming the real path, field and value."""
    root = tmp_path / "p"
    root.mkdir(exist_ok=True)
    path = root / "loop-runtime.toml"
    text = _toml(table)
    path.write_text(text, encoding="utf-8")
    try:
        expected: object = parse_project_config(text, file=str(path))
    except ConfigError as exc:
        expected = str(exc)
    try:
        got: object = load_project_config(root, env={})
    except ConfigError as exc:
        got = str(exc)
    assert got == expected


def test_the_process_environment_is_the_default_and_an_explicit_one_wins(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOP_RUNTIME_BACKEND", "codex")
    assert load_project_config(tmp_path).backend == "codex"
    assert load_project_config(tmp_path).source_of("backend") == "environment variable LOOP_RUNTIME_BACKEND"
    assert load_project_config(tmp_path, env={}).backend == "mock"
    assert apply_env(ProjectConfig(), dict(os.environ)).backend == "codex"


@pytest.mark.parametrize("name", ["loop-runtime.toml", "gate.yaml", "patterns/registry.yaml"])
def test_a_file_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"backend = \"\xff\xfe\"\n")
    load = {"loop-runtime.toml": lambda: load_project_config(tmp_path, env={}),
            "gate.yaml": lambda: load_gate_policy(tmp_path), "patterns/registry.yaml": lambda: load_registry(tmp_path)}
    with pytest.raises(ConfigError) as info:
        load[name]()
    assert info.value.file == str(path) and info.value.field == "file"
    assert str(info.value).startswith(f"{path}: cannot read") and "\n" not in str(info.value)


def test_a_folder_where_a_config_file_should_be(tmp_path: Path) -> None:
    """``loop-runtime.toml`` and the registry are optional: a folder in their place is not one (defaults);
    ``gate.yaml`` as a folder cannot be read, and says so."""
    for name in ("loop-runtime.toml", "patterns/registry.yaml", "gate.yaml"):
        (tmp_path / name).mkdir(parents=True)
    assert load_project_config(tmp_path, env={}) == ProjectConfig()
    assert load_registry(tmp_path).source == "bundled"
    with pytest.raises(ConfigError, match=r"gate\.yaml: cannot read gate config: "):
        load_gate_policy(tmp_path)


# ---------------------------------------------------------------------------- .mcp.json

MCP = '{"mcpServers": {"echo": {"command": "python3", "args": ["-m", "echo"]}}}'


def test_mcp_json_is_read_only_when_mcp_names_a_server(tmp_path: Path) -> None:
    (tmp_path / "loop-runtime.toml").write_text('backend = "claude"\n')
    (tmp_path / ".mcp.json").mkdir()  # unreadable, but never read: [mcp] names nothing
    assert load_project_config(tmp_path, env={}).backend == "claude"
    (tmp_path / "loop-runtime.toml").write_text('[mcp]\nl2 = ["echo"]\n')
    with pytest.raises(ConfigError) as info:
        load_project_config(tmp_path, env={})
    assert info.value.file == str(tmp_path / ".mcp.json") and info.value.field == "file"


def test_the_mcp_resolution_is_pure_and_names_the_toml_file() -> None:
    config = parse_project_config('[mcp]\nl2 = ["echo"]\nl3 = ["gone"]\n', file="/p/loop-runtime.toml")
    with pytest.raises(ConfigError) as missing:
        with_mcp_servers(config, None, file="/p/loop-runtime.toml", mcp_file="/p/.mcp.json", root="/p")
    assert str(missing.value) == "/p/loop-runtime.toml: mcp.l2 names 'echo' but there is no .mcp.json at /p"
    with pytest.raises(ConfigError) as unknown:
        with_mcp_servers(config, MCP, file="/p/loop-runtime.toml", mcp_file="/p/.mcp.json", root="/p")
    assert unknown.value.field == "mcp.l3" and unknown.value.value == "gone"
    with pytest.raises(ConfigError) as broken:
        with_mcp_servers(config, "{", file="/p/loop-runtime.toml", mcp_file="/p/.mcp.json", root="/p")
    assert broken.value.file == "/p/.mcp.json"
    ok = parse_project_config('[mcp]\nl2 = ["echo"]\n', file="t")
    resolved = with_mcp_servers(ok, MCP, file="t", mcp_file="m", root="r")
    assert list(resolved.mcp_for("L2")) == ["echo"] and dict(resolved.mcp_for("L3")) == {}


# ---------------------------------------------------------------------------- gate.yaml


def test_gate_policy_is_the_parsed_file_or_the_default_with_a_warning(tmp_path: Path) -> None:
    policy, warning = load_gate_policy(tmp_path)
    assert policy == DEFAULT_POLICY and warning is not None and str(tmp_path) in warning
    text = (FIXTURES / "gate.yaml").read_text(encoding="utf-8") if (FIXTURES / "gate.yaml").is_file() else \
        'version: 1\ndenylist: ["**/.env"]\n'
    (tmp_path / "gate.yaml").write_text(text, encoding="utf-8")
    assert load_gate_policy(tmp_path) == (parse_gate_yaml(text, file=str(tmp_path / "gate.yaml")), None)
