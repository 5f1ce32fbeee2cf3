"""Running the project's own tests inside an attempt's worktree.

Why the project's command and not ours: the verifier must judge a change by the
checks the project trusts. The command comes from ``loop-runtime.toml`` when set,
else it is detected from the files a project already has (pytest, npm, go, cargo,
make). It runs through ``/bin/sh -c`` in the worktree, in its own process group so a
timeout kills everything it started, with a scrubbed environment. Its output is kept
as a redacted tail: the end of a test log is where failures are summarised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..core.redact import redact
from ..errors import ConfigError
from ..ports import Sandbox, SandboxScope, TestRun
from .environment import scrubbed_env

__all__ = ["ProjectTestRunner", "detect_test_command", "run_tests"]

NPM_DEFAULT_TEST = "no test specified"
GRACE_S = 2.0
_MAKE_TEST = re.compile(r"^test\s*:(?!=)", re.MULTILINE)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _uses_pytest(wt: Path) -> bool:
    if (wt / "pytest.ini").is_file():
        return True
    pyproject = _read(wt / "pyproject.toml")
    if pyproject is not None:
        try:
            if "pytest" in tomllib.loads(pyproject).get("tool", {}):
                return True
        except tomllib.TOMLDecodeError:
            if "[tool.pytest" in pyproject:
                return True
    for name, section in (("setup.cfg", "[tool:pytest]"), ("tox.ini", "[pytest]")):
        text = _read(wt / name)
        if text is not None and section in text:
            return True
    tests = wt / "tests"
    return tests.is_dir() and any(tests.rglob("*.py"))


def _npm_test(wt: Path) -> bool:
    text = _read(wt / "package.json")
    if text is None:
        return False
    try:
        scripts = json.loads(text).get("scripts") or {}
    except (json.JSONDecodeError, AttributeError):
        return False
    test = scripts.get("test") if isinstance(scripts, dict) else None
    return isinstance(test, str) and bool(test.strip()) and NPM_DEFAULT_TEST not in test


def _make_test(wt: Path) -> bool:
    for name in ("GNUmakefile", "makefile", "Makefile"):
        text = _read(wt / name)
        if text is not None and _MAKE_TEST.search(text):
            return True
    return False


def detect_test_command(worktree: Path) -> str | None:
    """The conventional test command of the project in ``worktree``, or None when none is evident.

    Checked in order: pytest, ``npm test``, ``go test ./...``, ``cargo test``, ``make test``.
    """
    wt = Path(worktree)
    if _uses_pytest(wt):
        return "pytest"
    if _npm_test(wt):
        return "npm test"
    if (wt / "go.mod").is_file():
        return "go test ./..."
    if (wt / "Cargo.toml").is_file():
        return "cargo test"
    if _make_test(wt):
        return "make test"
    return None


class _TailReader(threading.Thread):
    """Drains a pipe so the child never blocks, keeping only the last ``keep`` bytes."""

    def __init__(self, pipe: object, keep: int) -> None:
        super().__init__(daemon=True)
        self.pipe, self.keep = pipe, keep
        self.buf = bytearray()
        self.dropped = 0

    def run(self) -> None:
        read = self.pipe.read1 if hasattr(self.pipe, "read1") else self.pipe.read  # type: ignore[attr-defined]
        try:
            while chunk := read(65536):
                self._add(chunk)
        except (OSError, ValueError):
            pass
        finally:
            self.pipe.close()  # type: ignore[attr-defined]

    def _add(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) > self.keep:
            cut = len(self.buf) - self.keep
            self.dropped += cut
            del self.buf[:cut]


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _finish_output(reader: _TailReader, max_output: int, secrets: Iterable[str]) -> str:
    text = bytes(reader.buf).decode("utf-8", "replace")
    dropped = reader.dropped
    if dropped:  # the first kept line may be the tail of a secret: drop it before redacting
        head, sep, rest = text.partition("\n")
        text, dropped = (rest, dropped + len(head.encode()) + 1) if sep else (text, dropped)
    text = redact(text, extra_secrets=secrets)
    if len(text) > max_output:
        cut = len(text) - max_output
        text = text[cut:]
        nl = text.find("\n")
        if 0 <= nl < 200:
            text, cut = text[nl + 1:], cut + nl + 1
        dropped += cut
    if dropped:
        text = f"[… {dropped} bytes of earlier output truncated …]\n" + text
    return text


def run_tests(worktree: Path, command: str | None, *, timeout_s: float, env: Mapping[str, str],
              max_output: int = 20000, secrets: Iterable[str] = (), sandbox: Sandbox | None = None) -> TestRun:
    """Run ``command`` with ``/bin/sh -c`` in ``worktree``; kill its whole process group on timeout."""
    if command is None or not command.strip():
        # nothing failed; command None tells the engine and the verifier that no tests exist
        return TestRun(command=None, exit_code=None, passed=True, output="no test command found")
    if timeout_s <= 0:
        raise ConfigError("loop-runtime.toml", "tests.timeout", timeout_s)
    start = time.monotonic()
    boxed = sandbox.prepare(SandboxScope(cwd=str(worktree), writable=True, purpose="tests", shims=False)) \
        if sandbox is not None else None
    argv, env = boxed.wrap(["/bin/sh", "-c", command], env) if boxed is not None else (["/bin/sh", "-c", command], env)
    try:
        result = _run(worktree, command, argv, env, timeout_s=timeout_s, max_output=max_output, secrets=secrets,
                      start=start)
        blocked = boxed.denials() if boxed is not None else ()
    finally:
        if boxed is not None:
            boxed.close()
    if blocked:  # what the sandbox refused the tests (an escape, or a test that needs an allowlisted host)
        note = "\n".join(redact(b, extra_secrets=secrets) for b in blocked[:20])
        result = dataclasses.replace(result, output=f"{result.output}\n[sandbox]\n{note}")
    return result


def _run(worktree: Path, command: str, argv: list[str], env: Mapping[str, str], *, timeout_s: float,
         max_output: int, secrets: Iterable[str], start: float) -> TestRun:
    try:
        proc = subprocess.Popen(
            argv, cwd=str(worktree), env=dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
    except OSError as exc:
        return TestRun(command=command, exit_code=None, passed=False, output=redact(f"could not start: {exc}"),
                       duration_s=time.monotonic() - start)
    reader = _TailReader(proc.stdout, keep=max(4 * max_output, 65536))
    reader.start()
    timed_out = False
    try:
        code: int | None = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=GRACE_S)
        code = None
    _kill_group(proc.pid, signal.SIGKILL)  # stragglers (servers, watchers) left in the group
    proc.wait()
    reader.join(timeout=GRACE_S)  # a daemon that left the group may hold the pipe: give up on it
    output = _finish_output(reader, max_output, secrets)
    if timed_out:
        output += f"\n[timed out after {timeout_s:g}s; process group killed]"
    return TestRun(command=command, exit_code=code, passed=(code == 0 and not timed_out), output=output,
                   duration_s=time.monotonic() - start, timed_out=timed_out)


class ProjectTestRunner:
    """``ports.TestRunner``: the configured command (or the detected one) run in each worktree."""

    def __init__(self, command: str | None = None, *, timeout_s: float = 900.0, env: Mapping[str, str] | None = None,
                 max_output: int = 20000, secrets: Iterable[str] = (), sandbox: Sandbox | None = None) -> None:
        self.sandbox = sandbox
        self.command = command
        self.timeout_s = timeout_s
        self.env = dict(env) if env is not None else scrubbed_env(os.environ)
        self.max_output = max_output
        self.secrets = tuple(secrets)

    def run(self, worktree: str) -> TestRun:
        command = self.command or detect_test_command(Path(worktree))
        return run_tests(Path(worktree), command, timeout_s=self.timeout_s, env=self.env,
                         max_output=self.max_output, secrets=self.secrets, sandbox=self.sandbox)
