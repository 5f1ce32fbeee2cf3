"""Cheap local probes that make up a tick's observation (0-token no-op ticks).

A pattern's discovery is whatever it can see without a model: git HEAD and recent
log, the state file, and configured commands (``gh pr list --json …``, a CI status
command). The observation is plain text so its fingerprint can ignore the loop's own
``Last run:`` bookkeeping (``core.fingerprint``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

PROBE_TIMEOUT_S = 30.0
MAX_PROBE_OUTPUT = 20_000


def _run(args: Sequence[str] | str, root: Path, env: Mapping[str, str] | None, shell: bool = False) -> str:
    try:
        proc = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, shell=shell, env=dict(env) if env is not None else None,
                              errors="replace")
    except subprocess.TimeoutExpired:
        return f"(timed out after {PROBE_TIMEOUT_S:.0f}s)"
    except OSError as e:
        return f"(failed: {e.strerror})"
    out = proc.stdout[-MAX_PROBE_OUTPUT:]
    return out if proc.returncode == 0 else f"(exit {proc.returncode})\n{out}{proc.stderr[-2000:]}"


def _head_and_log(root: Path, env: Mapping[str, str] | None) -> tuple[str, str]:
    """``git rev-parse HEAD`` and ``git log -10 --format='%h %s'`` as they print, from one git call (every
    tick observes; a subprocess is most of a report tick's cost). Without commits, each is asked as is."""
    both = _run(["git", "log", "-10", "--format=%H %h %s"], root, env)
    if not both or both.startswith("("):  # an error text: let each command say its own
        return _run(["git", "rev-parse", "HEAD"], root, env), _run(["git", "log", "-10", "--format=%h %s"], root, env)
    lines = both.splitlines()
    return lines[0].split(" ", 1)[0] + "\n", "".join(line.split(" ", 1)[1] + "\n" for line in lines)


def observe(root: Path, *, state_file: str, commands: Sequence[str] = (), env: Mapping[str, str] | None = None,
            secrets: Sequence[str] = ()) -> str:
    from ..core.redact import redact

    root = Path(root)
    parts: list[str] = []
    if (root / ".git").exists():
        head, log = _head_and_log(root, env)
        parts.append("## git HEAD\n" + head)
        parts.append("## git log\n" + log)
        status = _run(["git", "status", "--porcelain", "--untracked-files=normal", "--", ".",
                       ":(exclude).loop-runtime", ":(exclude).loop-worktrees", f":(exclude){state_file}",
                       ":(exclude)loop-run-log.md", ":(exclude)loop-ledger.json", ":(exclude)docs/last-run.json"],
                      root, env)
        parts.append("## git status\n" + status)
    try:
        state = (root / state_file).read_text("utf-8", errors="replace")
    except OSError:
        state = "(missing)"
    parts.append(f"## {state_file}\n{state}")
    for cmd in commands:
        parts.append(f"## probe: {cmd}\n" + _run(cmd, root, env, shell=True))
    return redact("\n\n".join(parts), extra_secrets=secrets)
