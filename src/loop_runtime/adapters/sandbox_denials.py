"""What a sandboxed process was refused: the shims' denial channel and srt's violation reports.

Why apart from ``sandbox``: these are the runtime's evidence of an escape attempt, and
none of it may be taken on the agent's word. ``DenialChannel`` is the write-only pipe the
git/gh shims report through; ``confirm_record`` re-decides each record with the shims'
own policy (a forged record of an allowed call is dropped); ``read_violations`` reads what
srt's monitor and ``sandbox_exec`` wrote on the host side and drops refusals that are no
escape attempt (``expected_refusal``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..ports import READ_ONLY_WRITE

MAX_VIOLATIONS = 100


class DenialChannel:
    """The shims' write-only way to tell the runtime what they refused: a FIFO the runtime drains.

    Why not a log file: whatever the shims can write inside the sandbox, the agent can write
    too — a file it could truncate or rewrite. The FIFO sits in the process's private folder,
    which is read-only inside (it cannot be removed or replaced), with mode ``0222``: nobody
    may open it for reading, and the sandboxed command holds no capability to override that
    (``sandbox_exec.drop_capabilities``). A record, once written, is in the runtime's hands: a
    thread here drains it while the command runs (a flood cannot block a shim's write), each
    record is one write of at most PIPE_BUF bytes starting with a newline (never interleaved
    with, nor glued onto, anything the agent wrote). What the agent can still do — write a
    record of its own — is handled by ``confirm``, which re-decides each record as it arrives
    (``confirm_record``): only confirmed denials are kept (at most ``MAX_LINES``, distinct), so a
    flood of junk or of forged records of allowed calls cannot crowd out a real one.
    """

    MAX_LINES = 100
    MAX_PENDING = 65536

    def __init__(self, path: Path, confirm: Callable[[str], str | None]) -> None:
        import threading

        os.mkfifo(path, 0o600)
        self.path = path
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # a writer of our own: no EOF
        os.chmod(path, 0o222)
        self._pending = b""
        self._confirm = confirm
        self._lines: dict[str, None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="sandbox-denials", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        import select

        while not self._stop.is_set():
            fd = self.fd
            if fd is None:
                return
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
            except (OSError, ValueError):
                return
            if ready:
                self._read_available()

    def _read_available(self) -> None:
        with self._lock:
            while self.fd is not None:
                try:
                    chunk = os.read(self.fd, 65536)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                if not chunk:
                    return
                *complete, self._pending = (self._pending + chunk).split(b"\n")
                if len(self._pending) > self.MAX_PENDING:
                    self._pending = b""  # a line that never ends is nobody's record
                for raw in complete:
                    if raw.strip() and len(self._lines) < self.MAX_LINES:
                        shown = self._confirm(raw.decode("utf-8", "replace").strip())
                        if shown:
                            self._lines.setdefault(shown, None)

    def lines(self) -> list[str]:
        """Every confirmed denial so far (what is still in the pipe is read first)."""
        self._read_available()
        with self._lock:
            return list(self._lines)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with self._lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


def confirm_record(line: str, *, shim_level: str | None, shim_branch: str | None, watchdog: bool) -> str | None:
    """One record from the denial channel, re-decided here with the shims' own policy.

    Anything inside the sandbox can write to the channel, so a record is believed only as far
    as the policy confirms it: a git/gh call the policy denies at the shims' level (writing
    that record is no different from making the call), a gate refusal of a call that needs
    the gate, the namespace watchdog's process limit (only when ``watchdog`` holds the count).
    Anything else is dropped, and the text reported is the policy's reason, never the record's.
    """
    from ..core.shim_policy import decide

    try:
        entry = json.loads(line)
        tool = entry.get("tool")
        argv = [str(a) for a in entry.get("argv", [])] if tool in ("git", "gh") else []
    except (ValueError, AttributeError, TypeError):
        return None
    if tool == "sandbox":
        ok = entry.get("limit") == "processes" and watchdog
        return "sandbox: process limit exceeded (namespace watchdog): all killed" if ok else None
    if tool not in ("git", "gh") or shim_level is None:
        return None
    shown = f"{tool} {' '.join(argv)}"[:200]
    decision = decide(tool, argv, level=shim_level, branch=shim_branch)
    if not decision.allowed:
        return f"{shown}: {decision.reason}"[:400]
    if decision.needs_gate and str(entry.get("reason", "")).startswith("gate does not allow"):
        return f"{shown}: gate does not allow {decision.needs_gate}"
    if entry.get("clipped") is True:
        return f"{shown}: denied (arguments clipped in the record)"
    return None


def read_violations(limit_report: Path, report: Path, classify: Callable[[str], str | None]) -> tuple[str, ...]:
    """What the sandbox blocked (writes refused, connections denied, the process limit), read from
    reports written on the host side: ``sandbox_exec``'s ``limit_report`` and srt's own monitor's
    ``report`` (``srt_run.mjs``). ``classify(line)`` gives each monitor line's prefix, None to drop it."""
    seen: dict[str, None] = {}
    try:
        limit = json.loads(limit_report.read_text(encoding="utf-8"))
        if isinstance(limit, dict) and limit.get("limit") == "processes":
            seen[f"blocked: process limit exceeded ({str(limit.get('max'))[:20]} processes and threads)"] = None
    except (OSError, ValueError):
        pass
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return tuple(seen)
    lines = data.get("violations") if isinstance(data, dict) else None
    if not isinstance(lines, list):
        return tuple(seen)
    for line in lines:
        prefix = classify(line) if isinstance(line, str) else None
        if prefix is not None:
            seen.setdefault(f"{prefix}{line[:300]}", None)
    return tuple(seen)[:MAX_VIOLATIONS]


@dataclass(frozen=True)
class RefusalContext:
    """What decides whether a monitor line is an escape attempt: the process's cwd and scope, the
    home whose caches a CLI may touch, and the denial channel's path."""

    cwd: str
    writable: bool
    home: str
    log: str

    def classify(self, line: str) -> str | None:
        """The report prefix for a monitor line, or None when it is no escape attempt."""
        if self.expected(line):
            return None
        return READ_ONLY_WRITE if self.own_read_only_write(line) else "blocked: "

    def own_read_only_write(self, line: str) -> bool:
        """A read-only agent's (or tool's) refused write inside its own cwd: caches, ``__pycache__``."""
        if self.writable or not line.startswith("deny "):
            return False
        op, _, path = line.partition(" ")[2].partition(" ")
        return op != "network-outbound" and (path == self.cwd or path.startswith(self.cwd + os.sep))

    def expected(self, line: str) -> bool:
        """Refusals that are no escape attempt: the CLI's own home state and caches, ``mkdir`` of a folder
        that exists, and paths the monitor could not resolve (relative to a descriptor, ``/proc/self/fd``)."""
        op, _, path = line.partition(" ")[2].partition(" ")
        if not line.startswith("deny ") or op == "network-outbound":
            return False
        if path == "/sys/kernel/debug/tracing/trace_marker":
            return True  # Bun's runtime (opencode) probes the kernel trace log at start: no escape attempt
        if path.startswith("/proc/self/fd/") or (op == "mkdir" and os.path.isdir(path)) or path == self.log:
            return True  # (the denial channel is opened for writing where nothing else is writable)
        home = self.home
        return any(path == f"{home}/{n}" or path.startswith(f"{home}/{n}")
                   for n in (".claude", ".cache", ".npm", ".config/claude", ".local/state"))


__all__ = ["DenialChannel", "RefusalContext", "confirm_record", "read_violations"]
