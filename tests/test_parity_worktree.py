"""Parity with the real `loop-worktree` 1.2.0: it lists, marks, cleans and gc's what we write;
we honour its locks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop_runtime.adapters.git_workspace import GitWorkspace
from loop_runtime.errors import GitError
from loop_runtime.formats.worktree_manifest import parse_manifest, render_manifest
from tests.support.gitrepo import git, make_repo, write
from tests.support.npm_tools import run_tool

pytestmark = pytest.mark.parity


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"src/app.py": "x = 1\n", "README.md": "# r\n"})


def _tool(repo: Path, *args: str) -> str:
    proc = run_tool("loop-worktree", *args, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _manifest_text(repo: Path) -> str:
    return (repo / ".loop-worktrees" / "manifest.json").read_text()


def test_list_json_shows_our_attempts_with_the_tool_fields(repo: Path) -> None:
    """`loop-worktree list --json` returns our entries, keys and statuses as its own."""
    ws = GitWorkspace(repo)
    h = ws.prepare("ci-sweeper-1", "ci-sweeper")
    ws.finish(ws.prepare("ci-sweeper-2", "ci-sweeper"), "rejected")
    listed = json.loads(_tool(repo, "list", "--json"))
    assert [(e["id"], e["status"]) for e in listed] == [("ci-sweeper-1", "active"), ("ci-sweeper-2", "rejected")]
    first = listed[0]
    assert {k: first[k] for k in ("id", "path", "branch", "baseBranch", "pattern", "status")} == {
        "id": "ci-sweeper-1", "path": ".loop-worktrees/ci-sweeper-1", "branch": "loop/ci-sweeper-1",
        "baseBranch": "main", "pattern": "ci-sweeper", "status": "active"}
    assert first["baseCommit"] == h.base_commit
    assert json.loads(_tool(repo, "list", "--status", "rejected", "--json"))[0]["id"] == "ci-sweeper-2"
    assert "active    ci-sweeper-1  loop/ci-sweeper-1  (ci-sweeper)" in _tool(repo, "list")


def test_cleanup_removes_our_escalated_attempts(repo: Path) -> None:
    """A committed escalated attempt is swept by the tool's default cleanup; we still read its manifest."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "ci-sweeper")
    write(Path(h.path), "src/app.py", "x = 2\n")
    ws.diff(h)
    ws.finish(h, "escalated", commit_message="held fix")
    active = ws.prepare("r2", "ci-sweeper")
    out = _tool(repo, "cleanup")
    assert "removed .loop-worktrees/r1 (escalated)" in out
    assert not Path(h.path).exists() and Path(active.path).exists()
    m = parse_manifest(_manifest_text(repo))
    assert [e.id for e in m.worktrees] == ["r2"]
    assert m.worktrees[0].base_commit == active.base_commit  # our key survives the tool's rewrite
    assert render_manifest(m) == _manifest_text(repo)  # and the bytes are the same layout


def test_cleanup_skips_an_escalated_attempt_with_uncommitted_work(repo: Path) -> None:
    """Without --force the tool refuses dirty worktrees, so held work is never lost by default."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "src/app.py", "uncommitted held work\n")
    ws.finish(h, "escalated")
    assert "cleanup: 0 removed, 1 skipped" in _tool(repo, "cleanup")
    assert "cleanup: 1 removed, 0 skipped" in _tool(repo, "cleanup", "--force")


def test_gc_drops_our_rejected_entries_and_ignores_the_pool(repo: Path) -> None:
    """Rejected attempts have no worktree left: gc drops them; pooled worktrees are not orphans."""
    ws = GitWorkspace(repo, pool_size=2)
    ws.finish(ws.prepare("r1", "p"), "rejected")
    ws.warm_pool()
    ws.prepare("r2", "p")
    result = json.loads(_tool(repo, "gc", "--json"))
    assert result["orphans"] == []
    assert [e["id"] for e in result["dropped"]] == ["r1"]
    assert [e.id for e in parse_manifest(_manifest_text(repo)).worktrees] == ["r2"]


def test_entries_made_and_marked_by_the_tool_are_read_by_us(repo: Path) -> None:
    """The tool's `create` and `mark` output parses, and our next attempt keeps its entry intact."""
    _tool(repo, "create", "--run-id", "manual-1", "--pattern", "daily-triage")
    ws = GitWorkspace(repo)
    h = ws.prepare("ours-1", "ci-sweeper")
    _tool(repo, "mark", "--run-id", "ours-1", "--status", "escalated")
    m = parse_manifest(_manifest_text(repo))
    assert [(e.id, e.status, e.pattern) for e in m.worktrees] == [
        ("manual-1", "active", "daily-triage"), ("ours-1", "escalated", "ci-sweeper")]
    assert m.get("ours-1").base_commit == h.base_commit  # type: ignore[union-attr]
    ws.mark("manual-1", "rejected")
    assert json.loads(_tool(repo, "list", "--status", "rejected", "--json"))[0]["id"] == "manual-1"


def test_we_honour_locks_taken_with_the_tool(repo: Path) -> None:
    """`loop-worktree lock` by another owner blocks our attempt on those paths until `unlock`."""
    _tool(repo, "lock", "--paths", "src/**,package.json", "--owner", "dependency-sweeper", "--ttl", "6h")
    ws = GitWorkspace(repo)
    with pytest.raises(GitError, match='locked by owner "dependency-sweeper"'):
        ws.prepare("r1", "ci-sweeper", paths=["src/app.py"])
    assert ws.prepare("r2", "ci-sweeper", paths=["docs/x.md"]).run_id == "r2"
    _tool(repo, "unlock", "--owner", "dependency-sweeper")
    assert ws.prepare("r1", "ci-sweeper", paths=["src/app.py"]).run_id == "r1"
    assert not (repo / ".loop-worktrees" / "locks" / ".mutex").exists()
    assert "loop/r1" in git(repo, "branch", "--list", "loop/r1")
