"""``repair.yaml`` and the repair observation (``repair-evidence`` JSON): text ↔ values (R32).

Shapes (ecosystem reference §3, ``loop-gate repair-plan``)::

    repair.yaml: {version: 1, labels{pause, lock, bug, attemptsPrefix, priority[], sensitive[]},
                  maxAttempts: int>0, sensitivePaths[]}
    observation: {version: 1, observedAt, repository, pauseIssues: int[],
                  targets[{type: issue|pull-request, number>0, title, updatedAt, labels[], changedPaths?,
                           linkedPullRequest?, reproduction?, headSha?, branchOwned?, reviewActionable?,
                           check?{status, failureClass}}]}

An issue requires ``reproduction``; a PR requires a 40-char lowercase ``headSha``,
``changedPaths``, ``branchOwned``, ``reviewActionable`` and ``check``. Duplicate
``type:number`` targets are rejected. Every problem is one ``ConfigError`` line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .json_text import load_json

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
REPRODUCTION = ("confirmed", "unknown", "failed")
CHECK_STATUS = ("success", "failure", "pending", "absent")
FAILURE_CLASS = ("deterministic", "unknown", "flake", "infrastructure")


@dataclass(frozen=True)
class RepairLabels:
    pause: str = "loop-pause-all"
    lock: str = "loop:repairing"
    bug: str = "bug"
    attempts_prefix: str = "loop:attempts:"
    priority: tuple[str, ...] = ("priority:critical", "priority:high", "priority:medium", "priority:low")
    sensitive: tuple[str, ...] = ("security", "area:auth", "area:billing", "area:migrations", "area:deployment")


@dataclass(frozen=True)
class RepairContract:
    """``repair.yaml``; the defaults (no file) are the ecosystem template's (templates/repair.yaml.template)."""

    labels: RepairLabels = field(default_factory=RepairLabels)
    max_attempts: int = 3
    sensitive_paths: tuple[str, ...] = (".github/**", "deploy/**", "**/migrations/**", "**/auth/**", "**/*secret*")


@dataclass(frozen=True)
class CheckState:
    status: str
    failure_class: str = "unknown"


@dataclass(frozen=True)
class RepairTarget:
    type: str  # issue | pull-request
    number: int
    title: str
    updated_at: str
    labels: tuple[str, ...] = ()
    changed_paths: tuple[str, ...] = ()
    linked_pull_request: int | None = None
    reproduction: str | None = None
    head_sha: str | None = None
    branch_owned: bool | None = None
    review_actionable: bool | None = None
    check: CheckState | None = None

    @property
    def key(self) -> str:
        return f"{self.type}:{self.number}"


@dataclass(frozen=True)
class RepairObservation:
    observed_at: str
    repository: str
    pause_issues: tuple[int, ...] = ()
    targets: tuple[RepairTarget, ...] = ()


