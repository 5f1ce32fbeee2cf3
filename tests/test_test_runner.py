"""Detecting and running the project's test command inside a worktree."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from loop_runtime import ports
from loop_runtime.adapters.test_runner import ProjectTestRunner, detect_test_command, run_tests

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def _files(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "command"),
    [
        ({"pytest.ini": "[pytest]\n"}, "pytest"),
        ({"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-q'\n"}, "pytest"),
        ({"setup.cfg": "[tool:pytest]\n"}, "pytest"),
        ({"tests/test_a.py": "def test(): pass\n"}, "pytest"),
        ({"package.json": json.dumps({"scripts": {"test": "vitest run"}})}, "npm test"),
        ({"go.mod": "module x\n"}, "go test ./..."),
        ({"Cargo.toml": "[package]\nname='x'\n"}, "cargo test"),
        ({"Makefile": "build:\n\tcc x.c\n\ntest: build\n\t./run-tests\n"}, "make test"),
        ({"package.json": json.dumps({"scripts": {"test": 'echo "Error: no test specified" && exit 1'}})}, None),
        ({"pyproject.toml": "[project]\nname='x'\n", "Makefile": "TEST := 1\n"}, None),
        ({"README.md": "hi"}, None),
    ],
)
def test_detects_the_conventional_command(tmp_path: Path, files: dict[str, str], command: str | None) -> None:
    """pytest, npm test (not npm's default stub), go, cargo, make — or nothing."""
    assert detect_test_command(_files(tmp_path, files)) == command


def test_pytest_wins_over_make_in_a_mixed_project(tmp_path: Path) -> None:
    """The documented order: pytest before npm, go, cargo, make."""
    _files(tmp_path, {"pytest.ini": "", "Makefile": "test:\n\ttrue\n", "go.mod": "module x\n"})
    assert detect_test_command(tmp_path) == "pytest"


def test_passing_command_keeps_its_output(tmp_path: Path) -> None:
    """Exit 0 passes; stdout and stderr are both kept, in order."""
    run = run_tests(tmp_path, "echo out; echo err 1>&2; pwd", timeout_s=30, env=ENV)
    assert run.passed and run.exit_code == 0 and not run.timed_out
    assert run.output.splitlines() == ["out", "err", str(tmp_path)]
    assert run.command == "echo out; echo err 1>&2; pwd"


def test_failing_command_fails(tmp_path: Path) -> None:
    """A non-zero exit is a failed run with its code."""
    run = run_tests(tmp_path, "exit 3", timeout_s=30, env=ENV)
    assert not run.passed and run.exit_code == 3


def test_runs_with_only_the_environment_given(tmp_path: Path) -> None:
    """The command sees the scrubbed environment, not the runtime's."""
    run = run_tests(tmp_path, 'echo "v=${LOOP_TEST_SECRET-unset}"', timeout_s=30, env=ENV)
    assert run.output.strip() == "v=unset"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """On timeout the shell and everything it started are killed, and the run says so."""
    marker = tmp_path / "child.pid"
    start = time.monotonic()
    run = run_tests(tmp_path, f"sleep 60 & echo $! > {marker}; echo started; wait", timeout_s=1, env=ENV)
    assert time.monotonic() - start < 20
    assert run.timed_out and not run.passed and run.exit_code is None
    assert "started" in run.output and "timed out after 1s" in run.output
    child = int(marker.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("background child survived the timeout")


def test_background_stragglers_do_not_hang_a_finished_run(tmp_path: Path) -> None:
    """A daemon left behind holding stdout is killed with the group once the command exits."""
    start = time.monotonic()
    run = run_tests(tmp_path, "sleep 60 & echo done", timeout_s=30, env=ENV)
    assert run.passed and "done" in run.output
    assert time.monotonic() - start < 10


def test_output_is_tail_truncated_and_redacted(tmp_path: Path) -> None:
    """Long output keeps its end (where failures are summarised) and never a secret."""
    script = tmp_path / "noisy.py"
    script.write_text(
        "for i in range(5000): print(f'line {i}')\n"
        "print('API_TOKEN=abcd1234efgh')\nprint('using value my-db-password-1')\nprint('FAILED test_x')\n")
    run = run_tests(tmp_path, f"{sys.executable} {script}", timeout_s=30, env=ENV, max_output=2000,
                    secrets=["my-db-password-1"])
    assert len(run.output) < 2200
    assert run.output.startswith("[… ") and "truncated" in run.output.splitlines()[0]
    assert run.output.rstrip().endswith("FAILED test_x")
    assert "abcd1234efgh" not in run.output and "my-db-password-1" not in run.output
    assert "API_TOKEN=[REDACTED]" in run.output


def test_no_command_is_reported_not_run(tmp_path: Path) -> None:
    """Without a command nothing runs: command None (the verifier is told), nothing failed."""
    run = run_tests(tmp_path, None, timeout_s=30, env=ENV)
    assert run.command is None and run.exit_code is None and run.passed
    assert run.output == "no test command found"


def test_project_runner_implements_the_port_and_detects(tmp_path: Path) -> None:
    """ProjectTestRunner is a ports.TestRunner that falls back to the detected command."""
    _files(tmp_path, {"Makefile": "test:\n\t@echo make-tests-ran\n"})
    runner = ProjectTestRunner(timeout_s=30, env=ENV)
    assert isinstance(runner, ports.TestRunner)
    run = runner.run(str(tmp_path))
    assert run.command == "make test" and "make-tests-ran" in run.output
    assert ProjectTestRunner("echo configured", env=ENV).run(str(tmp_path)).output.strip() == "configured"
