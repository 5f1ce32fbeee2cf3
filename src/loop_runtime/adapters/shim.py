"""The level-gated ``git`` and ``gh`` an agent finds first on its PATH inside the sandbox.

Each shim is a tiny script generated per sandboxed process (``SrtSandbox.prepare``) that
calls ``main(config, tool, argv)`` here. The config (read-only inside the sandbox) names
the level, the attempt's own branch, the real binaries and the denial log. The decision
is ``core.shim_policy``; a denied call prints one line on stderr, exits 1 and appends a
JSON line to the runtime's denial channel — a FIFO in a folder read-only inside the sandbox,
write-only for the agent (no capabilities: ``sandbox_exec``), drained by the runtime on the
host — which reports it in the tick. The runtime re-decides every entry with the same policy, so
a line the agent writes itself counts only when it names a call the policy denies.

What the shims are not: the boundary. A process that calls ``/usr/bin/git`` by its full
path bypasses them; what stops it then is the sandbox itself — the base branch, tags and
other refs are not writable, and no remote but the allowed hosts is reachable. The shims
turn those into clear, recorded refusals and add the policy the file system cannot
express (push only ``loop/<run-id>``; ``gh pr merge`` only when the gate allows it).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..core.shim_policy import ShimDecision, decide


def _log(config: dict[str, Any], tool: str, argv: list[str], decision: ShimDecision) -> None:
    """Send the denial to the runtime through its write-only channel (see ``SrtProcess``)."""
    from .sandbox_exec import record

    record(config.get("log"), {"tool": tool, "argv": argv, "level": config.get("level"), "reason": decision.reason})


def _gate_allows(config: dict[str, Any], action: str) -> tuple[bool, str]:
    """Ask the project's gate whether ``action`` is allowed for the paths this attempt changed."""
    root, base, git = config.get("root"), config.get("base"), config.get("tools", {}).get("git")
    if not (root and base and git):
        return False, "no base commit or gate to check against"
    try:
        out = subprocess.run([git, "diff", "--name-only", "-z", base, "HEAD"], capture_output=True, timeout=30,
                             check=True, stdin=subprocess.DEVNULL).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot list the changed paths: {exc}"
    paths = [p for p in out.split("\0") if p]
    from ..core import gate
    from .project_files import load_gate_policy

    policy, _ = load_gate_policy(Path(root))
    verdict = gate.check(policy, paths, action)
    return bool(verdict.allowed), str(verdict.reason)


def _inside(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root + os.sep)


def main(config_path: str, tool: str, argv: list[str]) -> int:
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"loop-runtime sandbox: {tool} shim has no readable config ({exc}); denied", file=sys.stderr)
        return 1
    objects, worktree = config.get("objects"), config.get("worktree")
    if objects and worktree and _inside(os.getcwd(), worktree):
        # The shared object store is read-only in the sandbox: new objects go to a private one,
        # imported (hash-verified) by the runtime when the agent's process ends.
        os.environ["GIT_OBJECT_DIRECTORY"] = objects["dir"]
        os.environ["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = objects["alternate"]
    decision = decide(tool, argv, level=str(config.get("level") or "L1"), branch=config.get("branch"))
    if decision.allowed and decision.needs_gate:
        ok, why = _gate_allows(config, decision.needs_gate)
        if not ok:
            decision = ShimDecision(False, f"gate does not allow {decision.needs_gate}: {why}", True)
    if not decision.allowed:
        _log(config, tool, argv, decision)
        shown = shlex.join([tool, *argv])[:300]
        print(f"loop-runtime sandbox: denied `{shown}` at {config.get('level')}: {decision.reason}",
              file=sys.stderr)
        return 1
    real = config.get("tools", {}).get(tool)
    if not real:
        print(f"loop-runtime sandbox: {tool} is not installed", file=sys.stderr)
        return 127
    os.execv(real, [real, *argv])
    return 127  # pragma: no cover - execv does not return


def script(config_path: str, tool: str) -> str:
    """The text of one shim executable (``#!<this python> -IB``: no user site, no PYTHON* env, no bytecode)."""
    package_parent = str(Path(__file__).resolve().parents[2])
    return (f"#!{sys.executable} -IB\n"
            "import sys\n"
            f"sys.path.insert(0, {package_parent!r})\n"
            "from loop_runtime.adapters.shim import main\n"
            f"sys.exit(main({config_path!r}, {tool!r}, sys.argv[1:]))\n")
