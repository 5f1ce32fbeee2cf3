"""Real temporary git repositories for tests.

``make_repo(tmp_path / "repo", {"src/a.py": "x = 1\\n"})`` gives a repository with one
commit on ``main`` and a local identity, independent of the machine's global git
config (no signing, no hooks path, no default-branch surprises).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["git", "make_repo", "write"]

_ISOLATED = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


def git(repo: Path | str, *args: str, input: str | None = None, check: bool = True) -> str:
    """Run git in ``repo`` and return stdout (stripped); raises on failure unless ``check=False``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(_ISOLATED)
    proc = subprocess.run(["git", *args], cwd=str(repo), capture_output=True, text=True, input=input,
                          env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip()


def write(repo: Path | str, rel: str, content: str | bytes) -> Path:
    """Write ``content`` at ``repo/rel``, creating folders."""
    path = Path(repo) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def make_repo(path: Path, files: dict[str, str]) -> Path:
    """Create a git repository at ``path`` with ``files`` committed once on ``main``; return ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for key, value in (("user.name", "Test User"), ("user.email", "test@example.com"),
                       ("commit.gpgsign", "false"), ("tag.gpgsign", "false"), ("core.autocrlf", "false")):
        git(path, "config", "--local", key, value)
    for rel, content in files.items():
        write(path, rel, content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "--allow-empty", "-m", "initial commit")
    return path
