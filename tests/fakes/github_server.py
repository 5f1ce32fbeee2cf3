"""A local GitHub REST stand-in for the connector's tests (127.0.0.1 only).

Serves the endpoints the connector uses with bodies shaped like GitHub's (validated
against githubkit's models in tests/test_github_server.py), strong ETags with 304 on
``If-None-Match``, ``Link`` pagination, and fault injection (401/403/429/5xx, a
self-pointing or foreign ``Link``, a huge body). Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "ghp_FakeTokenForTests0123456789abcdefABCD"
T0 = "2026-08-01T00:00:00Z"


def user(login: str = "octo") -> dict[str, Any]:
    return {"login": login, "id": 1, "node_id": "U_1", "avatar_url": "https://example.invalid/a.png",
            "gravatar_id": "", "url": f"https://api.example.invalid/users/{login}",
            "html_url": f"https://example.invalid/{login}", "followers_url": "x", "following_url": "x",
            "gists_url": "x", "starred_url": "x", "subscriptions_url": "x", "organizations_url": "x",
            "repos_url": "x", "events_url": "x", "received_events_url": "x", "type": "User", "site_admin": False}


def label(name: str, n: int = 1) -> dict[str, Any]:
    return {"id": n, "node_id": f"L_{n}", "url": f"https://api.example.invalid/labels/{n}", "name": name,
            "description": None, "color": "ededed", "default": False}


@dataclass
class Repo:
    full_name: str = "octo/widgets"
    default_branch: str = "main"
    issues: list[dict[str, Any]] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    check_runs: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] | None = None  # None: 403 (token may not read Dependabot alerts)


class GithubStandIn:
    """Start with ``with GithubStandIn() as gh:``; ``gh.url`` is the API base."""

    def __init__(self, repo: Repo | None = None, *, token: str = TOKEN, page_size: int = 2) -> None:
        self.repo = repo or Repo()
        self.token = token
        self.page_size = page_size
        self.requests: list[dict[str, Any]] = []
        self.faults: list[tuple[str, int, dict[str, str]]] = []  # (path regex, status, headers), used once each
        self.link_mode: str | None = None  # "self" | "foreign"
        self.huge = False
        self.merge_refusal: int | None = None
        self.created_pulls: list[dict[str, Any]] = []
        self.comments: list[dict[str, Any]] = []
        self.merged: list[dict[str, Any]] = []
        self.label_events: list[tuple[str, int, list[str]]] = []
        self.pull_files: dict[int, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self._next_id = 1000

    # ------------------------------------------------------------------ helpers to build data
    def _base(self) -> str:
        return self.url

    def issue(self, number: int, title: str, labels: tuple[str, ...] = (), *, pull: bool = False,
              updated: str = T0) -> dict[str, Any]:
        o, r = self.repo.full_name.split("/")
        d: dict[str, Any] = {
            "id": 10_000 + number, "node_id": f"I_{number}", "url": f"{self.url}/repos/{o}/{r}/issues/{number}",
            "repository_url": f"{self.url}/repos/{o}/{r}", "labels_url": "x", "comments_url": "x", "events_url": "x",
            "html_url": f"https://github.example.invalid/{o}/{r}/issues/{number}", "number": number,
            "state": "open", "title": title, "body": "body text", "user": user(),
            "labels": [label(n, i) for i, n in enumerate(labels, 1)], "assignee": None, "assignees": [],
            "milestone": None, "locked": False, "active_lock_reason": None, "comments": 0, "closed_at": None,
            "created_at": T0, "updated_at": updated, "author_association": "OWNER", "reactions": None,
        }
        if pull:
            d["pull_request"] = {"url": "x", "html_url": "x", "diff_url": "x", "patch_url": "x", "merged_at": None}
        self.repo.issues.append(d)
        return d

    def failing_run(self, run_id: int, name: str = "CI", title: str = "CI failed on main",
                    conclusion: str = "failure", workflow_id: int = 7, run_number: int = 1) -> dict[str, Any]:
        o, r = self.repo.full_name.split("/")
        repo_min = {"id": 1, "node_id": "R_1", "name": r, "full_name": self.repo.full_name, "owner": user(o),
                    "private": False, "html_url": f"https://github.example.invalid/{o}/{r}", "description": None,
                    "fork": False, "url": f"{self.url}/repos/{o}/{r}", **{k: "x" for k in _REPO_URL_KEYS}}
        d = {
            "id": run_id, "name": name, "node_id": f"WR_{run_id}", "head_branch": self.repo.default_branch,
            "head_sha": "a" * 40, "path": ".github/workflows/ci.yml", "display_title": title,
            "run_number": run_number, "event": "push", "status": "completed", "conclusion": conclusion,
            "workflow_id": workflow_id, "url": f"{self.url}/repos/{o}/{r}/actions/runs/{run_id}",
            "html_url": f"https://github.example.invalid/{o}/{r}/actions/runs/{run_id}", "pull_requests": [],
            "created_at": T0, "updated_at": T0, "jobs_url": "x", "logs_url": "x", "check_suite_url": "x",
            "artifacts_url": "x", "cancel_url": "x", "rerun_url": "x", "workflow_url": "x",
            "head_commit": None, "repository": repo_min, "head_repository": repo_min,
        }
        self.repo.runs.append(d)
        return d

    # ------------------------------------------------------------------ server
    def __enter__(self) -> GithubStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _go(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = stand_in.handle(method, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                if payload:
                    self.wfile.write(payload)

            def do_GET(self) -> None:
                self._go("GET")

            def do_POST(self) -> None:
                self._go("POST")

            def do_PUT(self) -> None:
                self._go("PUT")

            def do_DELETE(self) -> None:
                self._go("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ routing
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str],
                                                                                                bytes]:
        parts = urlsplit(raw_path)
        path, query = parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}
        lower = {k.lower(): v for k, v in headers.items()}
        with self.lock:
            self.requests.append({"method": method, "path": path, "query": query,
                                  "if_none_match": lower.get("if-none-match"), "authorization": lower.get(
                                      "authorization"), "status": None})
            rec = self.requests[-1]
        for i, (pattern, status, extra) in enumerate(self.faults):
            if re.search(pattern, path):
                self.faults.pop(i)
                rec["status"] = status
                msg = {401: "Bad credentials", 403: "Resource not accessible by integration"}.get(status, "fault")
                return status, {"content-type": "application/json", **extra}, json.dumps({"message": msg}).encode()
        if lower.get("authorization") not in (f"token {self.token}", f"Bearer {self.token}"):
            rec["status"] = 401
            return 401, {"content-type": "application/json"}, b'{"message": "Bad credentials"}'
        status, payload, link = self.route(method, path, query, body)
        data = json.dumps(payload).encode() if payload is not None else b""
        out_headers = {"content-type": "application/json", "x-ratelimit-remaining": "4999"}
        if link:
            out_headers["link"] = link
        if method == "GET" and status == 200:
            etag = '"' + hashlib.sha256(data + link.encode()).hexdigest()[:32] + '"'
            out_headers["etag"] = etag
            if lower.get("if-none-match") == etag:
                rec["status"] = 304
                return 304, {"etag": etag}, b""
        if self.huge and method == "GET":
            data = b"[" + b" " * (9 * 1024 * 1024) + b"]"
        rec["status"] = status
        return status, out_headers, data

    def _page(self, items: list[Any], path: str, query: dict[str, str]) -> tuple[list[Any], str]:
        page = int(query.get("page", "1"))
        size = self.page_size
        chunk = items[(page - 1) * size: page * size]
        link = ""
        if self.link_mode == "self":
            q = "&".join(f"{k}={v}" for k, v in sorted(query.items()))
            link = f'<{self.url}{path}?{q}>; rel="next"'
        elif self.link_mode == "foreign":
            link = '<http://127.0.0.2:9/steal?page=2>; rel="next"'
        elif page * size < len(items):
            q = {**query, "page": str(page + 1)}
            link = f'<{self.url}{path}?' + "&".join(f"{k}={v}" for k, v in sorted(q.items())) + '>; rel="next"'
        return chunk, link

    def route(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any, str]:
        o, r = self.repo.full_name.split("/")
        base = f"/repos/{o}/{r}"
        if method == "GET" and path == base:
            return 200, full_repository(self), ""
        if method == "GET" and path == f"{base}/issues":
            items = [i for i in self.repo.issues if i["state"] == query.get("state", "open")]
            if "labels" in query:
                want = {x.strip().casefold() for x in query["labels"].split(",")}
                items = [i for i in items if want <= {lb["name"].casefold() for lb in i["labels"]}]
            chunk, link = self._page(items, path, query)
            return 200, chunk, link
        if method == "GET" and path == f"{base}/actions/runs":
            runs = [x for x in self.repo.runs if x["head_branch"] == query.get("branch", x["head_branch"])]
            chunk, link = self._page(runs, path, query)
            return 200, {"total_count": len(runs), "workflow_runs": chunk}, link
        m = re.fullmatch(rf"{base}/commits/([^/]+)/check-runs", path)
        if method == "GET" and m:
            return 200, {"total_count": len(self.repo.check_runs), "check_runs": self.repo.check_runs}, ""
        if method == "GET" and path == f"{base}/pulls":
            chunk, link = self._page(self.repo.pulls, path, query)
            return 200, chunk, link
        if method == "GET" and re.fullmatch(rf"{base}/pulls/\d+/reviews", path):
            return 200, [], ""
        if method == "GET" and path == f"{base}/dependabot/alerts":
            if self.repo.alerts is None:
                return 403, {"message": "Resource not accessible by integration"}, ""
            return 200, self.repo.alerts, ""
        if method == "POST" and path == f"{base}/pulls":
            req = json.loads(body)
            with self.lock:
                self._next_id += 1
                number = self._next_id
            pr = pull_request(self, number, req)
            self.created_pulls.append({"request": req, "response": pr})
            return 201, pr, ""
        m = re.fullmatch(rf"{base}/pulls/(\d+)/merge", path)
        if method == "PUT" and m:
            if self.merge_refusal:
                return self.merge_refusal, {"message": "Required status check \"ci\" is expected."}, ""
            req = json.loads(body)
            self.merged.append({"number": int(m.group(1)), **req})
            return 200, {"sha": "b" * 40, "merged": True, "message": "Pull Request successfully merged"}, ""
        m = re.fullmatch(rf"{base}/issues/(\d+)/labels(?:/(.+))?", path)
        if m and method in ("POST", "DELETE"):
            from urllib.parse import unquote

            issue = next((i for i in self.repo.issues if i["number"] == int(m.group(1))), None)
            if issue is None:
                return 404, {"message": "Not Found"}, ""
            if method == "POST":
                for name in json.loads(body)["labels"]:
                    issue["labels"].append(label(name, 90 + len(issue["labels"])))
                self.label_events.append(("add", issue["number"], json.loads(body)["labels"]))
            else:
                name = unquote(m.group(2) or "")
                issue["labels"] = [lb for lb in issue["labels"] if lb["name"] != name]
                self.label_events.append(("remove", issue["number"], [name]))
            return 200, issue["labels"], ""
        m = re.fullmatch(rf"{base}/pulls/(\d+)/files", path)
        if method == "GET" and m:
            return 200, self.pull_files.get(int(m.group(1)), []), ""
        m = re.fullmatch(rf"{base}/issues/(\d+)/comments", path)
        if method == "POST" and m:
            req = json.loads(body)
            self.comments.append({"number": int(m.group(1)), **req})
            return 201, issue_comment(self, int(m.group(1)), req["body"]), ""
        return 404, {"message": "Not Found"}, ""


_REPO_URL_KEYS = (
    "archive_url", "assignees_url", "blobs_url", "branches_url", "collaborators_url", "comments_url", "commits_url",
    "compare_url", "contents_url", "contributors_url", "deployments_url", "downloads_url", "events_url", "forks_url",
    "git_commits_url", "git_refs_url", "git_tags_url", "issue_comment_url", "issue_events_url", "issues_url",
    "keys_url", "labels_url", "languages_url", "merges_url", "milestones_url", "notifications_url", "pulls_url",
    "releases_url", "stargazers_url", "statuses_url", "subscribers_url", "subscription_url", "tags_url", "teams_url",
    "trees_url", "hooks_url",
)


def full_repository(s: GithubStandIn) -> dict[str, Any]:
    o, r = s.repo.full_name.split("/")
    return {
        "id": 1, "node_id": "R_1", "name": r, "full_name": s.repo.full_name, "owner": user(o), "private": False,
        "html_url": f"https://github.example.invalid/{o}/{r}", "description": None, "fork": False,
        "url": f"{s.url}/repos/{o}/{r}", **{k: "x" for k in _REPO_URL_KEYS},
        "git_url": "x", "ssh_url": "x", "clone_url": "x", "mirror_url": None, "svn_url": "x", "homepage": None,
        "language": None, "forks_count": 0, "stargazers_count": 0, "watchers_count": 0, "size": 1,
        "default_branch": s.repo.default_branch, "open_issues_count": len(s.repo.issues), "topics": [],
        "has_issues": True, "has_projects": False, "has_wiki": False, "has_pages": False, "has_downloads": True,
        "archived": False, "disabled": False, "visibility": "public", "pushed_at": T0, "created_at": T0,
        "updated_at": T0, "permissions": {"admin": False, "maintain": False, "push": True, "triage": True,
                                          "pull": True},
        "subscribers_count": 0, "network_count": 0, "forks": 0, "open_issues": 0, "watchers": 0,
        "license": None, "has_discussions": False,
    }


def _branch_ref(s: GithubStandIn, ref: str) -> dict[str, Any]:
    o, r = s.repo.full_name.split("/")
    repo = full_repository(s)
    return {"label": f"{o}:{ref}", "ref": ref, "sha": "c" * 40, "user": user(o), "repo": repo}


def pull_request(s: GithubStandIn, number: int, req: dict[str, Any]) -> dict[str, Any]:
    o, r = s.repo.full_name.split("/")
    return {
        "url": f"{s.url}/repos/{o}/{r}/pulls/{number}", "id": 50_000 + number, "node_id": f"PR_{number}",
        "html_url": f"https://github.example.invalid/{o}/{r}/pull/{number}", "diff_url": "x", "patch_url": "x",
        "issue_url": "x", "commits_url": "x", "review_comments_url": "x", "review_comment_url": "x",
        "comments_url": "x", "statuses_url": "x", "number": number, "state": "open", "locked": False,
        "title": req["title"], "user": user(), "body": req.get("body"), "labels": [], "milestone": None,
        "active_lock_reason": None, "created_at": T0, "updated_at": T0, "closed_at": None, "merged_at": None,
        "merge_commit_sha": None, "assignee": None, "assignees": [], "requested_reviewers": [],
        "requested_teams": [], "head": _branch_ref(s, req["head"]), "base": _branch_ref(s, req["base"]),
        "_links": {k: {"href": "x"} for k in ("comments", "commits", "statuses", "html", "issue",
                                               "review_comments", "review_comment", "self")},
        "author_association": "OWNER", "auto_merge": None, "draft": bool(req.get("draft")), "merged": False,
        "mergeable": None, "rebaseable": None, "mergeable_state": "unknown", "merged_by": None, "comments": 0,
        "review_comments": 0, "maintainer_can_modify": False, "commits": 1, "additions": 1, "deletions": 0,
        "changed_files": 1,
    }


def issue_comment(s: GithubStandIn, number: int, body: str) -> dict[str, Any]:
    o, r = s.repo.full_name.split("/")
    return {"id": 9, "node_id": "IC_9", "url": "x", "html_url": f"https://github.example.invalid/{o}/{r}/issues/"
            f"{number}#issuecomment-9", "body": body, "user": user(), "created_at": T0, "updated_at": T0,
            "issue_url": "x", "author_association": "OWNER"}
