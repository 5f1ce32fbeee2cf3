"""Push an accepted change to ``loop/<run-id>`` and open it as a pull request; merge at L3 when allowed.

Why the token travels in the environment: ``git push`` must authenticate, but the token
must never be written to ``.git/config``, a remote URL, or any file. It is passed as an
``http.<web-url>/.extraheader`` through ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/
``GIT_CONFIG_VALUE_n`` for that one git process — scoped to the GitHub web host, so a
push remote pointing anywhere else never receives it — and credential helpers are
switched off for it.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from ...core.github_pr import Published, PublishRequest, safe_loop_branch
from ...core.redact import redact
from ...errors import GithubError, GitError
from .client import GithubClient
from .config import GithubSettings

PUSH_TIMEOUT_S = 300.0


def push_env(settings: GithubSettings) -> dict[str, str]:
    """The git config for one push, as environment variables (never on disk)."""
    basic = base64.b64encode(f"x-access-token:{settings.token}".encode()).decode()
    key = f"http.{settings.web_url}/.extraheader"
    return {
        "GIT_CONFIG_COUNT": "3",
        "GIT_CONFIG_KEY_0": "credential.helper",
        "GIT_CONFIG_VALUE_0": "",
        # an empty value resets the list: actions/checkout persists its own header for this URL in
        # .git/config, and two Authorization headers make GitHub refuse the push
        "GIT_CONFIG_KEY_1": key,
        "GIT_CONFIG_VALUE_1": "",
        "GIT_CONFIG_KEY_2": key,
        "GIT_CONFIG_VALUE_2": f"AUTHORIZATION: basic {basic}",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
    }


def push_branch(root: Path, settings: GithubSettings, sha: str, branch: str, secrets: tuple[str, ...] = ()) -> None:
    """``git push <remote> <sha>:refs/heads/<branch>`` — refused for any branch outside ``loop/``."""
    from ..git import run_git

    if not safe_loop_branch(branch):
        raise GithubError(f"refusing to push {branch!r}: loop-runtime only pushes loop/* branches")
    if not sha or not all(c in "0123456789abcdef" for c in sha) or len(sha) not in (40, 64):
        raise GithubError(f"refusing to push {sha!r}: not a commit id")
    try:
        run_git(["push", "--no-verify", "--porcelain", "--", settings.remote, f"{sha}:refs/heads/{branch}"], root,
                env=push_env(settings), timeout=PUSH_TIMEOUT_S)
    except GitError as e:
        raise GithubError(redact(f"push of {branch} to remote {settings.remote!r} failed: {e}",
                                 extra_secrets=(*settings.secrets, *secrets))) from None


class GithubPublisher:
    """``publish`` for the act path (``core.act``): push, open the PR, merge when asked."""

    def __init__(self, root: Path, settings: GithubSettings, *, secrets: tuple[str, ...] = (),
                 client_factory: Any = None) -> None:
        self.root, self.settings, self.secrets = Path(root), settings, secrets
        self.client_factory = client_factory or (lambda: GithubClient(settings, secrets=secrets))
        self.comment_escalations = settings.comment_escalations

    def publish(self, req: PublishRequest) -> Published:
        from .client import models

        m = models()
        push_branch(self.root, self.settings, req.sha, req.branch, self.secrets)
        repo = self.settings.repository
        with self.client_factory() as client:
            pr = client.write("POST", f"/repos/{repo}/pulls",
                              {"title": req.title, "head": req.branch, "base": req.base, "body": req.body,
                               "draft": req.draft and not req.merge, "maintainer_can_modify": False},
                              m.PullRequest, permission="pull_requests: write")
            if not req.merge:
                return Published(pr.html_url, pr.number)
            # compare-and-swap on the head we pushed (like `gh pr merge --match-head-commit`)
            result = client.write("PUT", f"/repos/{repo}/pulls/{pr.number}/merge",
                                  {"sha": req.sha, "merge_method": "squash"}, m.PullRequestMergeResult,
                                  permission="contents: write")
            return Published(pr.html_url, pr.number, merged=bool(result.merged), merge_sha=result.sha)

    def comment(self, number: int, body: str) -> str | None:
        from .client import models

        m = models()
        with self.client_factory() as client:
            c = client.write("POST", f"/repos/{self.settings.repository}/issues/{number}/comments", {"body": body},
                             m.IssueComment, permission="issues: write")
            return c.html_url
