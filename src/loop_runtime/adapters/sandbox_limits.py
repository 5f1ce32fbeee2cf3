"""Resource limits of one sandboxed process: a pids cgroup where one can be made, else rlimits.

Why apart from ``sandbox``: srt confines files and network but sets no limits. The process
count is held by the kernel's ``pids`` cgroup (``pids_cgroup``) where the runtime may make
one; elsewhere ``sandbox_exec``'s namespace watchdog holds it, with an ``RLIMIT_NPROC``
above the watchdog's threshold. CPU, memory and file size are rlimits set by
``sandbox_exec`` inside the sandbox (see there why inside). This module turns the
configured ``SandboxLimits`` into that cgroup and those arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROCESS_ALLOWANCE = 48
"""Tasks (processes and threads) of srt itself inside the pids cgroup: node, its proxies, bubblewrap, socat."""
WATCH_MARGIN = 32
HOST_GROWTH = 256  # room for the user's other processes to grow while a sandboxed one runs
MIB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    """Per-process limits inside the sandbox (``sandbox_exec``): CPU seconds, MiB, processes, file MiB."""

    cpu_s: int = 3600
    memory_mb: int = 8192
    processes: int = 512
    file_mb: int = 2048


def processes_of_this_user() -> int:
    """How many processes our real uid already has on the host: ``RLIMIT_NPROC`` counts them all, not
    only the sandbox's, so a limit set without them binds at once on a busy machine (forks fail with
    EAGAIN below the watchdog's threshold and a fork bomb stalls instead of being killed)."""
    uid, count = os.getuid(), 0
    try:
        names = [n for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return 0
    for name in names:
        try:
            if os.stat(f"/proc/{name}").st_uid == uid:
                count += 1
        except OSError:
            continue
    return count


def make_cgroup(limits: SandboxLimits, enabled: bool) -> Path | None:
    """A pids cgroup for one process (``processes`` plus srt's own allowance), or None (the fallback)."""
    if not enabled:
        return None
    from . import pids_cgroup

    return pids_cgroup.create(limits.processes + PROCESS_ALLOWANCE)


def limit_args(limits: SandboxLimits, cgroup: Path | None, log: Path) -> list[str]:
    """``sandbox_exec``'s limit options: CPU, memory and file size, and — without a pids cgroup — the
    namespace watchdog (``--watch``, reporting to ``log``) with an ``RLIMIT_NPROC`` above its threshold."""
    args = ["--cpu", str(limits.cpu_s), "--data", str(limits.memory_mb * MIB), "--fsize", str(limits.file_mb * MIB)]
    if cgroup is None:
        # No pids cgroup: the namespace watchdog holds the process count. RLIMIT_NPROC (binding where the
        # sandbox's user is not real root) sits above the watchdog's threshold so the watchdog sees it crossed.
        nproc = limits.processes + WATCH_MARGIN + processes_of_this_user() + HOST_GROWTH
        args += ["--nproc", str(nproc), "--watch", str(limits.processes), "--log", str(log)]
    return args


__all__ = ["HOST_GROWTH", "PROCESS_ALLOWANCE", "WATCH_MARGIN", "SandboxLimits", "limit_args", "make_cgroup",
           "processes_of_this_user"]
