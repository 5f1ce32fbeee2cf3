"""Deterministic test doubles that ship with the library: ``MockBackend``,
``MemoryStateWriter`` and ``MemoryWorkspace``.

Like httpx's ``MockTransport`` and pydantic-ai's ``TestModel``, they are public so users
can test their loops the way we test ours: a whole tick with zero tokens.

The mock backend is driven by a small scenario (YAML or JSON)::

    triage:                      # what the triage agent answers
      decision: act              # noop | report | act
      summary: one example fix
      items: [{id: EX-1, title: Fix the greeting, files: [src/example.ts]}]
      tokens: 1000               # or usage: {input: .., output: .., cache_read: .., cache_write: ..}
    implementer:                 # one entry per attempt (the last one repeats)
      - files: {src/example.ts: "export const greeting = 'hello';\\n"}
        delete: []               # paths to delete
        symlinks: {}             # path: target
        outside: {}              # root-relative paths written OUTSIDE the worktree (escape tests)
        tokens: 3000
        sleep_s: 0               # a slow agent (kill-switch tests)
    verifier:
      - verdict: APPROVE         # APPROVE | REJECT | ESCALATE_HUMAN | none (no verdict line)
        reasons: []
        tokens: 1000

Mock token counts are estimates by definition; real backends report exact usage.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..ports import (
    AgentRequest,
    AgentResult,
    Diff,
    EventSink,
    FileChange,
    StopCheck,
    Usage,
    WorkspaceHandle,
)

MEMORY_PREFIX = "memory://"
SCENARIOS = ("default", "noop", "report-only", "reject-then-accept", "escalate")


def load_scenario(name_or_path: str | None) -> dict[str, Any]:
    """A bundled scenario by name (``default``, ``noop``, ...) or a YAML/JSON file path."""
    import yaml

    name = name_or_path or "default"
    if name in SCENARIOS:
        text = resources.files("loop_runtime.data").joinpath(f"scenarios/{name}.yaml").read_text("utf-8")
        file = f"scenario {name}"
    else:
        try:
            text = Path(name).read_text("utf-8")
        except FileNotFoundError:
            import difflib

            close = difflib.get_close_matches(name, list(SCENARIOS), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError("", "scenario", name, message=(
                f"scenario {name!r} not found: {hint}not a bundled scenario ({', '.join(SCENARIOS)}) "
                "and no such file")) from None
        except OSError as e:
            raise ConfigError(name, "scenario", name, message=f"cannot read scenario: {e.strerror}") from None
        file = name
    try:
        # libyaml where present (a tick loads its scenario once); the pure-Python loader's
        # messages name the line and column, so a bad file is re-read with it for the error
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except yaml.YAMLError:
        data = None
    try:
        data = yaml.safe_load(text) if data is None else data
    except yaml.YAMLError as e:
        raise ConfigError(file, "yaml", None, message=f"invalid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(file, "scenario", type(data).__name__, message="scenario must be a mapping")
    for key in data:
        if key not in ("triage", "implementer", "verifier"):
            raise ConfigError(file, key, None, message=f"unknown key {key!r} (valid: triage, implementer, verifier)")
        _check_role(data[key], str(key), file)
    return data


_SPEC_TYPES: dict[str, tuple[type, ...]] = {
    "decision": (str,), "summary": (str,), "items": (list,), "verdict": (str,), "reasons": (list,),
    "files": (dict,), "delete": (list,), "symlinks": (dict,), "outside": (dict,), "usage": (dict,),
    "sleep_s": (int, float), "tokens": (int,),
}


def _check_role(value: Any, role: str, file: str) -> None:
    """A role is one answer (mapping) or a list of answers; a wrong shape fails now, not mid-tick."""
    if value is None:
        return
    specs = value if isinstance(value, list) else [value]
    for i, spec in enumerate(specs):
        where = f"{role}[{i}]" if isinstance(value, list) else role
        if not isinstance(spec, Mapping):
            raise ConfigError(file, where, spec, message=f"{where} must be a mapping, got {type(spec).__name__}")
        for key, kinds in _SPEC_TYPES.items():
            v = spec.get(key)
            if v is None:
                continue
            if not isinstance(v, kinds) or isinstance(v, bool) or (key in ("tokens", "sleep_s") and v < 0):
                raise ConfigError(file, f"{where}.{key}", v)
        _usage(spec, file)
        if isinstance(spec.get("items"), list):
            for j, item in enumerate(spec["items"]):
                if not isinstance(item, Mapping):
                    raise ConfigError(file, f"{where}.items[{j}]", item, message=f"{where}.items[{j}] must be a "
                                      "mapping with id and title")


def _usage(spec: Mapping[str, Any], file: str = "scenario") -> Usage:
    if "usage" in spec:
        u = spec["usage"] or {}
        try:
            return Usage(int(u.get("input", 0)), int(u.get("output", 0)), int(u.get("cache_write", 0)),
                         int(u.get("cache_read", 0)))
        except (TypeError, ValueError):
            raise ConfigError(file, "usage", u) from None
    try:
        tokens = int(spec.get("tokens", 1000))
    except (TypeError, ValueError):
        raise ConfigError(file, "tokens", spec.get("tokens")) from None
    output = tokens // 5
    return Usage(input=tokens - output, output=output)


def _nth(entries: Any, n: int) -> Mapping[str, Any]:
    if isinstance(entries, Mapping):
        return entries
    if not entries:
        return {}
    return entries[min(n, len(entries) - 1)]


class MockBackend:
    """Answers each role from the scenario; the implementer really writes files in its worktree."""

    name = "mock"

    def __init__(self, scenario: Mapping[str, Any] | None = None, *, memory: MemoryWorkspace | None = None,
                 root: str | None = None) -> None:
        self.scenario = dict(scenario) if scenario is not None else load_scenario("default")
        self.memory = memory
        self.root = root
        self.calls: list[AgentRequest] = []
        self._count = {"triage": 0, "implementer": 0, "verifier": 0}

    async def run(self, request: AgentRequest, *, stop: StopCheck | None = None,
                  on_event: EventSink | None = None) -> AgentResult:
        started = time.monotonic()
        self.calls.append(request)
        n = self._count[request.role]
        self._count[request.role] += 1
        spec = _nth(self.scenario.get(request.role), n)
        if on_event is not None:
            on_event("agent.start", {"role": request.role, "backend": self.name})
        delay = float(spec.get("sleep_s", 0) or 0)
        deadline = started + min(delay, request.timeout_s)
        while time.monotonic() < deadline:
            reason = stop() if stop is not None else None
            if reason:
                return AgentResult("", Usage(input=min(request.token_limit, _usage(spec).total // 2)), "halted",
                                   duration_s=time.monotonic() - started, stop_reason=reason)
            await asyncio.sleep(0.05)
        if delay > request.timeout_s:
            return AgentResult("", _usage(spec), "halted", duration_s=request.timeout_s, stop_reason="timeout")
        usage = _usage(spec)
        if usage.total > request.token_limit:
            # a real backend is stopped at its reservation; so is the mock
            return AgentResult("", Usage(input=request.token_limit), "halted",
                               duration_s=time.monotonic() - started, stop_reason="budget")
        text, changed = self._answer(request, spec)
        if on_event is not None:
            on_event("agent.end", {"role": request.role, "tokens": usage.total})
        return AgentResult(text, usage, "ok", turns=1, duration_s=time.monotonic() - started,
                           files_changed=tuple(changed))

    def _answer(self, request: AgentRequest, spec: Mapping[str, Any]) -> tuple[str, list[str]]:
        if request.role == "triage":
            body = {"decision": spec.get("decision", "noop"), "summary": spec.get("summary", ""),
                    "items": list(spec.get("items", []) or [])}
            return "Triage done.\n```json\n" + json.dumps(body) + "\n```", []
        if request.role == "verifier":
            verdict = str(spec.get("verdict", "APPROVE"))
            reasons = [str(r) for r in spec.get("reasons", []) or []]
            lines = ["## Evidence", "- mock verifier", ""]
            if reasons:
                lines += ["## Reasons", *[f"{i}. {r}" for i, r in enumerate(reasons, 1)], ""]
            if verdict.lower() != "none":
                lines.append(f"## Verdict: {verdict}")
            return "\n".join(lines), []
        return "Implemented.", self._write(request, spec)

    def _write(self, request: AgentRequest, spec: Mapping[str, Any]) -> list[str]:
        files = dict(spec.get("files", {}) or {})
        deletes = list(spec.get("delete", []) or [])
        links = dict(spec.get("symlinks", {}) or {})
        if request.cwd.startswith(MEMORY_PREFIX):
            if self.memory is None:
                raise ConfigError("mock", "memory", request.cwd, message="memory workspace not attached")
            self.memory.apply(request.cwd, files, deletes)
            return sorted([*files, *deletes])
        root = Path(request.cwd)
        for rel, content in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                path.unlink()
            path.write_text(str(content), "utf-8")
        for rel in deletes:
            (root / rel).unlink(missing_ok=True)
        for rel, target in links.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() or path.exists():
                path.unlink()
            os.symlink(str(target), path)
        for rel, content in (spec.get("outside", {}) or {}).items():
            base = Path(self.root) if self.root else root
            target = base / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(str(content), "utf-8")
        return sorted([*files, *deletes, *links])


class MemoryStateWriter:
    """State files in a dict. ``seed`` makes it read-through (dry runs see the real files).

    Writes are redacted like ``FileStateWriter``'s (``secrets``: exact values to hide), so
    a dry run shows what a real run would write.
    """

    def __init__(self, files: Mapping[str, str] | None = None, *, seed: Any = None,
                 secrets: tuple[str, ...] = ()) -> None:
        self.files: dict[str, str] = dict(files or {})
        self._seed = seed
        self.secrets = tuple(secrets)
        self.writes: list[str] = []
        self._lock = threading.Lock()

    def read(self, path: str) -> str | None:
        if path in self.files:
            return self.files[path]
        if self._seed is not None:
            return self._seed.read(path)
        return None

    def write(self, path: str, text: str) -> None:
        from ..core.secrets import redact_file_text

        self.files[path] = redact_file_text(path, text, self.secrets)
        self.writes.append(path)

    def update(self, path: str, fn: Callable[[str | None], str | None]) -> str | None:
        """Read-modify-write; a lock keeps threads sharing one writer from losing an update."""
        with self._lock:
            old = self.read(path)
            new = fn(old)
            if new is None or new == old:
                return old
            self.write(path, new)
            return new


@dataclass
class _MemAttempt:
    handle: WorkspaceHandle
    files: dict[str, str]
    deleted: set[str]
    status: str = "active"
    commit: str | None = None


class MemoryWorkspace:
    """Worktrees in memory, for dry runs and tests: diffs are what the mock implementer wrote."""

    def __init__(self, base: Mapping[str, str] | None = None, base_branch: str = "main") -> None:
        self.base = dict(base or {})
        self.base_branch = base_branch
        self.attempts: dict[str, _MemAttempt] = {}
        self.merged: list[str] = []

    def prepare(self, run_id: str, pattern: str) -> WorkspaceHandle:
        handle = WorkspaceHandle(run_id, f"{MEMORY_PREFIX}{run_id}", f"loop/{run_id}", self.base_branch, "0" * 40)
        self.attempts[handle.path] = _MemAttempt(handle, {}, set())
        return handle

    def apply(self, cwd: str, files: Mapping[str, str], deletes: list[str]) -> None:
        att = self.attempts[cwd]
        att.files.update({k: str(v) for k, v in files.items()})
        att.deleted.update(deletes)

    def diff(self, handle: WorkspaceHandle) -> Diff:
        att = self.attempts[handle.path]
        changes = [
            FileChange(path=p, kind="modified" if p in self.base else "added",
                       added_lines=tuple(c.splitlines()))
            for p, c in sorted(att.files.items())
        ] + [FileChange(path=p, kind="deleted") for p in sorted(att.deleted)]
        patch = "".join(f"+++ b/{p}\n" + "".join(f"+{ln}\n" for ln in c.splitlines()) for p, c in att.files.items())
        return Diff(handle.base_commit, tuple(changes), patch)

    def finish(self, handle: WorkspaceHandle, status: str, *, commit_message: str | None = None) -> str | None:
        att = self.attempts[handle.path]
        att.status = status
        if commit_message is not None:
            att.commit = hashlib.sha1(f"{handle.run_id}\n{commit_message}".encode()).hexdigest()
        return att.commit

    def merge(self, handle: WorkspaceHandle) -> str:
        self.merged.append(handle.run_id)
        self.attempts[handle.path].status = "merged"
        return self.attempts[handle.path].commit or ""
