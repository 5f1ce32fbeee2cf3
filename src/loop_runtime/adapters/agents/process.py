"""The shared runner for agent CLIs: one child process group, NDJSON in, hard limits enforced.

Why a runner of our own instead of ``subprocess.run``: an agent CLI must be stoppable
*while* it streams — when its reported usage passes the reservation, on a wall-clock
deadline, or when the kill switch appears — and stopping it must not leave orphans
(agent CLIs spawn shells, language servers and MCP servers). So every agent runs as
the leader of its own session (``start_new_session=True``, pgid == pid), stdin is
``/dev/null`` (a CLI waiting on stdin hangs forever), and a stop kills the whole group:
SIGTERM, a short grace, then SIGKILL. Stragglers still in the group after the leader
exits are killed too.

The raw stdout lines go to ``<transcript_dir>/<role>-<timestamp>.jsonl`` with secrets
redacted, written under a ``.part`` name and renamed when complete.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...errors import AgentNotStarted
from ...ports import EventSink, StopCheck, Usage

POLL_S = 0.2  # how often stop() and the deadline are checked while the child is silent
GRACE_S = 2.0  # SIGTERM → SIGKILL delay
LINE_LIMIT = 32 * 1024 * 1024  # one NDJSON event may carry a whole file read by a tool
STDERR_TAIL = 4000

# Environment passed when the engine hands us no scrubbed environment at all: enough for
# a CLI to find its runtime and its home, nothing that carries a secret.
BASE_ENV_KEYS = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "SHELL", "TZ")

EventHandler = Callable[[dict[str, Any]], "str | None"]
"""Receives each parsed JSON object; returns a stop reason (``budget``) to kill the run now."""


# --------------------------------------------------------------------------- redaction

def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secret values (exactly) and anything that looks like a key or token."""
    from ...core.redact import redact as core_redact

    return core_redact(text, extra_secrets=[v for v in secrets if v and len(v) >= 6])


# --------------------------------------------------------------------------- environment


