"""Install the ecosystem's reference npm tools once into a cache folder, for parity tests.

The tools are the ground truth that loop-runtime reimplements (loop-cost, loop-gate,
loop-context, loop-worktree, loop-init) plus the real Codex CLI and Anthropic's sandbox
runtime ``srt`` (the sandbox tests). They are installed with
the machine's ``npm`` into ``$LOOP_RUNTIME_NPM_CACHE`` (default
``~/.cache/loop-runtime-tests/npm``) at pinned versions. Where npm is missing the
tests that need them skip, except under ``CI=true`` where they must run and so fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import filelock
import pytest

PINNED = {
    "@cobusgreyling/loop-cost": "1.2.0",
    "@cobusgreyling/loop-gate": "1.0.0",
    "@cobusgreyling/loop-context": "1.5.0",
    "@cobusgreyling/loop-init": "1.7.0",
    "@cobusgreyling/loop-worktree": "1.2.0",
    "@openai/codex": "0.169.0",
    "@anthropic-ai/sandbox-runtime": "0.0.83",
}


def cache_dir() -> Path:
    return Path(os.environ.get("LOOP_RUNTIME_NPM_CACHE", Path.home() / ".cache" / "loop-runtime-tests" / "npm"))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"parity tools unavailable under CI=true: {reason}")
    pytest.skip(reason)


def ensure_installed() -> Path:
    """Return the folder whose ``node_modules`` holds every pinned tool, installing on first use."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        _unavailable("npm/node not found")
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    stamp = root / "installed.json"
    with filelock.FileLock(str(root / ".install.lock")):
        if stamp.exists() and json.loads(stamp.read_text()) == PINNED:
            return root
        if not (root / "package.json").exists():
            (root / "package.json").write_text('{"name":"loop-runtime-parity","private":true}\n')
        specs = [f"{name}@{version}" for name, version in PINNED.items()]
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", *specs],
            cwd=root, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            _unavailable(f"npm install failed: {proc.stderr.strip()[-400:]}")
        stamp.write_text(json.dumps(PINNED))
    return root


def bin_path(name: str) -> Path:
    """Path of an installed tool's executable (``loop-cost``, ``loop-gate``, ``codex`` ...)."""
    path = ensure_installed() / "node_modules" / ".bin" / name
    if not path.exists():
        _unavailable(f"{name} not installed in {path.parent}")
    return path


def run_tool(name: str, *args: str, cwd: str | Path | None = None, input: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_path(name)), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        input=input, stdin=None if input is not None else subprocess.DEVNULL,
    )


def codex_home_dir(name: str = "codex-home") -> Path:
    """A private CODEX_HOME outside ``/tmp``.

    Why: when a system ``bwrap`` is installed, codex runs its sandbox helper
    (``codex-linux-sandbox``, an alias codex creates under ``$CODEX_HOME/tmp``) inside
    bubblewrap, and with ``exclude_slash_tmp`` a home under ``/tmp`` is hidden from it:
    ``bwrap: execvp codex-linux-sandbox: No such file or directory``. Real homes live in
    ``~/.codex``; tests use a fresh folder beside the npm cache.
    """
    import tempfile

    base = cache_dir().parent / "codex-homes"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
