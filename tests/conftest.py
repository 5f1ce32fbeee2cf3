"""Shared fixtures: real temporary git repos and a CLI runner that maps to our exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests state invariants, not speed: no per-example deadline (a loaded 2-core CI
# machine must not turn a slow example into a failure), and a fixed seed in CI so a red
# run can be reproduced exactly.
settings.register_profile("loop-runtime", deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          derandomize=os.environ.get("CI") == "true")
settings.load_profile("loop-runtime")

FIXTURES = Path(__file__).parent / "fixtures"

# The suite is hermetic: a CI runner's own GitHub, Temporal or model-endpoint settings (GitHub Actions
# sets GITHUB_REPOSITORY and often GITHUB_TOKEN) would switch connectors on in every tick a test runs.
# Tests that want one set it themselves.
for _name in ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_REPOSITORY", "GITHUB_API_URL", "GH_HOST", "GH_ENTERPRISE_TOKEN",
              "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL",
              "GOOGLE_GEMINI_BASE_URL", "GROK_BASE_URL", "LOOP_PROJECT_ROOT", "LOOP_RUNTIME_TEMPORAL_KEY",
              "LOOP_RUNTIME_TEMPORAL_KEY_FILE", "LOOP_RUNTIME_TEMPORAL_PER_PORT"):
    os.environ.pop(_name, None)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def run_cli(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess (exit codes, stdout/stderr as a user sees them)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("LOOP_PROJECT_ROOT", None) if env is None or "LOOP_PROJECT_ROOT" not in env else None
    return subprocess.run([sys.executable, "-m", "loop_runtime", *args], cwd=cwd, capture_output=True, text=True,
                          env=full_env, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def cli():
    return run_cli


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()
