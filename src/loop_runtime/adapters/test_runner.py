"""Running the project's own tests inside an attempt's worktree.

Why the project's command and not ours: the verifier must judge a change by the
checks the project trusts. The command comes from ``loop-runtime.toml`` when set,
else it is detected from the files a project already has (pytest, npm, go, cargo,
make). It runs through ``/bin/sh -c`` in the worktree, in its own process group so a
timeout kills everything it started, with a scrubbed environment. Its output is kept
as a redacted tail: the end of a test log is where failures are summarised.

What ran is recorded too (``TestRun.report``), so an attempt that skips, deselects or
renames away tests is caught by comparing it with the base commit's run
(``core.test_weakening``). pytest is asked for JUnit XML and a summary of what did not pass through
``PYTEST_ADDOPTS`` (whatever command calls it), ``go test`` for ``-v`` through
``GOFLAGS``; a project that already uses jest-junit or mocha-junit-reporter has their
output redirected (``JEST_JUNIT_OUTPUT_FILE``, ``MOCHA_FILE``); other runners are read
from their summary lines. The report goes to a
fresh private directory outside the worktree, and a report that is not a regular
file, too large or not parseable is no report. ``ProjectTestRunner.baseline`` runs the
same command in a clean detached checkout of the base commit, once per (base commit,
command): the result is cached under ``.loop-runtime/test-baselines/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

from ..core.redact import redact
from ..errors import ConfigError, LoopError
from ..formats.test_report import (
    MAX_REPORT_BYTES,
    TestReport,
    merge_junit,
    parse_junit,
    parse_summary,
    report_from_dict,
    report_to_dict,
)
from ..ports import Sandbox, SandboxScope, TestRun
from .environment import scrubbed_env

__all__ = ["BASELINE_DIR", "ProjectTestRunner", "detect_test_command", "read_report", "run_tests"]

BASELINE_DIR = ".loop-runtime/test-baselines"
_CACHE_VERSION = 1

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


JUNIT_ENV = ("JEST_JUNIT_OUTPUT_FILE", "MOCHA_FILE")
"""Where jest-junit and mocha-junit-reporter write, when a project already uses them: redirected."""


def _report_env(env: Mapping[str, str], private: Path) -> tuple[dict[str, str], list[Path]]:
    """``env`` plus what makes runners write JUnit XML into ``private``, and go test -v; the report paths.

    pytest gets ``--junitxml`` through ``PYTEST_ADDOPTS`` (whatever command calls it).
    ``-ra`` lists every test that did not pass (skips and xfails with their reasons) for the
    verifier; not ``-rA``: a line per passing test would push the failures out of the output
    tail that the verifier and the next attempt see, and the names are in the JUnit XML.
    """
    out = dict(env)
    token = os.urandom(8).hex()
    pytest_xml = private / f"{token}-pytest.xml"
    extra = f"--junitxml={shlex.quote(str(pytest_xml))} -ra"
    out["PYTEST_ADDOPTS"] = f"{out['PYTEST_ADDOPTS']} {extra}" if out.get("PYTEST_ADDOPTS") else extra
    out["GOFLAGS"] = f"{out['GOFLAGS']} -v" if out.get("GOFLAGS") else "-v"
    paths = [pytest_xml]
    for var in JUNIT_ENV:
        path = private / f"{token}-{var.split('_')[0].lower()}.xml"
        out[var] = str(path)
        paths.append(path)
    return out, paths


def _read_private(path: Path) -> bytes | None:
    """A regular file's bytes (no symlink followed, bounded size); ``b""`` when there is something else
    at ``path`` (a link, a folder, a huge file: garbled); None when nothing is there."""
    if not os.path.lexists(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return b""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_REPORT_BYTES:
            return b""
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read(MAX_REPORT_BYTES + 1)
    finally:
        if fd >= 0:
            os.close(fd)


def read_report(junit: Path | Sequence[Path], output: str) -> TestReport | None:
    """What ran: the JUnit XML at ``junit`` (one path or several) when there and sound, else the summary lines.

    Something at a report path that is not a sound report (garbled, a symlink, a folder) is
    no report at all: printable text does not stand in for a report that was tampered with.
    pytest's JUnit XML has no deselected count; it is taken from pytest's summary line.
    """
    found: list[TestReport] = []
    for path in [junit] if isinstance(junit, Path) else junit:
        data = _read_private(path)
        if data is None:
            continue
        report = parse_junit(data)
        if report is None:
            return None
        found.append(report)
    summary = parse_summary(output)
    if not found:
        return summary
    merged = found[0] if len(found) == 1 else merge_junit(found)
    if summary is not None and summary.source == "pytest" and summary.deselected:
        merged = replace(merged, deselected=summary.deselected)
    return merged


def run_tests(worktree: Path, command: str | None, *, timeout_s: float, env: Mapping[str, str],
              max_output: int = 20000, secrets: Iterable[str] = (), sandbox: Sandbox | None = None) -> TestRun:
    """Run ``command`` with ``/bin/sh -c`` in ``worktree``; kill its whole process group on timeout.

    With ``sandbox`` the command runs inside it; the private report folder is made writable
    there (``SandboxScope.extra_writable``) so the per-test report still reaches us.
    """
    if command is None or not command.strip() or timeout_s <= 0:
        return _run_tests(worktree, command, timeout_s=timeout_s, env=env, max_output=max_output, secrets=secrets)
    private = Path(tempfile.mkdtemp(prefix="loop-tests-"))  # 0700, outside the worktree, a fresh name each run
    try:
        run_env, reports = _report_env(env, private)
        run = _run_tests(worktree, command, timeout_s=timeout_s, env=run_env, max_output=max_output, secrets=secrets,
                         sandbox=sandbox, extra_writable=(str(private),))
        return replace(run, report=read_report(reports, run.output))
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _run_tests(worktree: Path, command: str | None, *, timeout_s: float, env: Mapping[str, str],
               max_output: int = 20000, secrets: Iterable[str] = (), sandbox: Sandbox | None = None,
               extra_writable: tuple[str, ...] = ()) -> TestRun:
    if command is None or not command.strip():
        # nothing failed; command None tells the engine and the verifier that no tests exist
        return TestRun(command=None, exit_code=None, passed=True, output="no test command found")
    if timeout_s <= 0:
        raise ConfigError("loop-runtime.toml", "tests.timeout", timeout_s)
    start = time.monotonic()
    boxed = sandbox.prepare(SandboxScope(cwd=str(worktree), writable=True, purpose="tests", shims=False,
                                         extra_writable=extra_writable)) if sandbox is not None else None
    argv, env = boxed.wrap(["/bin/sh", "-c", command], env) if boxed is not None else (["/bin/sh", "-c", command], env)
    try:
        result = _run(worktree, command, argv, env, timeout_s=timeout_s, max_output=max_output, secrets=secrets,
                      start=start)
        blocked = boxed.denials() if boxed is not None else ()
    finally:
        if boxed is not None:
            boxed.close()
    if blocked:  # what the sandbox refused the tests (an escape, or a test that needs an allowlisted host)
        shown = tuple(redact(b, extra_secrets=secrets) for b in blocked[:20])
        result = dataclasses.replace(result, output=f"{result.output}\n[sandbox]\n" + "\n".join(shown),
                                     sandbox_denials=shown)
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


Checkout = Callable[[str], AbstractContextManager[str]]
"""A clean checkout of a commit for the duration of a ``with`` block (``GitWorkspace.base_checkout``)."""


class ProjectTestRunner:
    """``ports.TestRunner``: the configured command (or the detected one) run in each worktree.

    With ``checkout`` and ``cache_dir`` it also runs the tests of a base commit
    (``baseline``), once per (base commit, command).
    """

    def __init__(self, command: str | None = None, *, timeout_s: float = 900.0, env: Mapping[str, str] | None = None,
                 max_output: int = 20000, secrets: Iterable[str] = (), checkout: Checkout | None = None,
                 cache_dir: Path | str | None = None, sandbox: Sandbox | None = None) -> None:
        self.sandbox = sandbox
        self.command = command
        self.timeout_s = timeout_s
        self.env = dict(env) if env is not None else scrubbed_env(os.environ)
        self.max_output = max_output
        self.secrets = tuple(secrets)
        self.checkout = checkout
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._baselines: dict[str, TestRun] = {}
        self._untrusted_ran = False  # an attempt's tests ran: cache files may have been written by them

    def _cache_file(self, base_commit: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(f"{base_commit}\0{self.command or ''}".encode()).hexdigest()[:32]
        return self.cache_dir / f"{key}.json"

    def _records_root(self) -> Path:
        """The project root whose ``.loop-runtime/written/`` records the runtime's cache writes."""
        assert self.cache_dir is not None
        parent = self.cache_dir.parent
        return parent.parent if parent.name == ".loop-runtime" else parent

    def _cached(self, base_commit: str) -> TestRun | None:
        path = self._cache_file(base_commit)
        if path is None:
            return None
        try:
            raw = path.read_bytes()
            # believed only if it is byte for byte what a runtime last wrote there (an agent or an
            # attempt's tests may have written the file: forged between guarded runs, it is not believed)
            from .locked_files import written_digest

            if hashlib.sha256(raw).hexdigest() != written_digest(self._records_root(), path):
                return None
            data = json.loads(raw.decode("utf-8"))
            if (data.get("version") != _CACHE_VERSION or data.get("base_commit") != base_commit
                    or data.get("configured") != (self.command or "")):
                return None
            report = None if data["report"] is None else report_from_dict(data["report"])
            code = data["exit_code"]
            return TestRun(command=data["command"], exit_code=code if isinstance(code, int) else None,
                           passed=bool(data["passed"]), output=str(data["output"]), report=report,
                           duration_s=float(data.get("duration_s", 0.0)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # unreadable or not ours: run again and overwrite

    def _store(self, base_commit: str, run: TestRun) -> None:
        path = self._cache_file(base_commit)
        if path is None:
            return
        doc = {"version": _CACHE_VERSION, "base_commit": base_commit, "configured": self.command or "",
               "command": run.command, "exit_code": run.exit_code, "passed": run.passed,
               "duration_s": round(run.duration_s, 3), "output": run.output[-2000:],
               "report": None if run.report is None else report_to_dict(run.report)}
        from . import locked_files

        with contextlib.suppress(OSError, LoopError):  # under the file's lock, with the runtime's write record
            locked_files.write(self._records_root(), path, json.dumps(doc))

    def baseline(self, base_commit: str) -> TestRun | None:
        """The project's tests run on ``base_commit`` in a clean checkout; cached. None without a checkout.

        The cache file is read only while no attempt's tests have run in this process, or
        when it was read before they ran (``run`` primes it): an attempt's tests can write
        under ``.loop-runtime/``, so a file that appeared during one is not believed.
        """
        if self.checkout is None:
            return None
        run = self._baselines.get(base_commit)
        if run is None and not self._untrusted_ran:
            run = self._cached(base_commit)
        if run is None:
            with self.checkout(base_commit) as path:
                command = self.command or detect_test_command(Path(path))
                run = run_tests(Path(path), command, timeout_s=self.timeout_s, env=self.env,
                                max_output=self.max_output, secrets=self.secrets, sandbox=self.sandbox)
            if not run.timed_out:  # a timeout may be load: the next attempt tries again
                self._store(base_commit, run)
        self._baselines[base_commit] = run
        return run

    def _head(self, worktree: str) -> str | None:
        from .git import run_git

        try:
            return run_git(["rev-parse", "--verify", "-q", "HEAD"], worktree).strip() or None
        except (LoopError, OSError):
            return None

    def run(self, worktree: str) -> TestRun:
        """The tests of an attempt's worktree (untrusted code).

        Around it the base commit's cached result is guarded: read before the run (the
        worktree's ``HEAD`` is still the base commit), and after it rewritten from memory or
        removed, so whatever the attempt's tests wrote there is not believed by a later tick.
        """
        command = self.command or detect_test_command(Path(worktree))
        base = self._head(worktree) if self.checkout is not None and self.cache_dir is not None else None
        if base is not None and base not in self._baselines and not self._untrusted_ran:
            primed = self._cached(base)
            if primed is not None:
                self._baselines[base] = primed
        self._untrusted_ran = True
        try:
            return run_tests(Path(worktree), command, timeout_s=self.timeout_s, env=self.env,
                             max_output=self.max_output, secrets=self.secrets, sandbox=self.sandbox)
        finally:
            for commit in {*self._baselines, *([base] if base else [])}:
                known = self._baselines.get(commit)
                if known is not None:
                    self._store(commit, known)
                else:
                    cache = self._cache_file(commit)
                    if cache is not None:
                        with contextlib.suppress(OSError):
                            cache.unlink()
