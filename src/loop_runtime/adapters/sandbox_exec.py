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
  sandbox's root to the real one. The process count is therefore enforced by the kernel's
  ``pids`` cgroup controller where the runtime may create a cgroup (``--cgroup``, the outer
  mode below); only where it cannot (no writable cgroup) does this helper fall back to
  watching the sandbox's own PID namespace (srt gives it one) and killing it past
  ``--watch`` processes — a poll, so a fork bomb can outrun it for a moment.
- ``RLIMIT_CPU``: CPU seconds per process (SIGXCPU, then SIGKILL).
- ``RLIMIT_DATA``: bytes of writable private memory per process. Not ``RLIMIT_AS``: the
  Claude CLI's JavaScript engine reserves many gigabytes of address space it never uses.
- ``RLIMIT_FSIZE``: the largest file a process may write.

Capabilities: run as root, srt's sandbox keeps root's full capability set inside its user
namespace, and ``CAP_DAC_OVERRIDE`` there ignores file modes — it would let the agent read
the runtime's write-only denial channel (and anything else protected by mode bits alone).
Before running the command this helper empties the bounding and ambient sets and sets
``no_new_privs``, so the command and all it starts run without capabilities (uid 0 stays,
owning the worktree as before).

``--proxy-host`` removes a host from ``NO_PROXY``/``no_proxy``: srt lists 127.0.0.1 and
localhost there, which inside the sandbox's own network namespace reach nothing, so a
model endpoint on the host's loopback (the local stand-in) must go through srt's proxy,
where the allowlist entry ``127.0.0.1:<port>`` lets it out.

Outer mode (``--cgroup DIR [--report FILE] -- srt ...``), run on the host *around* srt:
it moves itself into the pids cgroup the runtime made for this process (``pids.max``
already set), so srt, its proxies and everything the sandboxed command starts are
counted by the kernel and a ``fork`` past the limit fails with ``EAGAIN`` — however loaded
the machine, nothing has to win a race. The helper stays as srt's parent: when the
cgroup's ``pids.events`` shows the limit was hit, it kills every process in the cgroup,
writes ``{"limit": "processes", ...}`` to ``FILE`` (outside the sandbox: nothing inside
can forge or erase it) and exits 125 with "process limit exceeded".
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time

