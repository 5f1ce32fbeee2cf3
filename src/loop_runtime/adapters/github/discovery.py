"""Discovery on GitHub, per pattern: bounded, paginated, conditional reads → ``core.github_discovery`` values.

What each pattern reads is ``core.github_discovery.SOURCES``. Every read is a GET with
the stored ETag, so an unchanged repository answers 304 throughout and the tick's
fingerprint (and, for an early-exit pattern, its 0-token no-op) is the last tick's.
Optional sources the token may not read (Dependabot alerts) become a note, not an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core.github_discovery import Discovery, Finding, sources_for
from ...errors import GithubError
from .client import GithubClient, GithubUnreachable

MAX_PULLS_DETAILED = 10  # review and check state are one request each per PR: bounded


def _iso(value: Any) -> str:
    if not value:  # None, or githubkit's UNSET for a field the response left out
        return ""
    try:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    except AttributeError:
        return str(value)


def _labels(obj: Any) -> tuple[str, ...]:
    out = []
    for lb in getattr(obj, "labels", None) or ():
        name = lb if isinstance(lb, str) else getattr(lb, "name", None)
        if isinstance(name, str) and name:
            out.append(name)
    return tuple(out)


def _models() -> Any:
    from .client import models

    return models()


def discover(client: GithubClient, pattern_id: str, *, pause_label: str, since: str | None = None) -> Discovery:
    """Everything ``pattern_id`` looks at, plus open issues/PRs carrying the pause label."""
    m = _models()
    repo = client.settings.repository
    base = f"/repos/{repo}"
    info, _ = client.get(base, m.FullRepository, permission="metadata: read")
    branch = info.default_branch
    findings: list[Finding] = []
    notes: list[str] = []
    paused = client.pages(f"{base}/issues", list[m.Issue], params={"state": "open", "labels": pause_label},
                          permission="issues: read", max_pages=1)
    findings += [Finding("pause", i.number, i.title, i.html_url, _labels(i)) for i in paused]
    for source in sources_for(pattern_id):
        if source == "failing-runs":
            findings += _failing_runs(client, base, branch, m)
        elif source == "failing-checks":
            findings += _failing_checks(client, base, branch, m)
        elif source == "issues":
            issues = client.pages(f"{base}/issues", list[m.Issue], params={"state": "open", "sort": "updated"},
                                  permission="issues: read")
            findings += [Finding("issue", i.number, i.title, i.html_url, _labels(i), updated_at=_iso(i.updated_at))
                         for i in issues if not getattr(i, "pull_request", None)]  # PRs are issues too
        elif source == "pulls":
            findings += _pulls(client, base, m)
        elif source == "merged":
            closed = client.pages(f"{base}/pulls", list[m.PullRequestSimple],
                                  params={"state": "closed", "sort": "updated", "direction": "desc"},
                                  permission="pull_requests: read", max_pages=1)
            findings += [Finding("merged", p.number, p.title, p.html_url, _labels(p), ref=p.base.ref,
                                 updated_at=_iso(p.merged_at)) for p in closed
                         if p.merged_at and (since is None or _iso(p.merged_at) > since)]
        elif source == "alerts":
            try:
                alerts = client.pages(f"{base}/dependabot/alerts", list[m.DependabotAlert], params={"state": "open"},
                                      permission="dependabot_alerts: read", max_pages=2)
            except GithubUnreachable:
                raise
            except GithubError as e:
                notes.append(f"Dependabot alerts not readable with this token: {str(e)[:200]}")
                alerts = []
            findings += [Finding("alert", a.number, a.security_advisory.summary, a.html_url,
                                 state=str(a.security_advisory.severity),
                                 ref=str(getattr(a.dependency.package, "name", "") or ""),
                                 updated_at=_iso(a.updated_at)) for a in alerts]
    return Discovery(repository=repo, default_branch=branch, findings=tuple(findings), notes=tuple(notes),
                     requests=client.stats.requests, not_modified=client.stats.not_modified)


def _failing_runs(client: GithubClient, base: str, branch: str, m: Any) -> list[Finding]:
    """The latest completed run of each workflow on the default branch, when it failed."""
    runs = client.pages(f"{base}/actions/runs", m.ReposOwnerRepoActionsRunsGetResponse200,
                        params={"branch": branch, "exclude_pull_requests": "true"}, permission="actions: read",
                        items=lambda page: page.workflow_runs, max_pages=1)
    latest: dict[int, Any] = {}
    for r in runs:
        if r.status != "completed":
            continue
        seen = latest.get(r.workflow_id)
        if seen is None or (r.run_number or 0) > (seen.run_number or 0):
            latest[r.workflow_id] = r
    return [Finding("failing-run", r.id, r.display_title or r.name or "workflow run", r.html_url,
                    state=f"{r.name}: {r.conclusion}", ref=(r.head_sha or "")[:12], updated_at=_iso(r.updated_at))
            for r in latest.values() if r.conclusion in ("failure", "timed_out", "startup_failure")]


def _failing_checks(client: GithubClient, base: str, branch: str, m: Any) -> list[Finding]:
    from urllib.parse import quote

    # the branch name came from the API: one path segment, whatever it holds
    runs = client.pages(f"{base}/commits/{quote(branch, safe='')}/check-runs",
                        m.ReposOwnerRepoCommitsRefCheckRunsGetResponse200,
                        params={"filter": "latest"}, permission="checks: read", items=lambda page: page.check_runs,
                        max_pages=2)
    return [Finding("failing-check", c.id, c.name, c.html_url or "", state=str(c.conclusion),
                    ref=(c.head_sha or "")[:12]) for c in runs if c.conclusion in ("failure", "timed_out")]


def _check_state(client: GithubClient, base: str, sha: str, m: Any) -> str:
    from urllib.parse import quote

    runs = client.pages(f"{base}/commits/{quote(sha, safe='')}/check-runs",
                        m.ReposOwnerRepoCommitsRefCheckRunsGetResponse200,
                        permission="checks: read", items=lambda page: page.check_runs, max_pages=1)
    if any(c.conclusion in ("failure", "timed_out") for c in runs):
        return "failure"
    if any(c.status != "completed" for c in runs):
        return "pending"
    return "success" if runs else "absent"


def _review_state(reviews: Sequence[Any]) -> str:
    last: dict[str, str] = {}
    for r in reviews:
        who = getattr(getattr(r, "user", None), "login", None) or "?"
        if r.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            last[who] = r.state
    states = set(last.values())
    if "CHANGES_REQUESTED" in states:
        return "changes_requested"
    return "approved" if "APPROVED" in states else "none"


def _pulls(client: GithubClient, base: str, m: Any) -> list[Finding]:
    pulls = client.pages(f"{base}/pulls", list[m.PullRequestSimple], params={"state": "open", "sort": "updated",
                                                                            "direction": "desc"},
                         permission="pull_requests: read")
    out = []
    for i, p in enumerate(pulls):
        state = "draft" if p.draft else "open"
        if i < MAX_PULLS_DETAILED:
            reviews = client.pages(f"{base}/pulls/{p.number}/reviews", list[m.PullRequestReview],
                                   permission="pull_requests: read", max_pages=1)
            state += f" review={_review_state(reviews)} checks={_check_state(client, base, p.head.sha, m)}"
        out.append(Finding("pull", p.number, p.title, p.html_url, _labels(p), state=state, ref=p.head.ref,
                           updated_at=_iso(p.updated_at)))
    return out
