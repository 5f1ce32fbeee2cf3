"""A kernel-enforced process limit for one sandboxed process: a child cgroup with ``pids.max``.

Why a cgroup: ``RLIMIT_NPROC`` does not bind real root (the kernel exempts it), and the
runtime often runs as root (containers, CI). The ``pids`` controller binds everyone: a
``fork``/``clone`` past ``pids.max`` fails with ``EAGAIN``, whatever the load on the
machine, so no watchdog has to win a race against a fork bomb.

Where: the runtime's own cgroup in the ``pids`` hierarchy — cgroup v2 (the unified
hierarchy, when ``pids`` is enabled for children there) or the cgroup v1 ``pids``
controller. A child is made per sandboxed process (``loop-sandbox-<pid>-<n>``) and removed
when the process is closed. Where no such folder is writable (an unprivileged user
without delegation, a locked-down container) ``create`` returns None and the sandbox
falls back to ``sandbox_exec``'s namespace watchdog (see there).

``pids.max`` counts tasks — processes *and* threads — so the runtime adds an allowance
for srt's own node process and proxies to the configured limit.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from pathlib import Path

__all__ = ["create", "parent", "remove"]

_counter = itertools.count()


def _mounts(text: str) -> list[tuple[str, str, str, str]]:
    """(root, mount point, fstype, super options) of every mount in a /proc/self/mountinfo text."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        out.append((fields[3].replace("\\040", " "), fields[4].replace("\\040", " "), tail[0], tail[2]))
    return out


def _proc(name: str) -> str:
    try:
        return Path("/proc/self", name).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def candidates(mountinfo: str | None = None, cgroups: str | None = None) -> list[Path]:
    """Folders that could hold a pids cgroup of ours: the runtime's own cgroup, then the hierarchy's
    root, in each hierarchy with the pids controller (``/proc/self/mountinfo`` and ``/proc/self/cgroup``
    unless given)."""
    own: dict[str, str] = {}
    for line in (cgroups if cgroups is not None else _proc("cgroup")).splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                own[controller] = parts[2]
    found: list[Path] = []
    for root, point, fstype, options in _mounts(mountinfo if mountinfo is not None else _proc("mountinfo")):
        if fstype == "cgroup2":
            rel = own.get("")
        elif fstype == "cgroup" and "pids" in options.split(","):
            rel = own.get("pids")
        else:
            continue
        if rel is None:
            continue
        if root != "/" and (rel == root or rel.startswith(root + "/")):
            rel = rel[len(root):]
        # Its own cgroup first (delegation), then the hierarchy's root (a root runtime in a systemd
        # session scope, whose own cgroup holds processes and so enables no controllers for children).
        for folder in dict.fromkeys((Path(point) / rel.lstrip("/"), Path(point))):
            if fstype == "cgroup2" and "pids" not in _read(folder / "cgroup.subtree_control").split():
                continue  # v2: a child gets pids.max only where the parent enables pids for its children
            found.append(folder)
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def _try_make(folder: Path) -> Path | None:
    child = folder / f"loop-sandbox-{os.getpid()}-{next(_counter)}"
    try:
        child.mkdir()
    except OSError:
        return None
    if (child / "pids.max").exists() and os.access(child / "cgroup.procs", os.W_OK):
        return child
    remove(child)
    return None


@functools.lru_cache(maxsize=1)
def parent() -> Path | None:
    """The folder under which this process can make pids cgroups, or None (probed once per process)."""
    for folder in candidates():
        probe = _try_make(folder)
        if probe is not None:
            remove(probe)
            _remove_stale(folder)
            return folder
    return None


def _remove_stale(folder: Path) -> None:
    """Empty cgroups left by a runtime that died before closing its sandboxed processes."""
    try:
        children = list(folder.glob("loop-sandbox-*-*"))
    except OSError:
        return
    for child in children:
        pid = child.name.split("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            try:
                child.rmdir()  # only an empty one goes: nothing running is touched
            except OSError:
                pass


def create(limit: int) -> Path | None:
    """A fresh child cgroup with ``pids.max = limit``, or None when none can be made here."""
    folder = parent()
    if folder is None:
        return None
    child = _try_make(folder)
    if child is None:
        return None
    try:
        (child / "pids.max").write_text(str(limit), encoding="ascii")
    except OSError:
        remove(child)
        return None
    return child


def remove(child: Path) -> None:
    """Kill what is left in ``child`` and remove it (a cgroup folder goes only when empty)."""
    from .sandbox_exec import kill_cgroup

    kill_cgroup(str(child), rounds=100)
    for _ in range(50):
        try:
            child.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY: a killed process has not been reaped yet
            time.sleep(0.02)
