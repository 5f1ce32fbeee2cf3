"""The repair observation (R32) built from GitHub, and the lock label that leases a target.

What GitHub does not say directly is read from labels, as the issue-pr-repair starter
does: ``loop:reproduced`` → reproduction ``confirmed``, ``loop:not-reproduced`` →
``failed``, anything else ``unknown``; a failing check is ``deterministic`` with the label
``loop:deterministic``, ``flake``/``infrastructure`` with ``loop:flake``/``loop:infra``,
else ``unknown``. A PR links an issue when its title or body says ``fixes|closes|resolves
#N``. Reads are bounded like the rest of discovery (``MAX_PULLS_DETAILED`` PRs get their
files, reviews and checks).
"""

from __future__ import annotations

import re
from typing import Any

from ...formats.repair import CheckState, RepairContract, RepairObservation, RepairTarget
from .client import GithubClient, models
from .discovery import MAX_PULLS_DETAILED, _check_state, _iso, _labels, _review_state

_LINK = re.compile(r"(?i)\b(?:fix(?:e[sd])?|close[sd]?|resolve[sd]?)\s*:?\s+#(\d{1,9})\b")
REPRODUCED = {"loop:reproduced": "confirmed", "loop:not-reproduced": "failed"}
FAILURE_CLASS = {"loop:deterministic": "deterministic", "loop:flake": "flake", "loop:infra": "infrastructure"}


def _fold(labels: tuple[str, ...]) -> set[str]:
    return {lb.strip().casefold() for lb in labels}


def observe_repair(client: GithubClient, contract: RepairContract, observed_at: str) -> RepairObservation:
    m = models()
    repo = client.settings.repository
    base = f"/repos/{repo}"
    pause = client.pages(f"{base}/issues", list[m.Issue], params={"state": "open", "labels": contract.labels.pause},
                         permission="issues: read", max_pages=1)
    issues = client.pages(f"{base}/issues", list[m.Issue], params={"state": "open", "sort": "updated"},
                          permission="issues: read")
    pulls = client.pages(f"{base}/pulls", list[m.PullRequestSimple], params={"state": "open"},
                         permission="pull_requests: read")
    linked: dict[int, int] = {}
    for p in pulls:
        for n in _LINK.findall(f"{p.title}\n{p.body or ''}"):
            linked.setdefault(int(n), p.number)
    targets: list[RepairTarget] = []
    for i in issues:
        if getattr(i, "pull_request", None):  # PRs are issues too (UNSET when absent)
            continue
        labels = _labels(i)
        have = _fold(labels)
        repro = next((v for k, v in REPRODUCED.items() if k in have), "unknown")
        targets.append(RepairTarget("issue", i.number, i.title, _iso(i.updated_at), labels,
                                    linked_pull_request=linked.get(i.number), reproduction=repro))
    for p in pulls[:MAX_PULLS_DETAILED]:
        labels = _labels(p)
        have = _fold(labels)
        files = client.pages(f"{base}/pulls/{p.number}/files", list[m.DiffEntry], permission="pull_requests: read",
                             max_pages=3)
        reviews = client.pages(f"{base}/pulls/{p.number}/reviews", list[m.PullRequestReview],
                               permission="pull_requests: read", max_pages=1)
        status = _check_state(client, base, p.head.sha, m)
        klass = next((v for k, v in FAILURE_CLASS.items() if k in have), "unknown")
        head_repo = getattr(getattr(p.head, "repo", None), "full_name", None)
        targets.append(RepairTarget(
            "pull-request", p.number, p.title, _iso(p.updated_at), labels,
            changed_paths=tuple(f.filename for f in files), head_sha=p.head.sha.lower(),
            branch_owned=head_repo == repo, review_actionable=_review_state(reviews) == "changes_requested",
            check=CheckState(status, klass)))
    return RepairObservation(observed_at=observed_at, repository=repo,
                             pause_issues=tuple(sorted(i.number for i in pause)), targets=tuple(targets))


def add_label(client: GithubClient, number: int, label: str) -> None:
    client.write("POST", f"/repos/{client.settings.repository}/issues/{number}/labels", {"labels": [label]},
                 permission="issues: write")


def remove_label(client: GithubClient, number: int, label: str) -> None:
    from urllib.parse import quote

    client.write("DELETE", f"/repos/{client.settings.repository}/issues/{number}/labels/{quote(label, safe='')}",
                 None, permission="issues: write")


def describe(plan: Any) -> str:
    """The plan as observation text (it feeds triage and the fingerprint)."""
    from ...core.sanitize import clean

    lines = [f"## Repair plan (R32): {plan.state} — {clean(plan.reason, 200)}"]
    if plan.target is not None and plan.state == "selected":
        lines.append(f"- target: {plan.target.type} #{plan.target.number} {clean(plan.target.title, 160)} | "
                     f"action={plan.action} mode={plan.mode} score={plan.score}")
    for v in plan.verdicts:
        if v.status != "candidate":
            lines.append(f"- {v.key}: {v.status}" + (f" ({clean('; '.join(v.reasons), 200)})" if v.reasons else ""))
    return "\n".join(lines)