POLL_S = 0.02
CGROUP_POLL_S = 0.05
LIMIT_EXIT = 125
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def drop_capabilities() -> None:
    """Empty the bounding and ambient capability sets and set no_new_privs (best effort: a process
    that holds no capabilities — an unprivileged user's sandbox — has nothing to drop). Linux only:
    macOS has no capabilities (srt uses sandbox-exec there)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl  # noqa: B018 - a libc without prctl: nothing to drop
    except (OSError, ImportError, AttributeError):
        return
    pr_capbset_drop, pr_cap_ambient, pr_cap_ambient_clear_all, pr_set_no_new_privs = 24, 47, 4, 38
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as handle:
            last = int(handle.read().strip())
    except (OSError, ValueError):
        last = 63
    libc.prctl(pr_cap_ambient, pr_cap_ambient_clear_all, 0, 0, 0)
    for cap in range(last + 1):
        libc.prctl(pr_capbset_drop, cap, 0, 0, 0)
    libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0)


def record(log: str | None, entry: dict[str, object]) -> None:
    """Write one entry to the runtime's denial channel (a FIFO it drains; ``\\n`` first so nothing
    written before can run into it; one write of at most PIPE_BUF bytes is never interleaved)."""
    if not log:
        return
    entry = dict(entry)
    given = entry.get("argv")
    argv = [str(a)[:200] for a in given] if isinstance(given, list) else None
    if argv is not None and given is not None and any(len(str(a)) > 200 for a in given):
        entry["clipped"] = True
    while True:
        if argv is not None:
            entry["argv"] = argv
        data = ("\n" + json.dumps(entry) + "\n").encode("utf-8", "replace")
        if len(data) <= 4000 or not argv or len(argv) <= 1:  # PIPE_BUF is 4096: one atomic write
            break
        # drop from the middle: the start names the global options, the end the subcommand and its arguments
        argv, entry["clipped"] = argv[:4] + argv[5:], True
    if len(data) > 4000:
        return
    try:
        fd = os.open(log, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        for _ in range(500):
            try:
                os.write(fd, data)
                return
            except BlockingIOError:
                time.sleep(0.02)
            except OSError:
                return
    finally:
        os.close(fd)


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


def _spawn(command: list[str]) -> int:
    """Fork and exec ``command``; forward SIGTERM/SIGINT/SIGHUP to it. Returns its pid."""
    pid = os.fork()
    if pid == 0:  # the command
        for sig in FORWARDED:
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

    for sig in FORWARDED:
        signal.signal(sig, forward)
    return pid


def _exit_code(status: int) -> int:
    return 128 - status if status < 0 else status


def _supervise(command: list[str], nproc: int, log: str | None = None) -> int:
    """Fallback without a cgroup: run ``command`` as a child; kill the whole namespace past ``nproc`` processes."""
    pid = _spawn(command)
    while True:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if _count_processes() > nproc:
            for _ in range(50):  # kill(-1) can miss a child forked mid-sweep: sweep until none is left
                try:
                    os.kill(-1, signal.SIGKILL)  # everything in this namespace but us (and its init)
                except ProcessLookupError:
                    break
            os.waitpid(pid, 0)
            print(f"sandbox_exec: process limit exceeded (more than {nproc} processes): all killed",
                  file=sys.stderr)
            record(log, {"tool": "sandbox", "limit": "processes", "max": nproc})
            return LIMIT_EXIT
        time.sleep(POLL_S)
    try:
        os.kill(-1, signal.SIGKILL)  # stragglers the command left in the namespace
    except ProcessLookupError:
        pass
    return _exit_code(os.waitstatus_to_exitcode(raw))


# --------------------------------------------------------------------------- outer mode: a pids cgroup


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def limit_hits(cgroup: str) -> int:
    """How often a fork in the cgroup failed at ``pids.max`` (``pids.events``: ``max N``)."""
    for line in _read(os.path.join(cgroup, "pids.events")).splitlines():
        key, _, value = line.partition(" ")
        if key == "max" and value.strip().isdigit():
            return int(value)
    return 0


def kill_cgroup(cgroup: str, *, spare: int | None = None, rounds: int = 300) -> bool:
    """SIGKILL every process in ``cgroup`` (but ``spare``) until none is left; True when it emptied.

    A process forked while a sweep runs is caught by the next one; with ``pids.max`` in
    force the cgroup cannot grow meanwhile, so the sweeps converge. Only a cgroup the runtime made
    (``loop-sandbox-*``) is ever swept: a wrong path must not kill the host's processes.
    """
    if not os.path.basename(cgroup.rstrip("/")).startswith("loop-sandbox-"):
        return False
    for _ in range(rounds):
        pids = [int(p) for p in _read(os.path.join(cgroup, "cgroup.procs")).split() if p.isdigit()]
        pids = [p for p in pids if p != spare]
        if not pids:
            return True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    return False


def _write_report(path: str | None, data: dict[str, object]) -> None:
    if not path:
        return
    try:
        tmp = f"{path}.part"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except OSError:
        pass


def _outer(command: list[str], cgroup: str, report: str | None) -> int:
    """Enter ``cgroup``, run ``command`` (srt) as a child, kill the cgroup when its process limit is hit."""
    try:
        with open(os.path.join(cgroup, "cgroup.procs"), "w", encoding="ascii") as handle:
            handle.write(str(os.getpid()))
    except OSError as exc:
        print(f"sandbox_exec: cannot enter the process-limit cgroup {cgroup}: {exc.strerror or exc}",
              file=sys.stderr)
        return 126  # fail closed: never run without the limit the runtime set up
    limit = _read(os.path.join(cgroup, "pids.max")).strip()
    pid = _spawn(command)
    while True:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            kill_cgroup(cgroup, spare=os.getpid())  # stragglers: nothing outlives the command
            return _exit_code(os.waitstatus_to_exitcode(raw))
        if limit_hits(cgroup):
            kill_cgroup(cgroup, spare=os.getpid())
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            print(f"sandbox_exec: process limit exceeded ({limit} processes and threads): all killed",
                  file=sys.stderr)
            _write_report(report, {"limit": "processes", "max": limit})
            return LIMIT_EXIT
        time.sleep(CGROUP_POLL_S)


# --------------------------------------------------------------------------- inner mode


def _limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (cap, cap))


def main(argv: list[str]) -> int:
    limits = {"--nproc": resource.RLIMIT_NPROC, "--cpu": resource.RLIMIT_CPU, "--data": resource.RLIMIT_DATA,
              "--fsize": resource.RLIMIT_FSIZE}
    proxy_hosts: list[str] = []
    env_set: dict[str, str] = {}
    watch: int | None = None
    cgroup: str | None = None
    report: str | None = None
    log: str | None = None
    i = 0
    while i < len(argv) and argv[i] != "--":
        opt, value = argv[i], argv[i + 1] if i + 1 < len(argv) else ""
        if opt in limits:
            _limit(limits[opt], int(value))
        elif opt == "--watch":
            watch = int(value)
        elif opt == "--cgroup":
            cgroup = value
        elif opt == "--report":
            report = value
        elif opt == "--log":
            log = value
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
    if cgroup is not None:
        return _outer(command, cgroup, report)
    for name in ("NO_PROXY", "no_proxy"):
        if name in os.environ and proxy_hosts:
            kept = [h for h in os.environ[name].split(",") if h.strip() and h.strip() not in proxy_hosts]
            os.environ[name] = ",".join(kept)
    os.environ.update(env_set)
    drop_capabilities()
    if watch is not None and _in_own_pid_namespace():
        return _supervise(command, watch, log)
    try:  # the cgroup outside (or nothing to watch) holds the process count: just exec
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"sandbox_exec: cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    return 127  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