def child_env(request_env: Mapping[str, str], credentials: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: the engine's scrubbed env plus the backend's credential variables.

    An empty ``request_env`` means the caller scrubbed nothing for us; we then pass only
    ``BASE_ENV_KEYS`` from our own environment rather than leak everything.
    """
    base = dict(request_env) if request_env else {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
    base.update(credentials)
    return base


# --------------------------------------------------------------------------- usage meter


@dataclass
class UsageMeter:
    """The running usage of one agent run, from the live (not final) signals a backend streams.

    ``observe(key, usage)`` keeps the largest report per key (Claude restates one message's
    usage on every content block); ``cumulative(usage)`` replaces everything (Codex reports
    a thread total). ``over()`` is the hard-limit test: the total reached the limit, or the
    next increment of the same size as the last one would pass it.
    """

    limit: int
    parts: dict[str, Usage] = field(default_factory=dict)
    last_increment: int = 0

    @property
    def usage(self) -> Usage:
        total = Usage()
        for part in self.parts.values():
            total = total + part
        return total

    @property
    def total(self) -> int:
        return self.usage.total

    def observe(self, key: str, usage: Usage) -> bool:
        old = self.parts.get(key)
        if old is not None and old.total >= usage.total:
            return False
        before = self.total
        self.parts[key] = usage
        self.last_increment = self.total - before
        return True

    def cumulative(self, usage: Usage) -> bool:
        before = self.total
        if usage.total <= before:
            return False
        self.parts = {"cumulative": usage}
        self.last_increment = usage.total - before
        return True

    def over(self, *, predict: bool = True) -> bool:
        """The limit is reached, or (``predict``) one more increment like the last would pass it."""
        total = self.total
        if total >= self.limit:
            return True
        return predict and self.last_increment > 0 and total + self.last_increment > self.limit


def larger(a: Usage, b: Usage) -> Usage:
    return a if a.total >= b.total else b


def fail_closed(usage: Usage, limit: int) -> Usage:
    """Top ``usage`` up to ``limit`` (the unknown remainder booked as input): we cannot know what was spent."""
    if usage.total >= limit:
        return usage
    return Usage(usage.input + (limit - usage.total), usage.output, usage.cache_write, usage.cache_read,
                 usage.cost_usd)


def int_field(mapping: Any, key: str) -> int:
    """A non-negative integer from untrusted JSON (agent output is never trusted)."""
    if not isinstance(mapping, Mapping):
        return 0
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(0, int(value))


# --------------------------------------------------------------------------- transcript


class Transcript:
    """The raw, redacted stdout of one run: ``<dir>/<role>-<UTC timestamp>.jsonl``."""

    def __init__(self, directory: str | None, role: str, secrets: Sequence[str] = ()) -> None:
        from ..environment import SECRET_NAME, MIN_ENV_SECRET

        env_secrets = (v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= MIN_ENV_SECRET)
        self._secrets = tuple(dict.fromkeys(s for s in (*secrets, *env_secrets) if s))
        self.path: Path | None = None
        self._file: Any = None
        if directory is None:
            return
        try:
            folder = Path(directory)
            folder.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            path = folder / f"{role}-{stamp}.jsonl"
            n = 1
            while path.exists() or path.with_name(path.name + ".part").exists():
                n += 1
                path = folder / f"{role}-{stamp}-{n}.jsonl"
            self.path = path
            self._file = open(path.with_name(path.name + ".part"), "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise AgentNotStarted(f"cannot write transcript in {directory}: {exc.strerror or exc}") from exc

    def write(self, line: str) -> None:
        if self._file is not None:
            from ...core.secrets import redact_file_text  # JSON lines stay valid JSON

            self._file.write(redact_file_text(".jsonl", line, [v for v in self._secrets if len(v) >= 6]) + "\n")

    def write_json(self, obj: Mapping[str, Any]) -> None:
        self.write(json.dumps(obj, ensure_ascii=False, default=str))

    def close(self) -> str | None:
        """Flush and move the finished transcript into place; returns its path."""
        if self._file is None or self.path is None:
            return None
        part = self._file.name
        self._file.close()
        self._file = None
        os.replace(part, self.path)
        return str(self.path)


# --------------------------------------------------------------------------- runner


@dataclass(frozen=True)
class ProcessOutcome:
    """How a child run ended. ``halted`` is the reason we stopped it (budget, timeout, kill)."""

    returncode: int | None
    halted: str | None
    lines: int
    garbage: int
    stderr_tail: str
    duration_s: float


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _terminate(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    """SIGTERM the whole group, wait ``grace_s`` for the leader, then SIGKILL whatever is left."""
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), grace_s)
    _signal_group(pgid, signal.SIGKILL)
    await proc.wait()


async def _pump_lines(stream: asyncio.StreamReader, queue: asyncio.Queue[bytes | None]) -> None:
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # longer than LINE_LIMIT: the buffer was dropped; count it as garbage
            await queue.put(b"\x00<line too long>")
            continue
        if not line:
            await queue.put(None)
            return
        await queue.put(line)


async def _pump_tail(stream: asyncio.StreamReader, tail: collections.deque[bytes]) -> None:
    while True:
        chunk = await stream.read(4096)
        if not chunk:
            return
        tail.append(chunk)


async def run_json_lines(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    timeout_s: float,
    handle: EventHandler,
    transcript: Transcript,
    stop: StopCheck | None = None,
    grace_s: float = GRACE_S,
) -> ProcessOutcome:
    """Run ``argv`` and feed each JSON line of its stdout to ``handle`` until it ends or is stopped."""
    if not os.path.isdir(cwd):
        raise AgentNotStarted(f"agent working directory not found: {cwd}")
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, limit=LINE_LIMIT,
        )
    except OSError as exc:
        raise AgentNotStarted(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
    assert proc.stdout is not None and proc.stderr is not None
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    tail: collections.deque[bytes] = collections.deque(maxlen=STDERR_TAIL // 64 + 2)
    readers = [asyncio.ensure_future(_pump_lines(proc.stdout, queue)),
               asyncio.ensure_future(_pump_tail(proc.stderr, tail))]
    exited = asyncio.ensure_future(proc.wait())
    counts = {"lines": 0, "garbage": 0}
    halted: str | None = None
    try:
        halted = await _read_loop(queue, exited, pgid=proc.pid, handle=handle, transcript=transcript,
                                  stop=stop, deadline=started + timeout_s, counts=counts)
        if halted is None:
            halted = await _await_exit(exited, stop, started + timeout_s)
        if halted is not None:
            await _terminate(proc, grace_s)
        else:
            _signal_group(proc.pid, signal.SIGKILL)  # stragglers the leader left behind
    finally:
        if proc.returncode is None:  # cancelled or crashed while the child runs: never leave it behind
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception, asyncio.CancelledError):  # best effort while unwinding
                await asyncio.wait_for(proc.wait(), 5)
        for task in (*readers, exited):
            if not task.done():
                task.cancel()
        await asyncio.gather(*readers, exited, return_exceptions=True)
    stderr = b"".join(tail).decode(errors="replace")[-STDERR_TAIL:]
    return ProcessOutcome(proc.returncode, halted, counts["lines"], counts["garbage"], stderr,
                          time.monotonic() - started)


def _halt_reason(stop: StopCheck | None, deadline: float, now: float) -> str | None:
    """Why the run must stop now: ``timeout`` past the deadline, else what ``stop()`` says (None: go on)."""
    if now >= deadline:
        return "timeout"
    reason = stop() if stop is not None else None
    return str(reason) if reason else None


async def _read_loop(
    queue: asyncio.Queue[bytes | None],
    exited: asyncio.Future[int],
    *,
    pgid: int,
    handle: EventHandler,
    transcript: Transcript,
    stop: StopCheck | None,
    deadline: float,
    counts: dict[str, int],
) -> str | None:
    """Consume stdout lines until EOF; return a halt reason as soon as one applies."""
    reaped = False
    while True:
        now = time.monotonic()
        reason = _halt_reason(stop, deadline, now)
        if reason:
            return reason
        if exited.done() and not reaped:
            # The leader is gone; a grandchild may still hold stdout open. Kill the group so the
            # pipe closes — buffered lines stay readable.
            _signal_group(pgid, signal.SIGKILL)
            reaped = True
        try:
            raw = await asyncio.wait_for(queue.get(), min(POLL_S, max(deadline - now, 0.001)))
        except TimeoutError:
            continue
        if raw is None:
            return None
        counts["lines"] += 1
        line = raw.decode(errors="replace").rstrip("\r\n")
        transcript.write(line)
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            counts["garbage"] += 1
            continue
        verdict = handle(event)
        if verdict:
            return verdict


async def _await_exit(exited: asyncio.Future[int], stop: StopCheck | None, deadline: float) -> str | None:
    """After EOF the leader should exit promptly; keep enforcing the deadline and stop() meanwhile."""
    while not exited.done():
        now = time.monotonic()
        reason = _halt_reason(stop, deadline, now)
        if reason:
            return reason
        await asyncio.wait([exited], timeout=min(POLL_S, deadline - now))
    return None


Wrap = Callable[[list[str], Mapping[str, str]], "tuple[list[str], dict[str, str]]"]
"""A sandbox's ``wrap``: (argv, env) → the (argv, env) that runs it inside the sandbox."""


async def run_shell(command: str, *, cwd: str, env: Mapping[str, str], timeout_s: float,
                    max_chars: int = 20_000, wrap: Wrap | None = None) -> tuple[int | None, str]:
    """Run ``/bin/sh -c command`` in its own process group; (exit code or None on timeout, output).

    Output is stdout+stderr, truncated to ``max_chars`` (head and tail kept). The group is
    killed on timeout so a stuck test runner leaves nothing behind. ``wrap`` runs it in a sandbox.
    """
    argv, env = wrap(["/bin/sh", "-c", command], env) if wrap is not None else (["/bin/sh", "-c", command], env)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return None, f"cannot start /bin/sh: {exc.strerror or exc}"
    assert proc.stdout is not None
    chunks: collections.deque[bytes] = collections.deque(maxlen=64)  # the last ~256 KB at most
    reader = asyncio.ensure_future(_pump_tail(proc.stdout, chunks))
    code: int | None = None
    try:
        code = await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        pass
    finally:
        _signal_group(proc.pid, signal.SIGKILL)  # on timeout, and background jobs it left in its group
        if proc.returncode is None:
            await proc.wait()
        try:
            await asyncio.wait_for(reader, 2)
        except TimeoutError:  # a process that left the group still holds the pipe
            reader.cancel()
    out = b"".join(chunks)
    text = out.decode(errors="replace")
    if len(text) > max_chars:
        half = max_chars // 2
        text = f"{text[:half]}\n[... {len(text) - max_chars} characters cut ...]\n{text[-half:]}"
    return code, text


def inside_root(root: str, path: str) -> str | None:
    """``path`` relative to ``root`` when it lies inside it (symlinks resolved), else None."""
    full = os.path.realpath(os.path.join(root, path))
    base = os.path.realpath(root)
    if full == base or not full.startswith(base + os.sep):
        return None
    return os.path.relpath(full, base)


def last_line(text: str, secrets: Iterable[str] = ()) -> str:
    """The last non-blank line of a stderr tail, redacted, for a one-line error."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return redact(lines[-1][:300], secrets) if lines else ""


def summarize(args: Mapping[str, Any], limit: int = 200) -> dict[str, Any]:
    """Tool arguments for a progress event: long strings (file contents) cut to ``limit`` characters."""
    return {k: (v[:limit] + "…" if isinstance(v, str) and len(v) > limit else v) for k, v in args.items()}


def emit(on_event: EventSink | None, kind: str, payload: Mapping[str, Any]) -> None:
    """Send a progress event if anyone listens."""
    if on_event is not None:
        on_event(kind, payload)
