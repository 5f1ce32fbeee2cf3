"""Test-side handle on the fake agent CLIs (``tests/fakes/claude``, ``tests/fakes/codex``).

``FakeCli`` writes the per-test script the fake reads from ``$FAKE_AGENT_SCRIPT``, builds the
scrubbed environment a request carries, and reads back what the fake logged to
``$FAKE_AGENT_ARGV_LOG`` (argv, cwd, env, pid, pgid, whether stdin was /dev/null).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAKES = Path(__file__).resolve().parent


@dataclass
class FakeCli:
    """One fake CLI, scripted for one test."""

    name: str  # "claude" | "codex"
    tmp: Path

    def __post_init__(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(exist_ok=True)

    @property
    def binary(self) -> str:
        return str(FAKES / self.name)

    @property
    def home(self) -> Path:
        return self.tmp / "home"

    @property
    def script_path(self) -> Path:
        return self.tmp / f"{self.name}-script.json"

    @property
    def log_path(self) -> Path:
        return self.tmp / f"{self.name}-argv.jsonl"

    def script(self, steps: list[dict[str, Any]], **options: Any) -> None:
        self.script_path.write_text(json.dumps({"steps": steps, **options}))

    def env(self, **extra: str) -> dict[str, str]:
        """The scrubbed environment a request would carry, pointing the fake at its script and log."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
                "FAKE_AGENT_SCRIPT": str(self.script_path), "FAKE_AGENT_ARGV_LOG": str(self.log_path), **extra}

    def _entries(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def calls(self) -> list[dict[str, Any]]:
        return [e for e in self._entries() if "argv" in e]

    def child_pids(self) -> list[int]:
        return [e["child_pid"] for e in self._entries() if "child_pid" in e]


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _live_members(pgid: int) -> list[int]:
    """Non-zombie processes in group ``pgid`` (a zombie holds nothing; init reaps it when it can)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and fields[2] == str(pgid) and fields[0] != "Z":
                members.append(int(entry))
    return members


def group_gone(pgid: int, timeout: float = 2.0) -> bool:
    """True once the process group ``pgid`` has no live member: ``os.killpg(pgid, 0)`` raises
    ProcessLookupError, or only unreaped zombies remain."""
    end = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if not _live_members(pgid):
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.02)


def process_gone(pid: int, timeout: float = 2.0) -> bool:
    """True once ``pid`` is gone or a zombie."""
    end = time.monotonic() + timeout
    while True:
        fields = _stat(pid)
        if fields is None or fields[0] == "Z":
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.02)


def live_processes_in(cwd: Path, wait_s: float = 2.0) -> list[int]:
    """Non-zombie processes whose working directory is ``cwd`` (an agent CLI and anything it spawned)."""
    end = time.monotonic() + wait_s
    while True:
        found = []
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and os.readlink(f"/proc/{entry}/cwd") == str(cwd):
                    fields = _stat(int(entry))
                    if fields and fields[0] != "Z":
                        found.append(int(entry))
            except OSError:
                continue
        if not found or time.monotonic() > end:
            return found
        time.sleep(0.05)