class _R:
    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, path: str, value: Any, why: str = "") -> ConfigError:
        return ConfigError(self.file, path, value, message=f"{path} invalid: {value!r}" + (f" ({why})" if why else ""))

    def obj(self, v: Any, path: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(path, v, "expected an object")
        return v

    def text(self, v: Any, path: str) -> str:
        if not isinstance(v, str) or not v.strip():
            raise self.fail(path, v, "expected a non-empty string")
        return v

    def strings(self, v: Any, path: str) -> tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise self.fail(path, v, "expected a list of strings")
        return tuple(v)

    def boolean(self, v: Any, path: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(path, v, "expected true or false")
        return v

    def positive(self, v: Any, path: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise self.fail(path, v, "expected an integer > 0")
        return v

    def choice(self, v: Any, path: str, valid: tuple[str, ...]) -> str:
        if v not in valid:
            raise ConfigError(self.file, path, v, valid=valid)
        return str(v)

    def version(self, root: dict[str, Any]) -> None:
        if root.get("version") != 1:
            raise self.fail("version", root.get("version"), "expected 1")


def contract_from_data(data: Any, *, file: str = "repair.yaml") -> RepairContract:
    r = _R(file)
    root = r.obj(data, "repair.yaml")
    r.version(root)
    raw = r.obj(root.get("labels", {}), "labels")
    d = RepairLabels()
    labels = RepairLabels(
        pause=r.text(raw.get("pause", d.pause), "labels.pause"),
        lock=r.text(raw.get("lock", d.lock), "labels.lock"),
        bug=r.text(raw.get("bug", d.bug), "labels.bug"),
        attempts_prefix=r.text(raw.get("attemptsPrefix", d.attempts_prefix), "labels.attemptsPrefix"),
        priority=r.strings(raw.get("priority", []), "labels.priority"),
        sensitive=r.strings(raw.get("sensitive", []), "labels.sensitive"),
    )
    return RepairContract(labels=labels, max_attempts=r.positive(root.get("maxAttempts", 3), "maxAttempts"),
                          sensitive_paths=r.strings(root.get("sensitivePaths", []), "sensitivePaths"))


def parse_repair_contract(text: str, *, file: str = "repair.yaml") -> RepairContract:
    from .gate_config import load_yaml  # YAML 1.2, alias bombs refused (like promotion.yaml)

    return contract_from_data(load_yaml(text, file=file), file=file)


def _target(r: _R, raw: Any, p: str) -> RepairTarget:
    t = r.obj(raw, p)
    kind = r.choice(t.get("type"), f"{p}.type", ("issue", "pull-request"))
    number = r.positive(t.get("number"), f"{p}.number")
    common = dict(type=kind, number=number, title=r.text(t.get("title"), f"{p}.title"),
                  updated_at=r.text(t.get("updatedAt"), f"{p}.updatedAt"),
                  labels=r.strings(t.get("labels", []), f"{p}.labels"),
                  changed_paths=r.strings(t.get("changedPaths", []), f"{p}.changedPaths"))
    linked = t.get("linkedPullRequest")
    if linked is not None:
        common["linked_pull_request"] = r.positive(linked, f"{p}.linkedPullRequest")
    if kind == "issue":
        return RepairTarget(**common, reproduction=r.choice(t.get("reproduction"), f"{p}.reproduction", REPRODUCTION))
    sha = t.get("headSha")
    if not isinstance(sha, str) or not SHA_RE.fullmatch(sha):
        raise r.fail(f"{p}.headSha", sha, "expected a 40-character lowercase sha")
    if "changedPaths" not in t:
        raise r.fail(f"{p}.changedPaths", None, "required for a pull request")
    c = r.obj(t.get("check"), f"{p}.check")
    check = CheckState(r.choice(c.get("status"), f"{p}.check.status", CHECK_STATUS),
                       r.choice(c.get("failureClass", "unknown"), f"{p}.check.failureClass", FAILURE_CLASS))
    return RepairTarget(**common, head_sha=sha, branch_owned=r.boolean(t.get("branchOwned"), f"{p}.branchOwned"),
                        review_actionable=r.boolean(t.get("reviewActionable"), f"{p}.reviewActionable"), check=check)


def observation_from_data(data: Any, *, file: str = "repair-evidence.json") -> RepairObservation:
    r = _R(file)
    root = r.obj(data, "evidence")
    r.version(root)
    pause = root.get("pauseIssues", [])
    if not isinstance(pause, list):
        raise r.fail("pauseIssues", pause, "expected a list of issue numbers")
    targets_raw = root.get("targets", [])
    if not isinstance(targets_raw, list):
        raise r.fail("targets", targets_raw, "expected a list")
    targets = tuple(_target(r, t, f"targets[{i}]") for i, t in enumerate(targets_raw))
    seen: set[str] = set()
    for i, t in enumerate(targets):
        if t.key in seen:
            raise r.fail(f"targets[{i}]", t.key, "duplicate target")
        seen.add(t.key)
    return RepairObservation(observed_at=r.text(root.get("observedAt"), "observedAt"),
                             repository=r.text(root.get("repository"), "repository"),
                             pause_issues=tuple(r.positive(n, f"pauseIssues[{i}]") for i, n in enumerate(pause)),
                             targets=targets)


def parse_repair_observation(text: str, *, file: str = "repair-evidence.json") -> RepairObservation:
    return observation_from_data(load_json(text, file), file=file)


def observation_to_data(o: RepairObservation) -> dict[str, Any]:
    """The ecosystem's JSON shape (what ``loop-gate repair-plan --evidence`` reads)."""
    out = []
    for t in o.targets:
        d: dict[str, Any] = {"type": t.type, "number": t.number, "title": t.title, "updatedAt": t.updated_at,
                             "labels": list(t.labels)}
        if t.type == "pull-request" or t.changed_paths:
            d["changedPaths"] = list(t.changed_paths)
        if t.linked_pull_request is not None:
            d["linkedPullRequest"] = t.linked_pull_request
        if t.type == "issue":
            d["reproduction"] = t.reproduction
        else:
            d.update(headSha=t.head_sha, branchOwned=t.branch_owned, reviewActionable=t.review_actionable,
                     check={"status": t.check.status if t.check else "absent",
                            "failureClass": t.check.failure_class if t.check else "unknown"})
        out.append(d)
    return {"version": 1, "observedAt": o.observed_at, "repository": o.repository,
            "pauseIssues": list(o.pause_issues), "targets": out}
