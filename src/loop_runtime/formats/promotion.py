"""``promotion.yaml`` contracts and promotion evidence JSON for ``loop-gate promote`` (R11, R32).

A contract says what must be true of a pull request before a loop may merge it
(labels, approvals, checks, a deployment, seeded test data, E2E suites, manual
acceptance); the evidence JSON records what was observed for one PR head SHA. Both
are validated the way upstream loop-gate's ``promotion.ts`` (commit 4faca714) does —
same checks in the same order, so the first error reported is the same one — and a
failure is a one-line ``ConfigError`` naming the dotted field, e.g.
``evidence.json: pullRequest.headSha must be a non-empty string.``

Timestamps follow ``Date.parse`` on ISO-8601 (date, date-time, fraction, ``Z`` or
offset). Two deliberate differences: a date-time without an offset is read as UTC
(JS would use the machine's local zone) and V8's non-ISO fallbacks (``Aug 6 2026``)
are refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ConfigError
from .gate_config import load_yaml
from .json_text import load_strict_json

T = TypeVar("T")
DATASET_KINDS = ("synthetic", "sanitized", "production")
ACCEPTANCE_MODES = ("never", "always", "risk-based")
STATUSES = ("success", "failure", "pending")
_JS_WS = ("\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
          "\u2028\u2029\u202f\u205f\u3000\ufeff")
_ISO_RE = re.compile(r"([+-]\d{6}|\d{4})(?:-(\d{2})(?:-(\d{2}))?)?"
                     r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?(Z|[+-]\d{2}:\d{2})?", re.ASCII)


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class PathSuites:
    paths: tuple[str, ...]
    suites: tuple[str, ...]


@dataclass(frozen=True)
class PromotionContract:
    """``promotion.yaml``; ``*_max_age_hours`` None = no freshness limit."""

    labels: tuple[str, ...]
    min_approvals: int
    base_branches: tuple[str, ...]
    require_clean_merge: bool
    require_resolved_threads: bool
    same_repository_only: bool
    max_attempts: int
    required_checks: tuple[str, ...]
    deployment_required: bool
    deployment_environment: str
    deployment_max_age_hours: float | None
    test_data_required: bool
    allowed_kinds: tuple[str, ...]
    require_version: bool
    required_suites: tuple[str, ...]
    path_suites: tuple[PathSuites, ...] | None
    require_dataset_match: bool
    e2e_max_age_hours: float | None
    acceptance_mode: str
    risk_levels: tuple[str, ...] | None
    acceptance_max_age_hours: float | None


@dataclass(frozen=True)
class PullRequestEvidence:
    number: int
    head_sha: str
    base_branch: str
    base_repository: str
    head_repository: str
    draft: bool
    merge_state: str
    labels: tuple[str, ...]
    approvals: int
    approval_sha: str | None
    changes_requested: bool
    unresolved_threads: int
    attempts: int
    risk_level: str
    changed_paths: tuple[str, ...]


@dataclass(frozen=True)
class CheckEvidence:
    name: str
    status: str
    sha: str
    completed_at: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class DeploymentEvidence:
    environment: str
    status: str
    sha: str
    completed_at: str
    url: str | None = None


@dataclass(frozen=True)
class TestDataEvidence:
    kind: str
    version: str | None
    status: str
    sha: str
    completed_at: str


@dataclass(frozen=True)
class E2EEvidence:
    suite: str
    status: str
    sha: str
    dataset_version: str | None
    completed_at: str
    url: str | None = None


@dataclass(frozen=True)
class AcceptanceEvidence:
    status: str
    sha: str
    completed_at: str
    actor: str | None = None


@dataclass(frozen=True)
class PromotionEvidence:
    observed_at: str
    pull_request: PullRequestEvidence
    checks: tuple[CheckEvidence, ...]
    e2e: tuple[E2EEvidence, ...]
    deployment: DeploymentEvidence | None = None
    test_data: TestDataEvidence | None = None
    manual_acceptance: AcceptanceEvidence | None = None


# ------------------------------------------------------------------ timestamps


def timestamp_ms(text: str) -> int | None:
    """Milliseconds since the epoch for an ISO-8601 string, or None when ``Date.parse`` would give NaN."""
    m = _ISO_RE.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    if year == "-000000":
        return None
    y, mo, d, h, mi, sec = (int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                            int(second or 0))
    # V8 accepts any day 1-31 and rolls over (2024-02-30 is March 1), so do we.
    if not 1 <= mo <= 12 or not 1 <= d <= 31 or mi > 59 or sec > 59 or h > 24 or \
            (h == 24 and (mi or sec or int(fraction or 0))):
        return None
    values = [y, mo, d, h, mi, sec]
    days = _days_from_civil(values[0], values[1], values[2])
    millis = int((fraction or "0")[:3].ljust(3, "0"))  # V8 keeps milliseconds, drops finer digits
    ms = ((days * 24 + values[3]) * 60 + values[4]) * 60_000 + values[5] * 1000 + millis
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        ms -= sign * (int(zone[1:3]) * 60 + int(zone[4:6])) * 60_000
    return ms if abs(ms) <= 8.64e15 else None


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (works for any year)."""
    y -= m <= 2
    era = y // 400  # floor division, so negative years need no adjustment
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


