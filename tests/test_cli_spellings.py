"""The CLI accepts the ecosystem's spellings, documents every option, and explains names it cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.cli import cli
from loop_runtime.formats.pattern_names import TOOL_SUFFIXES, explain_unknown, workflow_only
from tests.conftest import run_cli

IDS = ("issue-pr-repair", "pr-babysitter", "daily-triage", "ci-sweeper", "post-merge-cleanup", "dependency-sweeper",
       "changelog-drafter", "issue-triage")


def _walk(command: click.Command, path: str = "loop-runtime"):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, f"{path} {name}")


ALL_COMMANDS = list(_walk(cli))


@pytest.mark.parametrize(("path", "command"), ALL_COMMANDS, ids=[p for p, _ in ALL_COMMANDS])
def test_every_option_and_argument_has_help(path: str, command: click.Command) -> None:
    """Options carry help text; arguments are explained in the command's own help (click has no argument help)."""
    assert (command.help or "").strip(), f"{path}: no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"{path} {param.opts}: option without help"
        elif isinstance(param, click.Argument):
            assert param.human_readable_name in (command.help or ""), f"{path}: argument {param.name} not described"


@pytest.mark.parametrize(("path", "command"), [(p, c) for p, c in ALL_COMMANDS if p != "loop-runtime"],
                         ids=[p for p, _ in ALL_COMMANDS if p != "loop-runtime"])
def test_every_subcommand_accepts_root(path: str, command: click.Command) -> None:
    assert any(isinstance(p, click.Option) and "--root" in p.opts for p in command.params), path


