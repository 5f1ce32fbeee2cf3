"""The real sandbox runtime for tests: the `srt` fixture, and the CI rule that it must not be missing."""

from __future__ import annotations

import os

import pytest

from loop_runtime.adapters.sandbox import missing_dependencies
from tests.support import npm_tools


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; under CI=true the sandbox tests must run, so fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"the sandbox tests must run under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def srt() -> str:
    missing = missing_dependencies()
    if missing:
        unavailable(f"missing {', '.join(missing)} (apt-get install -y bubblewrap socat ripgrep)")
    return str(npm_tools.bin_path("srt"))
