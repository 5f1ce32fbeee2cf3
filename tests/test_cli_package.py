"""The CLI is a package with one module per command group: every command is still there, and
importing the package (or its click-free ``readouts``) costs no CLI framework."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

COMMANDS = {
    "approve", "cost", "dashboard", "doctor", "escalations", "gate", "kill", "list", "mcp", "plan", "reject",
    "resume", "run", "schedule", "start", "status", "topup", "worker",
}


def _loaded_after(code: str) -> list[str]:
    probe = (f"import sys\n{code}\nprint(sorted(m for m in ('click', 'rich', 'yaml', 'loop_runtime.cli.group', "
             "'loop_runtime.cli.entry', 'loop_runtime.app.commands') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307 - our own probe's list literal


def test_every_command_is_registered_on_the_group() -> None:
    from loop_runtime.cli import cli

    assert set(cli.commands) == COMMANDS
    assert set(cli.commands["gate"].commands) == {"check"}  # type: ignore[attr-defined]
    assert set(cli.commands["schedule"].commands) == {"sync"}  # type: ignore[attr-defined]


def test_every_command_and_subcommand_takes_root() -> None:
    from loop_runtime.cli import cli

    def walk(group: click.Group) -> list[click.Command]:
        out: list[click.Command] = []
        for command in group.commands.values():
            out.append(command)
            if isinstance(command, click.Group):
                out.extend(walk(command))
        return out

    for command in walk(cli):
        assert any("--root" in p.opts for p in command.params if isinstance(p, click.Option)), command.name


@pytest.mark.parametrize("code", ["import loop_runtime.cli", "import loop_runtime.cli.readouts",
                                  "from loop_runtime.cli import main"])
def test_importing_the_package_or_its_readouts_loads_no_cli_framework(code: str) -> None:
    assert _loaded_after(code) == []


def test_the_click_group_loads_on_first_use() -> None:
    assert _loaded_after("from loop_runtime.cli import cli") == ["click", "loop_runtime.cli.entry",
                                                                 "loop_runtime.cli.group"]


def test_an_unknown_attribute_of_the_package_is_an_attribute_error() -> None:
    import loop_runtime.cli as package

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        package.nope  # noqa: B018


def test_python_dash_m_on_the_package_runs_the_click_cli(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "loop_runtime.cli", "list", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: loop-runtime list [OPTIONS]")
