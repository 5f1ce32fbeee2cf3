"""A YAML alias bomb ("billion laughs") in any YAML the runtime reads fails fast with one line
(issue 10 §6): it must not hang a tick or exhaust memory, and must leave the tree untouched."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import pytest

from loop_runtime.adapters.mock import load_scenario
from loop_runtime.errors import ConfigError
from loop_runtime.formats.gate_config import parse_gate_yaml
from loop_runtime.formats.registry import parse_registry
from loop_runtime.formats.yaml_guard import refuse_alias_bombs
from tests.conftest import run_cli
from tests.support.gitrepo import make_repo


def bomb(levels: int = 9, width: int = 9, head: str = "version: 1", tail_key: str = "denylist") -> str:
    lines = [head, "a: &a [" + ", ".join(['"lol"'] * width) + "]"]
    prev = "a"
    for n in "bcdefghijklmnop"[: levels - 1]:
        lines.append(f"{n}: &{n} [" + ", ".join([f"*{prev}"] * width) + "]")
        prev = n
    lines.append(f"{tail_key}: *{prev}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("parse", [
    lambda t: parse_gate_yaml(t, file="gate.yaml"),
    lambda t: parse_registry(t.replace("version: 1", "patterns: []"), file="patterns/registry.yaml"),
])
def test_every_yaml_reader_refuses_an_alias_bomb_fast(parse) -> None:
    start = time.monotonic()
    with pytest.raises(ConfigError, match="alias"):
        parse(bomb())
    assert time.monotonic() - start < 5


def test_a_scenario_alias_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(head="triage: {decision: noop}", tail_key="verifier"))
    with pytest.raises(ConfigError, match="alias"):
        load_scenario(str(path))


def test_recursive_and_wide_aliases() -> None:
    with pytest.raises(ConfigError):
        refuse_alias_bombs(bomb(levels=4, width=400), file="x.yaml")  # 400^4 nodes from four lines
    refuse_alias_bombs("a: &a [1, 2]\nb: *a\nc: *a\nd: '**/*.py'\n", file="x.yaml")  # ordinary reuse is fine
    with pytest.raises(ConfigError):  # a recursive alias is infinite once expanded
        refuse_alias_bombs("a: &a [1, *a]\n", file="x.yaml")


def test_ordinary_anchors_in_gate_yaml_still_load() -> None:
    policy = parse_gate_yaml("version: 1\ndenylist: &d ['secrets/**']\nauto_merge_allowlist: ['docs/**']\n",
                             file="gate.yaml")
    assert "secrets/**" in policy.denylist


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.relative_to(root).parts}


def test_a_tick_with_a_gate_yaml_bomb_exits_1_at_once_and_touches_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {
        "gate.yaml": bomb(), "conftest.py": "",
        "loop-runtime.toml": f'test_command = "{sys.executable} -m pytest -q"\n'})
    before = _snapshot(repo)
    start = time.monotonic()
    proc = run_cli("run", "ci-sweeper", "--level", "L2", "--scenario", "noop", cwd=repo, timeout=60)
    assert time.monotonic() - start < 30
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "gate.yaml" in proc.stderr and "alias" in proc.stderr
    assert _snapshot(repo) == before
    assert not (repo / ".loop-runtime").exists()
