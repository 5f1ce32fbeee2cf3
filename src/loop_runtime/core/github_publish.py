"""The act path's last step when the GitHub connector is on: push ``loop/<run-id>``, open the PR (R11 at L3).

Kept apart from ``core.act`` so the act path reads the same with or without a connector:
``act._accept`` commits, then hands the commit to ``publish`` here, which talks only to
the ``ChangePublisher`` port (as PortCalls of the tick, ``core.effects``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import GithubRefused, LoopError
from ..formats.triage import TriageItem
from ..ports import TestRun, WorkspaceHandle
from .github_pr import PublishRequest, Published, escalation_comment, issue_number, pr_text
from .redact import clip

if TYPE_CHECKING:
    from .tick import Tick


async def publish(t: Tick, item: TriageItem, handle: WorkspaceHandle, sha: str, tests: TestRun | None,
            reasons: tuple[str, ...], *, merge_ok: bool) -> Published | None:
    """Push and open the PR (draft at L2; ready + merged through the API at L3 when the rules allow).

    A refused merge (branch protection) raises ``GithubRefused`` for ``core.act`` to escalate; any
    other failure leaves the fix on its local branch and says why (the run log and state file still
    name the branch).
    """
    text = pr_text(run_id=t.run_id, pattern=t.plan.pattern_id, item_id=item.id, item_title=item.title,
                   verdict="APPROVE", reasons=reasons, test_command=tests.command if tests else None,
                   test_passed=bool(tests and tests.passed), test_exit=tests.exit_code if tests else None,
                   tokens=t.tokens, level=t.effective, branch=handle.branch, secrets=t.deps.policy.secrets)
    req = PublishRequest(branch=handle.branch, sha=sha, base=handle.base_branch, title=text.title, body=text.body,
                         draft=not merge_ok, merge=merge_ok)
    try:
        pr = await t.ports.publisher.publish(req)
    except GithubRefused as e:  # core.act escalates it (branch protection said no)
        t.lines.append(f"merge refused: {clip(str(e), 200, extra_secrets=t.deps.policy.secrets)}")
        raise
    except LoopError as e:
        t.lines.append(f"GitHub step failed (the fix stays on {handle.branch}): "
                       f"{clip(str(e), 300, extra_secrets=t.deps.policy.secrets)}")
        await t.record("publish", {"error": clip(str(e), 300, extra_secrets=t.deps.policy.secrets)})
        return None
    await t.record("publish", {"url": pr.url, "number": pr.number, "draft": req.draft, "merged": pr.merged})
    t.lines.append(f"{'draft ' if req.draft else ''}pull request #{pr.number}: {pr.url}"
                   + (" (merged through the API)" if pr.merged else ""))
    return pr


async def mirror_escalation(t: Tick, item: TriageItem, reason: str, detail: str) -> None:
    """Comment on the triage item's issue when it names one (``#42``) and the publisher can comment."""
    number = issue_number(item.id)
    if "publisher" not in t.wired or number is None:
        return
    if not await t.ports.publisher.comment_escalations(default=False):  # a setting of the connector
        return
    try:
        body = escalation_comment(run_id=t.run_id, pattern=t.plan.pattern_id, reason=reason, detail=detail,
                                  secrets=t.deps.policy.secrets)
        url = await t.ports.publisher.comment(number, body)
        t.lines.append(f"escalation mirrored on #{number}" + (f": {url}" if url else ""))
    except LoopError as e:
        why = clip(str(e), 200, extra_secrets=t.deps.policy.secrets)
        t.lines.append(f"escalation not mirrored on #{number}: {why}")
