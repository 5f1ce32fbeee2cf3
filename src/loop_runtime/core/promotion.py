"""Evidence-aware PR promotion: upstream ``loop-gate promote`` (commit 4faca714), reproduced (R11, R32).

The static gate answers "may this kind of change auto-merge?"; promotion answers "was
this exact head SHA reviewed, deployed, seeded, tested and accepted?". Every unmet gate
becomes an ``Issue(code, stage, kind, message)``; stages are checked in the order

    intake → policy → review → checks → deployment → test-data → e2e → acceptance

and the decision's ``stage`` is the first issue's (``merge-ready`` when there are none).
Evidence for an older SHA never counts, so a new commit invalidates approvals,
deployments, data, E2E runs and acceptance at once. The path policy is checked with
action ``auto-merge`` on the PR's changed paths, and ``pathSuites`` globs use the same
minimatch semantics as the gate. Codes, kinds and messages are upstream's, verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..formats.gate_config import GatePolicy
from ..formats.promotion import PromotionContract, PromotionEvidence, timestamp_ms
from .gate import check, glob_match

STAGES = ("intake", "policy", "review", "checks", "deployment", "test-data", "e2e", "acceptance", "merge-ready")


@dataclass(frozen=True)
class Issue:
    code: str
    stage: str
    kind: str  # blocked | waiting | human-required
    message: str

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "stage": self.stage, "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class PromotionDecision:
    allowed: bool
    stage: str
    issues: tuple[Issue, ...]
    head_sha: str = ""
    pull_request: int = 0
    summary: str = ""

    def as_json(self) -> dict[str, Any]:
        """Exactly what ``loop-gate promote --json`` prints (same keys, same order)."""
        return {"allowed": self.allowed, "stage": self.stage, "headSha": self.head_sha,
                "pullRequest": self.pull_request, "issues": [i.as_json() for i in self.issues],
                "summary": self.summary}

    @property
    def exit_code(self) -> int:
        """0 merge-ready, 2 hold (a human or more evidence is needed)."""
        return 0 if self.allowed else 2


def _stale(completed_at: str, observed_at: str, max_age_hours: float | None) -> bool:
    if max_age_hours is None:
        return False
    observed, completed = timestamp_ms(observed_at), timestamp_ms(completed_at)
    if observed is None or completed is None:  # unreachable for parsed evidence; NaN compares false in JS
        return False
    return observed - completed > max_age_hours * 60 * 60 * 1000


def _kind_for(status: str, pending: str = "waiting") -> str:
    return pending if status == "pending" else "blocked"


def _intake(c: PromotionContract, e: PromotionEvidence, policy: GatePolicy | None) -> list[Issue]:
    pr, out = e.pull_request, []
    if pr.draft:
        out.append(Issue("draft", "intake", "waiting", "Pull request is still a draft."))
    if not pr.changed_paths:
        out.append(Issue("changed-paths-missing", "intake", "blocked",
                         "No changed paths were supplied for policy evaluation."))
    if pr.base_branch not in c.base_branches:
        out.append(Issue("base-branch", "intake", "blocked", f"Base branch {pr.base_branch} is not allowed."))
    if c.same_repository_only and pr.head_repository != pr.base_repository:
        out.append(Issue("fork", "intake", "human-required", "Auto-merge is disabled for fork pull requests."))
    if pr.attempts >= c.max_attempts:
        out.append(Issue("attempt-limit", "intake", "human-required",
                         f"Attempt limit reached ({pr.attempts}/{c.max_attempts})."))
    missing = [label for label in c.labels if label not in pr.labels]
    if missing:
        out.append(Issue("authorization-label", "intake", "human-required",
                         f"Missing authorization label(s): {', '.join(missing)}."))
    if policy is not None:
        decision = check(policy, pr.changed_paths, "auto-merge")
        if not decision.allowed:
            out.append(Issue(f"path-{decision.trigger}", "policy", "human-required", decision.reason))
    return out


def _review(c: PromotionContract, e: PromotionEvidence) -> list[Issue]:
    pr, out = e.pull_request, []
    if c.require_clean_merge and pr.merge_state.lower() != "clean":
        out.append(Issue("merge-state", "review", "waiting", f"Merge state is {pr.merge_state}, not CLEAN."))
    if pr.approvals < c.min_approvals:
        out.append(Issue("approvals", "review", "human-required", f"Approvals {pr.approvals}/{c.min_approvals}."))
    elif c.min_approvals > 0 and pr.approval_sha != pr.head_sha:
        out.append(Issue("approval-sha", "review", "human-required",
                         "Counted approvals are not for the current PR HEAD SHA."))
    if pr.changes_requested:
        out.append(Issue("changes-requested", "review", "human-required", "A review still requests changes."))
    if c.require_resolved_threads and pr.unresolved_threads > 0:
        out.append(Issue("review-threads", "review", "human-required",
                         f"{pr.unresolved_threads} review thread(s) remain unresolved."))
    return out


def _checks(c: PromotionContract, e: PromotionEvidence) -> list[Issue]:
    sha, out = e.pull_request.head_sha, []
    for required in c.required_checks:
        matching = [x for x in e.checks if x.name == required and x.sha == sha]
        if len(matching) > 1:
            out.append(Issue("check-ambiguous", "checks", "blocked",
                             f"Required check {required} has duplicate evidence."))
        elif not matching:
            out.append(Issue("check-missing", "checks", "waiting",
                             f"Required check {required} has no evidence for {sha}."))
        elif matching[0].status == "pending":
            out.append(Issue("check-pending", "checks", "waiting", f"Required check {required} is pending."))
        elif matching[0].status == "failure":
            out.append(Issue("check-failed", "checks", "blocked", f"Required check {required} failed."))
    return out


def _deployment(c: PromotionContract, e: PromotionEvidence) -> list[Issue]:
    if not c.deployment_required:
        return []
    d = e.deployment
    if d is None:
        return [Issue("deployment-missing", "deployment", "waiting", "No deployment evidence was supplied.")]
    out = []
    if d.environment != c.deployment_environment:
        out.append(Issue("deployment-environment", "deployment", "blocked",
                         f"Expected environment {c.deployment_environment}, got {d.environment}."))
    if d.sha != e.pull_request.head_sha:
        out.append(Issue("deployment-sha", "deployment", "waiting",
                         "Deployment does not match the current PR HEAD SHA."))
    if d.status != "success":
        out.append(Issue(f"deployment-{d.status}", "deployment", _kind_for(d.status),
                         f"Deployment status is {d.status}."))
    if _stale(d.completed_at, e.observed_at, c.deployment_max_age_hours):
        out.append(Issue("deployment-stale", "deployment", "waiting", "Deployment evidence is stale."))
    return out


def _test_data(c: PromotionContract, e: PromotionEvidence) -> list[Issue]:
    if not c.test_data_required:
        return []
    data = e.test_data
    if data is None:
        return [Issue("test-data-missing", "test-data", "waiting", "No test-data evidence was supplied.")]
    out = []
    if data.kind not in c.allowed_kinds:
        out.append(Issue("test-data-kind", "test-data", "human-required",
                         f"Dataset kind {data.kind} is not permitted."))
    if c.require_version and not data.version:
        out.append(Issue("test-data-version", "test-data", "blocked", "Dataset version is required."))
    if data.sha != e.pull_request.head_sha:
        out.append(Issue("test-data-sha", "test-data", "waiting", "Test data was not seeded for the current PR SHA."))
    if data.status != "success":
        out.append(Issue(f"test-data-{data.status}", "test-data", _kind_for(data.status),
                         f"Test-data reset/seed status is {data.status}."))
    return out


def required_suites(c: PromotionContract, changed_paths: tuple[str, ...]) -> list[str]:
    """Required E2E suites plus those a changed path pulls in through ``pathSuites`` (no duplicates)."""
    suites = dict.fromkeys(c.required_suites)
    for rule in c.path_suites or ():
        if any(glob_match(path, glob) for path in changed_paths for glob in rule.paths):
            suites.update(dict.fromkeys(rule.suites))
    return list(suites)


def _e2e(c: PromotionContract, e: PromotionEvidence) -> list[Issue]:
    sha, out = e.pull_request.head_sha, []
    dataset = e.test_data.version if e.test_data is not None else None
    for name in required_suites(c, e.pull_request.changed_paths):
        matching = [s for s in e.e2e if s.suite == name and s.sha == sha]
        if len(matching) > 1:
            out.append(Issue("e2e-ambiguous", "e2e", "blocked", f"E2E suite {name} has duplicate evidence."))
            continue
        if not matching:
            out.append(Issue("e2e-missing", "e2e", "waiting", f"E2E suite {name} has no evidence for {sha}."))
            continue
        suite = matching[0]
        if suite.status != "success":
            out.append(Issue(f"e2e-{suite.status}", "e2e", _kind_for(suite.status),
                             f"E2E suite {name} is {suite.status}."))
        if c.require_dataset_match and dataset and suite.dataset_version != dataset:
            out.append(Issue("e2e-dataset", "e2e", "blocked", f"E2E suite {name} used a different dataset version."))
        if _stale(suite.completed_at, e.observed_at, c.e2e_max_age_hours):
            out.append(Issue("e2e-stale", "e2e", "waiting", f"E2E suite {name} evidence is stale."))
    return out


def acceptance_required(c: PromotionContract, risk_level: str) -> bool:
    if c.acceptance_mode == "always":
        return True
    if c.acceptance_mode == "never":
        return False
    return risk_level in (c.risk_levels or ())


def _acceptance(c: PromotionContract, e: PromotionEvidence) -> list[Issue]:
    if not acceptance_required(c, e.pull_request.risk_level):
        return []
    a = e.manual_acceptance
    if a is None:
        return [Issue("acceptance-missing", "acceptance", "human-required", "Manual acceptance is required.")]
    out = []
    if a.sha != e.pull_request.head_sha:
        out.append(Issue("acceptance-sha", "acceptance", "human-required", "Acceptance is for an older PR SHA."))
    if a.status != "success":
        out.append(Issue(f"acceptance-{a.status}", "acceptance", _kind_for(a.status, "human-required"),
                         f"Manual acceptance status is {a.status}."))
    if not a.actor:
        out.append(Issue("acceptance-actor", "acceptance", "human-required", "Acceptance actor is not recorded."))
    if _stale(a.completed_at, e.observed_at, c.acceptance_max_age_hours):
        out.append(Issue("acceptance-stale", "acceptance", "human-required", "Manual acceptance evidence is stale."))
    return out


def promote(contract: PromotionContract, evidence: PromotionEvidence,
            gate_policy: GatePolicy | None) -> PromotionDecision:
    """May this PR head merge? ``gate_policy=None`` skips the static path check."""
    issues = tuple(_intake(contract, evidence, gate_policy) + _review(contract, evidence) + _checks(contract, evidence)
                   + _deployment(contract, evidence) + _test_data(contract, evidence) + _e2e(contract, evidence)
                   + _acceptance(contract, evidence))
    pr = evidence.pull_request
    if issues:
        summary = f"PR #{pr.number} at {pr.head_sha} is not merge-ready: {len(issues)} gate issue(s)."
    else:
        summary = f"PR #{pr.number} at {pr.head_sha} has fresh evidence for every promotion gate."
    return PromotionDecision(allowed=not issues, stage=issues[0].stage if issues else "merge-ready", issues=issues,
                             head_sha=pr.head_sha, pull_request=pr.number, summary=summary)


def format_promotion(d: PromotionDecision) -> str:
    """loop-gate promote's human output: the verdict line, then one line per issue."""
    lines = [f"{'MERGE-READY' if d.allowed else 'HOLD'} [{d.stage}] — {d.summary}"]
    lines += [f"  - {i.kind} {i.code}: {i.message}" for i in d.issues]
    return "\n".join(lines)