# ------------------------------------------------------------------ field readers


class _Reader:
    """Validators with upstream's wording; each raises ConfigError(file, dotted field)."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, path: str, value: Any, rest: str) -> ConfigError:
        message = f"{path} {rest}" if path else rest
        return ConfigError(self.file, path or "(root)", value, message=message)

    def record(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, value, "must be an object.")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or value.strip(_JS_WS) == "":
            raise self.fail(path, value, "must be a non-empty string.")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, value, "must be a boolean.")
        return value

    def number(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise self.fail(path, value, "must be a non-negative number.")
        return value

    def integer(self, value: Any, path: str) -> int:
        number = self.number(value, path)
        if number != int(number):
            raise self.fail(path, value, "must be an integer.")
        return int(number)

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(path, value, "must be an array of strings.")
        return tuple(value)

    def timestamp(self, value: Any, path: str) -> str:
        text = self.string(value, path)
        if timestamp_ms(text) is None:
            raise self.fail(path, value, "must be an ISO-8601 timestamp.")
        return text

    def status(self, value: Any, path: str) -> str:
        if value not in STATUSES:
            raise self.fail(path, value, "must be one of: success, failure, pending.")
        return str(value)

    def max_age(self, obj: dict[str, Any], key: str, path: str) -> float | None:
        if key not in obj:
            return None
        number = self.number(obj[key], f"{path}.{key}")
        if number == 0:
            raise self.fail(f"{path}.{key}", number, "must be greater than zero.")
        return number

    def optional(self, obj: dict[str, Any], key: str, path: str, read: Callable[[Any, str], T]) -> T | None:
        """JS ``x === undefined ? undefined : read(x)``: absent is fine, null is not."""
        return None if key not in obj else read(obj[key], f"{path}.{key}" if path else key)


def _version_1(r: _Reader, root: dict[str, Any]) -> None:
    version = root.get("version")
    if isinstance(version, bool) or not isinstance(version, (int, float)) or version != 1:
        raise r.fail("version", version, "must be 1.")


# ------------------------------------------------------------------ contract


def _path_suites(r: _Reader, e2e: dict[str, Any]) -> tuple[PathSuites, ...] | None:
    if "pathSuites" not in e2e:
        return None
    if not isinstance(e2e["pathSuites"], list):
        raise r.fail("e2e.pathSuites", e2e["pathSuites"], "must be an array.")
    out = []
    for i, item in enumerate(e2e["pathSuites"]):
        rule = r.record(item, f"e2e.pathSuites[{i}]")
        out.append(PathSuites(r.strings(rule.get("paths"), f"e2e.pathSuites[{i}].paths"),
                              r.strings(rule.get("suites"), f"e2e.pathSuites[{i}].suites")))
    return tuple(out)


def contract_from_data(value: Any, *, file: str = "promotion.yaml") -> PromotionContract:
    """Validate an already-parsed contract (upstream ``parsePromotionContract``)."""
    r = _Reader(file)
    root = r.record(value, "")
    _version_1(r, root)
    sections = {name: r.record(root.get(name), name) for name in
                ("authorization", "pullRequest", "checks", "deployment", "testData", "e2e", "manualAcceptance")}
    auth, pr, dep, data, e2e, acc = (sections[k] for k in ("authorization", "pullRequest", "deployment", "testData",
                                                            "e2e", "manualAcceptance"))
    kinds = r.strings(data.get("allowedKinds"), "testData.allowedKinds")
    if not all(k in DATASET_KINDS for k in kinds):
        raise r.fail("testData.allowedKinds", list(kinds), "contains an unsupported dataset kind.")
    mode = r.string(acc.get("mode"), "manualAcceptance.mode")
    if mode not in ACCEPTANCE_MODES:
        raise r.fail("manualAcceptance.mode", mode, "must be one of: never, always, risk-based.")
    return PromotionContract(
        labels=r.strings(auth.get("labels"), "authorization.labels"),
        min_approvals=r.integer(auth.get("minApprovals"), "authorization.minApprovals"),
        base_branches=r.strings(pr.get("baseBranches"), "pullRequest.baseBranches"),
        require_clean_merge=r.boolean(pr.get("requireCleanMerge"), "pullRequest.requireCleanMerge"),
        require_resolved_threads=r.boolean(pr.get("requireResolvedThreads"), "pullRequest.requireResolvedThreads"),
        same_repository_only=r.boolean(pr.get("sameRepositoryOnly"), "pullRequest.sameRepositoryOnly"),
        max_attempts=r.integer(pr.get("maxAttempts"), "pullRequest.maxAttempts"),
        required_checks=r.strings(sections["checks"].get("required"), "checks.required"),
        deployment_required=r.boolean(dep.get("required"), "deployment.required"),
        deployment_environment=r.string(dep.get("environment"), "deployment.environment"),
        deployment_max_age_hours=r.max_age(dep, "maxAgeHours", "deployment"),
        test_data_required=r.boolean(data.get("required"), "testData.required"),
        allowed_kinds=kinds,
        require_version=r.boolean(data.get("requireVersion"), "testData.requireVersion"),
        required_suites=r.strings(e2e.get("requiredSuites"), "e2e.requiredSuites"),
        path_suites=_path_suites(r, e2e),
        require_dataset_match=r.boolean(e2e.get("requireDatasetMatch"), "e2e.requireDatasetMatch"),
        e2e_max_age_hours=r.max_age(e2e, "maxAgeHours", "e2e"),
        acceptance_mode=mode,
        risk_levels=r.optional(acc, "riskLevels", "manualAcceptance", r.strings),
        acceptance_max_age_hours=r.max_age(acc, "maxAgeHours", "manualAcceptance"),
    )


def parse_promotion_contract(text: str, *, file: str = "promotion.yaml") -> PromotionContract:
    """Read ``promotion.yaml`` (YAML 1.2, like loop-gate) and validate it."""
    return contract_from_data(load_yaml(text, file=file), file=file)


# ------------------------------------------------------------------ evidence


def _pull_request(r: _Reader, pr: dict[str, Any]) -> PullRequestEvidence:
    p = "pullRequest"
    return PullRequestEvidence(
        number=r.integer(pr.get("number"), f"{p}.number"),
        head_sha=r.string(pr.get("headSha"), f"{p}.headSha"),
        base_branch=r.string(pr.get("baseBranch"), f"{p}.baseBranch"),
        base_repository=r.string(pr.get("baseRepository"), f"{p}.baseRepository"),
        head_repository=r.string(pr.get("headRepository"), f"{p}.headRepository"),
        draft=r.boolean(pr.get("draft"), f"{p}.draft"),
        merge_state=r.string(pr.get("mergeState"), f"{p}.mergeState"),
        labels=r.strings(pr.get("labels"), f"{p}.labels"),
        approvals=r.integer(pr.get("approvals"), f"{p}.approvals"),
        approval_sha=r.optional(pr, "approvalSha", p, r.string),
        changes_requested=r.boolean(pr.get("changesRequested"), f"{p}.changesRequested"),
        unresolved_threads=r.integer(pr.get("unresolvedThreads"), f"{p}.unresolvedThreads"),
        attempts=r.integer(pr.get("attempts"), f"{p}.attempts"),
        risk_level=r.string(pr.get("riskLevel"), f"{p}.riskLevel"),
        changed_paths=r.strings(pr.get("changedPaths"), f"{p}.changedPaths"),
    )


def _check(r: _Reader, item: Any, p: str) -> CheckEvidence:
    c = r.record(item, p)
    return CheckEvidence(r.string(c.get("name"), f"{p}.name"), r.status(c.get("status"), f"{p}.status"),
                         r.string(c.get("sha"), f"{p}.sha"), r.optional(c, "completedAt", p, r.timestamp),
                         r.optional(c, "url", p, r.string))


def _suite(r: _Reader, item: Any, p: str) -> E2EEvidence:
    s = r.record(item, p)
    return E2EEvidence(r.string(s.get("suite"), f"{p}.suite"), r.status(s.get("status"), f"{p}.status"),
                       r.string(s.get("sha"), f"{p}.sha"), r.optional(s, "datasetVersion", p, r.string),
                       r.timestamp(s.get("completedAt"), f"{p}.completedAt"), r.optional(s, "url", p, r.string))


def _deployment(r: _Reader, value: Any) -> DeploymentEvidence:
    d, p = r.record(value, "deployment"), "deployment"
    return DeploymentEvidence(r.string(d.get("environment"), f"{p}.environment"),
                              r.status(d.get("status"), f"{p}.status"), r.string(d.get("sha"), f"{p}.sha"),
                              r.timestamp(d.get("completedAt"), f"{p}.completedAt"), r.optional(d, "url", p, r.string))


def _test_data(r: _Reader, value: Any) -> TestDataEvidence:
    t, p = r.record(value, "testData"), "testData"
    kind = r.string(t.get("kind"), f"{p}.kind")
    if kind not in DATASET_KINDS:
        raise r.fail(f"{p}.kind", kind, "must be one of: synthetic, sanitized, production.")
    return TestDataEvidence(kind, r.optional(t, "version", p, r.string), r.status(t.get("status"), f"{p}.status"),
                            r.string(t.get("sha"), f"{p}.sha"), r.timestamp(t.get("completedAt"), f"{p}.completedAt"))


def _acceptance(r: _Reader, value: Any) -> AcceptanceEvidence:
    a, p = r.record(value, "manualAcceptance"), "manualAcceptance"
    return AcceptanceEvidence(r.status(a.get("status"), f"{p}.status"), r.string(a.get("sha"), f"{p}.sha"),
                              r.timestamp(a.get("completedAt"), f"{p}.completedAt"),
                              r.optional(a, "actor", p, r.string))


def evidence_from_data(value: Any, *, file: str = "evidence.json") -> PromotionEvidence:
    """Validate already-parsed evidence (upstream ``parsePromotionEvidence``)."""
    r = _Reader(file)
    root = r.record(value, "")
    _version_1(r, root)
    pr = r.record(root.get("pullRequest"), "pullRequest")
    for key in ("checks", "e2e"):
        if not isinstance(root.get(key), list):
            raise r.fail(key, root.get(key), "must be an array.")
    observed = r.timestamp(root.get("observedAt"), "observedAt")
    pull_request = _pull_request(r, pr)
    checks = tuple(_check(r, item, f"checks[{i}]") for i, item in enumerate(root["checks"]))
    e2e = tuple(_suite(r, item, f"e2e[{i}]") for i, item in enumerate(root["e2e"]))
    return PromotionEvidence(
        observed_at=observed, pull_request=pull_request, checks=checks, e2e=e2e,
        deployment=_deployment(r, root["deployment"]) if "deployment" in root else None,
        test_data=_test_data(r, root["testData"]) if "testData" in root else None,
        manual_acceptance=_acceptance(r, root["manualAcceptance"]) if "manualAcceptance" in root else None,
    )


def parse_promotion_evidence(text: str, *, file: str = "evidence.json") -> PromotionEvidence:
    """Read and validate promotion evidence JSON."""
    return evidence_from_data(load_strict_json(text, file), file=file)


# Short names the runner uses.
parse_contract = parse_promotion_contract
parse_evidence = parse_promotion_evidence