def _project_with_one_pattern(tmp_path: Path, fixtures: Path) -> Path:
    """A project whose own registry has only ci-sweeper, so --root visibly changes what is read."""
    import yaml

    data = yaml.safe_load((fixtures / "patterns__registry.yaml").read_text())
    data["patterns"] = [p for p in data["patterns"] if p["id"] == "ci-sweeper"]
    (tmp_path / "proj" / "patterns").mkdir(parents=True)
    (tmp_path / "proj" / "patterns" / "registry.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "elsewhere").mkdir()
    return tmp_path / "proj"


@pytest.mark.parametrize("args", [["list", "--json"], ["cost", "--list"], ["plan", "ci-sweeper", "--json"]])
def test_root_after_the_subcommand_means_the_same_as_before(tmp_path: Path, fixtures: Path, args: list[str]) -> None:
    root = _project_with_one_pattern(tmp_path, fixtures)
    before = run_cli("--root", str(root), *args, cwd=tmp_path / "elsewhere")
    after = run_cli(*args, "--root", str(root), cwd=tmp_path / "elsewhere")
    assert before.returncode == after.returncode == 0, after.stderr
    assert after.stdout == before.stdout
    assert "daily-triage" not in after.stdout  # the project's registry was read, not the bundled one


def test_root_after_gate_check_reads_that_projects_gate(tmp_path: Path) -> None:
    (tmp_path / "gate.yaml").write_text("version: 1\ndenylist:\n  - 'docs/**'\n")
    proc = run_cli("gate", "check", "docs/a.md", "--root", str(tmp_path), "--json")
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["trigger"] == "denylist"


def test_gate_check_takes_loop_gates_paths_flag_with_several_values(tmp_path: Path) -> None:
    """`--paths a b`, `--paths a,b` and `a b` all check both paths (the second one is denylisted)."""
    for args in (["--paths", "src/a.py", ".env"], ["--paths", "src/a.py,.env"], ["src/a.py", ".env"],
                 ["--paths", "src/a.py", "--paths", ".env"]):
        proc = run_cli("gate", "check", *args, "--json", cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert ".env" in json.loads(proc.stdout)["reason"]
    ok = run_cli("gate", "check", "--paths", "src/a.py", "src/b.py", cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("ALLOWED")
    none = run_cli("gate", "check", cwd=tmp_path)
    assert none.returncode == 1 and "no paths" in none.stderr
    for empty in ([""], [" , ,"], ["--paths", ""]):
        proc = run_cli("gate", "check", *empty, cwd=tmp_path)
        assert proc.returncode == 1 and "at least one non-empty path" in proc.stderr, empty


@pytest.mark.parametrize("args", [["plan", "--pattern", "ci-sweeper", "--json"], ["plan", "-p", "ci-sweeper", "--json"],
                                  ["plan", "ci-sweeper", "-l", "L2", "--json"], ["plan", "ci-sweeper", "--json"]])
def test_pattern_and_level_spellings(tmp_path: Path, args: list[str]) -> None:
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["patternId"] == "ci-sweeper" if "patternId" in doc else "ci-sweeper" in proc.stdout
    if "-l" in args:
        assert "L2" in proc.stdout


def test_two_different_patterns_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli("plan", "ci-sweeper", "--pattern", "daily-triage", cwd=tmp_path)
    assert proc.returncode == 1 and "two patterns" in proc.stderr and proc.stderr.count("\n") == 1
    assert run_cli("plan", cwd=tmp_path).returncode == 1


@pytest.mark.parametrize(("typed", "suggested"), [("ci-sweper", "ci-sweeper"), ("daily-triag", "daily-triage"),
                                                  ("CI-Sweeper", "ci-sweeper"), ("Daily Triage", "daily-triage"),
                                                  ("pr-babysiter", "pr-babysitter")])
@pytest.mark.parametrize("command", ["plan", "run", "cost"])
def test_unknown_pattern_says_did_you_mean(tmp_path: Path, typed: str, suggested: str, command: str) -> None:
    args = [command, typed] + (["--dry-run"] if command == "run" else [])
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"did you mean '{suggested}'" in proc.stderr


@pytest.mark.parametrize("name", ["thin-loop", "thin-loop-claude", "Thin-Loop"])
@pytest.mark.parametrize("command", ["plan", "run"])
def test_workflow_only_pattern_is_explained_not_invalid(tmp_path: Path, name: str, command: str) -> None:
    """thin-loop is a GitHub workflow scaffolded by loop-init: say so in one line, not 'pattern invalid'."""
    proc = run_cli(command, name, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "GitHub workflow" in proc.stderr and ".github/workflows/thin-loop.yml" in proc.stderr
    assert "invalid" not in proc.stderr


@pytest.mark.parametrize(("starter", "pattern"), [("minimal-loop", "daily-triage"), ("minimal-loop-codex", "daily-triage"),
                                                  ("ci-sweeper-opencode", "ci-sweeper"),
                                                  ("pr-babysitter-claude", "pr-babysitter")])
def test_loop_init_starter_names_point_to_their_pattern(tmp_path: Path, starter: str, pattern: str) -> None:
    proc = run_cli("plan", starter, cwd=tmp_path)
    assert proc.returncode == 1 and f"starter for '{pattern}'" in proc.stderr


def test_every_loop_init_pattern_is_runnable_or_explained(fixtures: Path) -> None:
    """loop-init 1.7.0's patterns: each is a registry id or explained by kind (the class, not one id)."""
    loop_init = ("daily-triage", "pr-babysitter", "ci-sweeper", "dependency-sweeper", "post-merge-cleanup",
                 "changelog-drafter", "issue-triage", "thin-loop")
    for name in loop_init:
        assert name in IDS or workflow_only(name), name


@given(st.text(min_size=1, max_size=40))
def test_explain_unknown_is_always_one_line_naming_the_input(typed: str) -> None:
    message = explain_unknown(typed, IDS, {"Daily Triage": "daily-triage"})
    assert "\n" not in message.replace(repr(typed), "")
    assert repr(typed) in message


def test_a_project_registry_may_define_a_name_the_ecosystem_reserves(tmp_path: Path, fixtures: Path) -> None:
    """Found ids always win: a project that registers its own 'thin-loop' can plan it."""
    import yaml

    data = yaml.safe_load((fixtures / "patterns__registry.yaml").read_text())
    data["patterns"][0]["id"] = "thin-loop"
    (tmp_path / "patterns").mkdir()
    (tmp_path / "patterns" / "registry.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    proc = run_cli("plan", "thin-loop", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_unknown_scenario_names_the_bundled_ones(tmp_path: Path) -> None:
    proc = run_cli("run", "daily-triage", "--dry-run", "--scenario", "escalte", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    for name in ("default", "noop", "report-only", "reject-then-accept", "escalate"):
        assert name in proc.stderr
    assert "did you mean 'escalate'" in proc.stderr


def test_tool_suffixes_are_loop_inits() -> None:
    assert set(TOOL_SUFFIXES) >= {"-claude", "-codex", "-opencode"}
