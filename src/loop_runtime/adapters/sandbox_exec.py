"""The innermost step of a sandboxed command: set resource limits, fix the proxy env, exec.

Run *inside* the sandbox as ``python -I -S sandbox_exec.py [options] -- argv`` (no
imports beyond the standard library, so it starts in milliseconds and nothing the agent
controls — PYTHONPATH, the worktree — is on its path).

Why limits are set here and not by srt: srt confines files and network but sets no
rlimits. Setting them on srt itself would also limit the node process and its proxies
(a V8 heap reservation fails under a small address-space limit). Inside the sandbox
they apply to the agent and everything it starts, and cannot be raised again:

- ``RLIMIT_NPROC``: srt runs the command in its own user namespace, where processes
  are counted afresh and the namespace's root has no capability over the limit, so a
  fork bomb stops at ``--nproc`` processes (``fork: Resource temporarily unavailable``).
- ``RLIMIT_CPU``: CPU seconds per process (SIGXCPU, then SIGKILL).
- ``RLIMIT_DATA``: bytes of writable private memory per process. Not ``RLIMIT_AS``: the
  Claude CLI's JavaScript engine reserves many gigabytes of address space it never uses.
- ``RLIMIT_FSIZE``: the largest file a process may write.

``--proxy-host`` removes a host from ``NO_PROXY``/``no_proxy``: srt lists 127.0.0.1 and
localhost there, which inside the sandbox's own network namespace reach nothing, so a
model endpoint on the host's loopback (the local stand-in) must go through srt's proxy,
where the allowlist entry ``127.0.0.1:<port>`` lets it out.
"""

from __future__ import annotations

import os
import resource
import sys


def _limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (cap, cap))


def main(argv: list[str]) -> int:
    limits = {"--nproc": resource.RLIMIT_NPROC, "--cpu": resource.RLIMIT_CPU, "--data": resource.RLIMIT_DATA,
              "--fsize": resource.RLIMIT_FSIZE}
    proxy_hosts: list[str] = []
    env_set: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i] != "--":
        opt, value = argv[i], argv[i + 1] if i + 1 < len(argv) else ""
        if opt in limits:
            _limit(limits[opt], int(value))
        elif opt == "--proxy-host":
            proxy_hosts.append(value)
        elif opt == "--setenv":
            name, _, val = value.partition("=")
            env_set[name] = val
        else:
            print(f"sandbox_exec: unknown option {opt}", file=sys.stderr)
            return 126
        i += 2
    command = argv[i + 1:]
    if not command:
        print("sandbox_exec: no command", file=sys.stderr)
        return 126
    for name in ("NO_PROXY", "no_proxy"):
        if name in os.environ and proxy_hosts:
            kept = [h for h in os.environ[name].split(",") if h.strip() and h.strip() not in proxy_hosts]
            os.environ[name] = ",".join(kept)
    os.environ.update(env_set)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"sandbox_exec: cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    return 127  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
