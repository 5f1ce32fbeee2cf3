"""The innermost step of a sandboxed command: set resource limits, fix the proxy env, exec.

Run *inside* the sandbox as ``python -I -S sandbox_exec.py [options] -- argv`` (no
imports beyond the standard library, so it starts in milliseconds and nothing the agent
controls — PYTHONPATH, the worktree — is on its path).

Why limits are set here and not by srt: srt confines files and network but sets no
rlimits. Setting them on srt itself would also limit the node process and its proxies
(a V8 heap reservation fails under a small address-space limit). Inside the sandbox
they apply to the agent and everything it starts, and cannot be raised again:

- processes: ``RLIMIT_NPROC`` bounds a non-root user's processes, but the kernel exempts
  real root from it (``user == INIT_USER`` in ``copy_process``) — and srt maps the
  sandbox's root to the real one. So this helper also stays resident as the command's
  parent and watches the sandbox's own PID namespace (srt gives it one): past
  ``--nproc`` processes it kills every process in the namespace and exits 125 with
  "process limit exceeded". A fork bomb is stopped within one poll (``POLL_S``).
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
import signal
import sys
import time

POLL_S = 0.02
LIMIT_EXIT = 125


def _in_own_pid_namespace() -> bool:
    """srt runs the command under bubblewrap's init as PID 1 of a new namespace."""
    try:
        with open("/proc/1/cmdline", "rb") as handle:
            return b"bwrap" in handle.read(200) or os.getpid() < 50
    except OSError:
        return False


def _count_processes() -> int:
    try:
        return sum(1 for name in os.listdir("/proc") if name.isdigit())
    except OSError:
        return 0


def _supervise(command: list[str], nproc: int | None) -> int:
    """Run ``command`` as a child; kill the whole namespace when it holds more than ``nproc`` processes."""
    pid = os.fork()
    if pid == 0:  # the command
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"sandbox_exec: cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        os._exit(127)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    status: int | None = None
    while status is None:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
            break
        if nproc is not None and _count_processes() > nproc:
            os.kill(-1, signal.SIGKILL)  # everything in this namespace but us (and its init)
            os.waitpid(pid, 0)
            print(f"sandbox_exec: process limit exceeded (more than {nproc} processes): all killed",
                  file=sys.stderr)
            return LIMIT_EXIT
        time.sleep(POLL_S)
    try:
        os.kill(-1, signal.SIGKILL)  # stragglers the command left in the namespace
    except ProcessLookupError:
        pass
    return 128 - status if status < 0 else status


def _limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (cap, cap))


def main(argv: list[str]) -> int:
    limits = {"--nproc": resource.RLIMIT_NPROC, "--cpu": resource.RLIMIT_CPU, "--data": resource.RLIMIT_DATA,
              "--fsize": resource.RLIMIT_FSIZE}
    proxy_hosts: list[str] = []
    env_set: dict[str, str] = {}
    nproc: int | None = None
    i = 0
    while i < len(argv) and argv[i] != "--":
        opt, value = argv[i], argv[i + 1] if i + 1 < len(argv) else ""
        if opt in limits:
            _limit(limits[opt], int(value))
            if opt == "--nproc":
                nproc = int(value)
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
    if _in_own_pid_namespace():
        return _supervise(command, nproc)
    try:  # no namespace of our own to watch (and kill): the rlimits alone apply
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"sandbox_exec: cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    return 127  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
