"""GitWorkspace on real temporary repositories: attempts, diffs, outcomes, pool, approve, merge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest

from loop_runtime import ports
from loop_runtime.adapters.clock import ManualClock
from loop_runtime.adapters.git_workspace import GitWorkspace
from loop_runtime.adapters.guard import compare, snapshot
from loop_runtime.core.diff_policy import check_diff
from loop_runtime.core.redact import redact
from loop_runtime.errors import ConfigError, GitError
from loop_runtime.formats.worktree_manifest import parse_manifest
from tests.support.gitrepo import git, make_repo, write

FILES = {
    "README.md": "# demo\n",
    "src/app.py": "def add(a, b):\n    return a + b\n",
    "src/util.py": "X = 1\n",
    "tests/test_app.py": "from src.app import add\n\ndef test_add():\n    assert add(1, 2) == 3\n",
    "scripts/run.sh": "#!/bin/sh\necho run\n",
    "docs/guide.md": "guide\n",
    ".gitignore": "*.log\nbuild/\n",
}
T0 = datetime(2026, 7, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def _manifest(repo: Path) -> dict[str, dict[str, object]]:
    data = json.loads((repo / ".loop-worktrees" / "manifest.json").read_text())
    return {e["id"]: e for e in data["worktrees"]}


def _has_branch(repo: Path, branch: str) -> bool:
    return git(repo, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False) != ""


def _change(diff: ports.Diff, path: str) -> ports.FileChange:
    (found,) = [c for c in diff.changes if c.path == path]
    return found


# --------------------------------------------------------------------------- prepare


def test_prepare_creates_the_attempt_worktree_and_manifest_entry(repo: Path) -> None:
    """`.loop-worktrees/<id>` on `loop/<id>` from base HEAD, recorded active with the tool's keys."""
    head = git(repo, "rev-parse", "HEAD")
    ws = GitWorkspace(repo, clock=ManualClock(T0))
    h = ws.prepare("ci-sweeper-1", "ci-sweeper")
    assert isinstance(ws, ports.Workspace)
    assert h == ports.WorkspaceHandle("ci-sweeper-1", str(repo.resolve() / ".loop-worktrees" / "ci-sweeper-1"),
                                      "loop/ci-sweeper-1", "main", head)
    assert git(Path(h.path), "rev-parse", "--abbrev-ref", "HEAD") == "loop/ci-sweeper-1"
    assert git(Path(h.path), "rev-parse", "HEAD") == head
    assert _manifest(repo)["ci-sweeper-1"] == {
        "id": "ci-sweeper-1", "path": ".loop-worktrees/ci-sweeper-1", "branch": "loop/ci-sweeper-1",
        "baseBranch": "main", "pattern": "ci-sweeper", "createdAt": "2026-07-07T12:00:00.000Z",
        "status": "active", "baseCommit": head}


def test_prepare_ignores_its_folders_via_info_exclude_not_gitignore(repo: Path) -> None:
    """The user's .gitignore is untouched; `git status` of the main checkout stays clean."""
    GitWorkspace(repo).prepare("r1", "p")
    assert (repo / ".gitignore").read_text() == FILES[".gitignore"]
    exclude = (repo / ".git" / "info" / "exclude").read_text()
    assert "/.loop-worktrees/" in exclude and "/.loop-runtime/" in exclude
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    GitWorkspace(repo).prepare("r2", "p")
    assert (repo / ".git" / "info" / "exclude").read_text() == exclude  # added once


def test_prepare_uses_the_checked_out_branch_or_the_given_base(repo: Path) -> None:
    """Default base is the main checkout's branch; `base_branch=` overrides it."""
    git(repo, "branch", "develop")
    git(repo, "checkout", "-q", "-b", "trunk")
    assert GitWorkspace(repo).prepare("a", "p").base_branch == "trunk"
    assert GitWorkspace(repo, base_branch="develop").prepare("b", "p").base_branch == "develop"
    with pytest.raises(GitError, match="base branch 'nope' not found"):
        GitWorkspace(repo, base_branch="nope").prepare("c", "p")


def test_prepare_refuses_bad_ids_duplicates_and_non_repos(repo: Path, tmp_path: Path) -> None:
    """Unsafe run ids are ConfigErrors; an active id or a non-repository is a GitError."""
    ws = GitWorkspace(repo)
    for bad in ("../x", "a/b", "-x", "a..b", "x.lock", ""):
        with pytest.raises(ConfigError):
            ws.prepare(bad, "p")
    ws.prepare("r1", "p")
    with pytest.raises(GitError, match="already has an active worktree"):
        ws.prepare("r1", "p")
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitError, match="not a git repository"):
        GitWorkspace(tmp_path / "plain").prepare("r1", "p")


def test_a_failed_prepare_leaves_no_entry_behind(repo: Path) -> None:
    """If git refuses the worktree, the manifest is as before and nothing is left on disk."""
    git(repo, "branch", "loop/r1")
    with pytest.raises(GitError, match="branch loop/r1 already exists"):
        GitWorkspace(repo).prepare("r1", "p")
    assert not (repo / ".loop-worktrees" / "manifest.json").exists() or "r1" not in _manifest(repo)
    assert not (repo / ".loop-worktrees" / "r1").exists()


# --------------------------------------------------------------------------- mutex and locks


def test_prepare_waits_for_the_manifest_mutex(repo: Path) -> None:
    """A held `.manifest.mutex` blocks; released by its owner, prepare goes ahead."""
    mutex = repo / ".loop-worktrees" / ".manifest.mutex"
    mutex.parent.mkdir()
    mutex.write_text("other process\n")
    ws = GitWorkspace(repo)
    ws.mutex_wait_s = 0.3
    with pytest.raises(GitError, match="manifest.mutex"):
        ws.prepare("r1", "p")
    ws.mutex_wait_s = 10
    threading.Timer(0.3, mutex.unlink).start()
    assert ws.prepare("r1", "p").run_id == "r1"
    assert not mutex.exists()


def test_a_stale_mutex_is_taken_over(repo: Path) -> None:
    """A mutex older than 30 s belongs to a dead process."""
    mutex = repo / ".loop-worktrees" / ".manifest.mutex"
    mutex.parent.mkdir()
    mutex.write_text("dead\n")
    old = time.time() - 60
    os.utime(mutex, (old, old))
    ws = GitWorkspace(repo)
    ws.mutex_wait_s = 0.3
    assert ws.prepare("r1", "p").run_id == "r1"


def _lock(repo: Path, owner: str, paths: list[str], expires: datetime | None = None) -> None:
    body: dict[str, object] = {"owner": owner, "paths": paths, "lockedAt": "2026-07-07T11:00:00.000Z"}
    if expires is not None:
        body["expiresAt"] = expires.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    write(repo, f".loop-worktrees/locks/{owner}.json", json.dumps(body, indent=2) + "\n")


def test_foreign_locks_on_the_paths_refuse_the_attempt(repo: Path) -> None:
    """Another owner's live lock that overlaps the attempt's paths stops it with a clear message."""
    _lock(repo, "dependency-sweeper", ["package.json", "src/**"], expires=T0 + timedelta(hours=6))
    ws = GitWorkspace(repo, clock=ManualClock(T0))
    with pytest.raises(GitError, match='locked by owner "dependency-sweeper"'):
        ws.prepare("r1", "ci-sweeper", paths=["src/app.py"])
    with pytest.raises(GitError, match="locked"):
        ws.prepare("r1", "ci-sweeper")  # unknown paths: anything may be touched
    assert ws.prepare("r2", "ci-sweeper", paths=["docs/guide.md"]).run_id == "r2"
    assert ws.prepare("r3", "dependency-sweeper", paths=["src/app.py"]).run_id == "r3"  # own lock


def test_expired_locks_and_wait_files_do_not_block(repo: Path) -> None:
    """A lock past its expiresAt is ignored, and `<owner>.wait.json` intents are not locks."""
    _lock(repo, "old", ["**"], expires=T0 - timedelta(seconds=1))
    write(repo, ".loop-worktrees/locks/other.wait.json", json.dumps({"owner": "other", "paths": ["**"]}))
    assert GitWorkspace(repo, clock=ManualClock(T0)).prepare("r1", "p").run_id == "r1"


def test_a_corrupt_lock_fails_closed(repo: Path) -> None:
    """An unreadable lock is a ConfigError naming it, not a silent go-ahead."""
    write(repo, ".loop-worktrees/locks/x.json", "{not json")
    with pytest.raises(ConfigError, match="locks/x.json"):
        GitWorkspace(repo).prepare("r1", "p")


# --------------------------------------------------------------------------- diff


def test_diff_reports_every_change_kind(repo: Path) -> None:
    """Added, modified, deleted, renamed, mode, symlink, binary and typechange, as git sees them."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    wt = Path(h.path)
    write(wt, "src/new.py", "NEW = 1\n")
    write(wt, "src/app.py", "def add(a, b):\n    return b + a\n# changed\n")
    (wt / "docs" / "guide.md").unlink()
    os.rename(wt / "src" / "util.py", wt / "src" / "helpers.py")
    os.chmod(wt / "scripts" / "run.sh", 0o755)
    os.symlink("../README.md", wt / "src" / "readme-link")
    write(wt, "assets/logo.bin", bytes(range(256)))
    (wt / "README.md").unlink()
    os.symlink("src/app.py", wt / "README.md")
    write(wt, "notes/ünïcode file.txt", "hi\n")
    diff = ws.diff(h)
    assert diff.base_commit == h.base_commit
    kinds = {c.path: c.kind for c in diff.changes}
    assert kinds == {"src/new.py": "added", "src/app.py": "modified", "docs/guide.md": "deleted",
                     "src/helpers.py": "renamed", "scripts/run.sh": "mode", "src/readme-link": "added",
                     "assets/logo.bin": "added", "README.md": "typechange", "notes/ünïcode file.txt": "added"}
    assert _change(diff, "src/helpers.py").old_path == "src/util.py"
    mode = _change(diff, "scripts/run.sh")
    assert (mode.old_mode, mode.new_mode) == ("100644", "100755")
    link = _change(diff, "src/readme-link")
    assert link.is_symlink and link.symlink_target == "../README.md"
    assert _change(diff, "README.md").is_symlink and _change(diff, "README.md").symlink_target == "src/app.py"
    assert _change(diff, "assets/logo.bin").is_binary and _change(diff, "assets/logo.bin").added_lines == ()
    assert _change(diff, "src/app.py").added_lines == ("    return b + a", "# changed")
    assert _change(diff, "notes/ünïcode file.txt").added_lines == ("hi",)
    assert set(diff.touched_paths) >= {"src/util.py", "src/helpers.py"}
    assert "GIT binary patch" in diff.patch
    assert check_diff(diff) == ()


def test_odd_file_names_round_trip_through_the_diff(repo: Path) -> None:
    """Quotes, tabs, spaces and backslashes in names come back as the file system spells them."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    names = ['we"ird.py', "tab\tname.py", "sp ace.py", "back\\slash.py", "日本.py"]
    for i, name in enumerate(names):
        write(Path(h.path), f"odd/{name}", f"line {i}\n")
    diff = ws.diff(h)
    assert sorted(c.path for c in diff.changes) == sorted(f"odd/{n}" for n in names)
    for i, name in enumerate(names):
        assert _change(diff, f"odd/{name}").added_lines == (f"line {i}",)


def test_diff_stages_in_the_worktree_index_only(repo: Path) -> None:
    """The main checkout's index and files are untouched by diff()."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "src/app.py", "changed\n")
    before = (repo / ".git" / "index").read_bytes()
    ws.diff(h)
    assert (repo / ".git" / "index").read_bytes() == before
    assert (repo / "src" / "app.py").read_text() == FILES["src/app.py"]


def test_escaping_and_control_changes_are_caught_on_the_real_diff(repo: Path) -> None:
    """A symlink out of the tree, a gate.yaml edit, a deleted test and a skip marker all surface."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    wt = Path(h.path)
    os.symlink("/etc/passwd", wt / "passwd")
    os.symlink("../../../../secret", wt / "src" / "up")
    write(wt, "gate.yaml", "version: 1\ndenylist: []\n")
    write(wt, "STATE.md", "# state\n")
    os.rename(wt / "tests" / "test_app.py", wt / "src" / "app_checks.py")
    write(wt, "tests/test_other.py", "import pytest\n\n@pytest.mark.skip\ndef test_x():\n    pass\n")
    codes = sorted((v.code, v.path) for v in check_diff(ws.diff(h), control_files=["STATE.md"]))
    assert codes == [("control-file", "STATE.md"), ("control-file", "gate.yaml"),
                     ("symlink-escape", "passwd"), ("symlink-escape", "src/up"),
                     ("test-deleted", "tests/test_app.py"), ("test-skipped", "tests/test_other.py")]


def test_a_nested_repository_is_a_git_dir_violation(repo: Path) -> None:
    """An agent creating a repository inside its worktree cannot smuggle it in as a gitlink."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    inner = make_repo(Path(h.path) / "vendor" / "inner", {"x": "y"})
    assert inner.exists()
    assert [(v.code, v.path) for v in check_diff(ws.diff(h))] == [("git-dir", "vendor/inner")]


# --------------------------------------------------------------------------- finish


def test_commit_carries_trailers_and_writes_the_patch(repo: Path) -> None:
    """An accepted attempt is one commit on loop/<id> with Loop-Run-Id and Loop-Pattern trailers."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "ci-sweeper")
    write(Path(h.path), "src/app.py", "fixed\n")
    write(Path(h.path), "assets/x.bin", b"\0\1\2\3")
    diff = ws.diff(h)
    sha = ws.finish(h, "fix-proposed", commit_message="loop(ci-sweeper): fix add\n\napi_key=hunter2hunter2")
    assert sha == git(repo, "rev-parse", "loop/r1")
    assert git(repo, "rev-parse", "loop/r1^") == h.base_commit
    body = git(repo, "log", "-1", "--format=%B", "loop/r1")
    assert body.splitlines()[0] == "loop(ci-sweeper): fix add"
    assert "hunter2hunter2" not in body and "api_key=[REDACTED]" in body
    trailers = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", "loop/r1")
    assert trailers.splitlines() == ["Loop-Run-Id: r1", "Loop-Pattern: ci-sweeper"]
    patch = (repo / ".loop-runtime" / "patches" / "r1.patch").read_text()
    assert patch == diff.patch
    assert git(Path(h.path), "status", "--porcelain") == ""
    assert _manifest(repo)["r1"]["status"] == "active"  # fix-proposed is loop-worktree's `active`
    assert git(repo, "rev-parse", "main") == h.base_commit


def test_finish_commits_exactly_what_was_checked(repo: Path) -> None:
    """Edits and test caches written after diff() never reach the branch."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "src/app.py", "checked\n")
    ws.diff(h)
    write(Path(h.path), "src/app.py", "sneaked in later\n")
    write(Path(h.path), "src/__pycache__/app.cpython-311.pyc", b"\0cache")
    sha = ws.finish(h, "active", commit_message="x")
    assert git(repo, "show", f"{sha}:src/app.py") == "checked"
    assert git(repo, "diff", "--name-only", h.base_commit, sha) == "src/app.py"
    assert git(Path(h.path), "status", "--porcelain").splitlines() == ["M src/app.py", "?? src/__pycache__/"]


def test_finish_discards_agent_commits_and_commits_exactly_the_diff(repo: Path) -> None:
    """Commits the agent made itself are folded into one commit on the base, same tree."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "src/app.py", "agent\n")
    git(Path(h.path), "commit", "-qam", "agent's own commit")
    write(Path(h.path), "src/util.py", "more\n")
    diff = ws.diff(h)
    assert {c.path for c in diff.changes} == {"src/app.py", "src/util.py"}
    sha = ws.finish(h, "active", commit_message="fix")
    assert git(repo, "rev-list", "--count", f"{h.base_commit}..{sha}") == "1"
    assert git(repo, "show", f"{sha}:src/app.py") == "agent"


def test_discard_side_effects_puts_the_checked_tree_back(repo: Path) -> None:
    """After the tests ran: their edits and new files go, the checked change and ignored files stay."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    wt = Path(h.path)
    write(wt, "src/app.py", "the change\n")
    ws.diff(h)
    write(wt, "src/app.py", "rewritten by a snapshot test\n")
    (wt / "docs" / "guide.md").unlink()
    write(wt, ".coverage", "coverage data\n")
    write(wt, "run.log", "ignored log\n")
    ws.discard_side_effects(h)
    assert (wt / "src" / "app.py").read_text() == "the change\n"
    assert (wt / "docs" / "guide.md").read_text() == FILES["docs/guide.md"]
    assert not (wt / ".coverage").exists() and (wt / "run.log").exists()
    assert [c.path for c in ws.diff(h).changes] == ["src/app.py"]


def test_nothing_to_commit_returns_none(repo: Path) -> None:
    """An empty attempt makes no commit."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    ws.diff(h)
    assert ws.finish(h, "active", commit_message="nothing") is None
    assert git(repo, "rev-parse", "loop/r1") == h.base_commit


def test_rejected_attempts_are_removed_with_their_branch(repo: Path) -> None:
    """REJECT: worktree gone, branch deleted, manifest says `rejected`."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "src/app.py", "bad\n")
    write(Path(h.path), "debug.log", "ignored junk\n")
    assert ws.finish(h, "rejected", commit_message="ignored for rejects") is None
    assert not Path(h.path).exists()
    assert not _has_branch(repo, "loop/r1")
    assert _manifest(repo)["r1"]["status"] == "rejected"
    assert str(Path(h.path)) not in git(repo, "worktree", "list")


def test_escalated_attempts_are_kept(repo: Path) -> None:
    """ESCALATE: worktree, uncommitted work and branch stay for a human; manifest says `escalated`."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "src/app.py", "held\n")
    assert ws.finish(h, "escalated") is None
    assert (Path(h.path) / "src" / "app.py").read_text() == "held\n"
    assert _has_branch(repo, "loop/r1")
    assert _manifest(repo)["r1"]["status"] == "escalated"


def test_unknown_status_is_a_config_error(repo: Path) -> None:
    """Only the loop-worktree statuses plus fix-proposed are accepted."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    with pytest.raises(ConfigError, match="status invalid: 'done'"):
        ws.finish(h, "done")
    ws.mark("r1", "stale")
    assert _manifest(repo)["r1"]["status"] == "stale"


def test_base_branch_and_main_checkout_are_untouched_at_l2(repo: Path) -> None:
    """A whole L2 attempt (prepare, edit, diff, commit) changes nothing outside but its own branch."""
    ws = GitWorkspace(repo)
    ws.finish(ws.prepare("r0", "p"), "rejected")  # the first attempt ever also adds info/exclude lines
    write(repo, "wip.txt", "user's uncommitted work\n")
    write(repo, "src/util.py", "X = 2  # user edit\n")
    before = snapshot(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "src/app.py", "fixed\n")
    ws.diff(h)
    ws.finish(h, "fix-proposed", commit_message="fix")
    after = snapshot(repo)
    assert compare(before, after, allowed_refs=["refs/heads/loop/r1"]) == ()
    assert compare(before, after) == (f"ref refs/heads/loop/r1 created at {git(repo, 'rev-parse', 'loop/r1')[:10]}",)


# --------------------------------------------------------------------------- pool


def test_a_pooled_worktree_has_no_leftovers(repo: Path) -> None:
    """Reuse after a reject: no edits, untracked or ignored files, index flags or branch of the old attempt."""
    ws = GitWorkspace(repo, pool_size=1)
    h1 = ws.prepare("r1", "p")
    wt1 = Path(h1.path)
    write(wt1, "src/app.py", "attempt 1\n")
    write(wt1, "untracked.txt", "left over\n")
    write(wt1, "debug.log", "ignored\n")
    write(wt1, "build/out/obj.o", "ignored dir\n")
    write(wt1, "tests/test_app.py", "hidden edit\n")
    git(wt1, "update-index", "--assume-unchanged", "tests/test_app.py")
    (wt1 / "docs" / "guide.md").unlink()
    ws.finish(h1, "rejected")
    pool = repo / ".loop-runtime" / "worktree-pool"
    (slot,) = list(pool.iterdir())
    h2 = ws.prepare("r2", "p")
    wt2 = Path(h2.path)
    assert not slot.exists() and wt2.is_dir()
    assert git(wt2, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert git(wt2, "ls-files", "-v").splitlines() == [f"H {p}" for p in sorted(FILES)]
    for rel, text in FILES.items():
        assert (wt2 / rel).read_text() == text
    assert git(wt2, "rev-parse", "--abbrev-ref", "HEAD") == "loop/r2"
    assert ws.diff(h2).changes == ()
    assert not _has_branch(repo, "loop/r1")


def test_a_pool_slot_tampered_with_while_idle_is_reset(repo: Path) -> None:
    """Edits, staged changes and planted files in an idle slot do not reach the next attempt."""
    ws = GitWorkspace(repo, pool_size=1)
    ws.finish(ws.prepare("r1", "p"), "rejected")
    (slot,) = list((repo / ".loop-runtime" / "worktree-pool").iterdir())
    write(slot, "src/app.py", "tampered\n")
    write(slot, "src/util.py", "staged tamper\n")
    git(slot, "add", "src/util.py")
    write(slot, "src/util.py", "X = 1\n")
    write(slot, "build/planted.sh", "evil\n")
    h = ws.prepare("r2", "p")
    wt = Path(h.path)
    assert git(wt, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert (wt / "src" / "app.py").read_text() == FILES["src/app.py"]
    assert ws.diff(h).changes == ()


def test_a_pooled_worktree_follows_a_moved_base(repo: Path) -> None:
    """When main moved since the reject, the reused worktree is at the new base commit."""
    ws = GitWorkspace(repo, pool_size=1)
    ws.finish(ws.prepare("r1", "p"), "rejected")
    write(repo, "src/util.py", "X = 3\n")
    git(repo, "commit", "-qam", "move main")
    h2 = ws.prepare("r2", "p")
    assert h2.base_commit == git(repo, "rev-parse", "main")
    assert (Path(h2.path) / "src" / "util.py").read_text() == "X = 3\n"
    assert git(Path(h2.path), "status", "--porcelain") == ""


def test_warm_pool_prepares_slots_the_first_attempt_uses(repo: Path) -> None:
    """Pre-created slots are detached worktrees outside .loop-worktrees (loop-worktree gc ignores them)."""
    ws = GitWorkspace(repo, pool_size=2)
    assert ws.warm_pool() == 2
    assert ws.warm_pool() == 0
    assert len(list((repo / ".loop-runtime" / "worktree-pool").iterdir())) == 2
    ws.prepare("r1", "p")
    assert len(list((repo / ".loop-runtime" / "worktree-pool").iterdir())) == 1


def test_pool_size_zero_removes_rejected_worktrees(repo: Path) -> None:
    """Without a pool nothing is kept after a reject."""
    ws = GitWorkspace(repo)
    ws.finish(ws.prepare("r1", "p"), "rejected")
    assert not (repo / ".loop-runtime" / "worktree-pool").exists()
    assert len(git(repo, "worktree", "list").splitlines()) == 1


# --------------------------------------------------------------------------- approve later


APPROVE = textwrap.dedent("""
    import sys
    from loop_runtime.adapters.git_workspace import GitWorkspace
    root, run_id, patch_file = sys.argv[1:4]
    patch = open(patch_file, encoding="utf-8", errors="surrogateescape").read()
    h = GitWorkspace(root).apply_held(run_id, patch, "ci-sweeper", "approved fix")
    print(h.path)
""")


def _approve_in_subprocess(repo: Path, run_id: str, patch: str, tmp_path: Path) -> str:
    patch_file = tmp_path / "held.patch"
    patch_file.write_text(patch, encoding="utf-8", errors="surrogateescape")
    proc = subprocess.run([sys.executable, "-c", APPROVE, str(repo), run_id, str(patch_file)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_approve_recreates_a_cleaned_up_attempt_from_its_patch(repo: Path, tmp_path: Path) -> None:
    """Days later, in another process, the held patch is re-applied on its base and committed."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "ci-sweeper")
    write(Path(h.path), "src/app.py", "held fix\n")
    write(Path(h.path), "assets/a.bin", bytes(range(200)))
    os.chmod(Path(h.path) / "scripts" / "run.sh", 0o755)
    diff = ws.diff(h)
    ws.finish(h, "escalated")
    git(repo, "worktree", "remove", "--force", h.path)
    git(repo, "branch", "-D", "loop/r1")
    write(repo, "docs/guide.md", "main moved on\n")
    git(repo, "commit", "-qam", "main moves")
    path = _approve_in_subprocess(repo, "r1", diff.patch, tmp_path)
    assert path == h.path
    assert git(repo, "rev-parse", "loop/r1^") == h.base_commit
    assert git(repo, "show", "loop/r1:src/app.py") == "held fix"
    assert git(repo, "diff", "--binary", h.base_commit, "loop/r1", "--", "assets") != ""
    assert "Loop-Run-Id: r1" in git(repo, "log", "-1", "--format=%B", "loop/r1")
    assert _manifest(repo)["r1"]["status"] == "active"


def test_approve_commits_an_existing_worktree_that_has_exactly_the_diff(repo: Path, tmp_path: Path) -> None:
    """If the escalated worktree still holds that diff, it is committed as is (no reset)."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "ci-sweeper")
    write(Path(h.path), "src/app.py", "held fix\n")
    diff = ws.diff(h)
    ws.finish(h, "escalated")
    write(Path(h.path), "keep.log", "ignored file a reset would remove\n")
    _approve_in_subprocess(repo, "r1", diff.patch, tmp_path)
    assert (Path(h.path) / "keep.log").exists()
    assert git(repo, "show", "loop/r1:src/app.py") == "held fix"
    assert git(Path(h.path), "status", "--porcelain") == ""


def test_approve_resets_a_worktree_that_drifted(repo: Path, tmp_path: Path) -> None:
    """A worktree edited since the escalation is reset to base + the stored patch."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "ci-sweeper")
    write(Path(h.path), "src/app.py", "held fix\n")
    diff = ws.diff(h)
    ws.finish(h, "escalated")
    write(Path(h.path), "src/util.py", "someone poked here\n")
    _approve_in_subprocess(repo, "r1", diff.patch, tmp_path)
    assert git(repo, "show", "loop/r1:src/util.py") == "X = 1"
    assert git(repo, "diff", "--name-only", h.base_commit, "loop/r1") == "src/app.py"


def test_a_patch_that_no_longer_applies_is_a_git_error(repo: Path) -> None:
    """The git command and git's last word are in the message; nothing is left half-done."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r9", "p")
    write(Path(h.path), "src/app.py", "held\n")
    ws.diff(h)
    held = ws.finish(h, "escalated", commit_message="held")
    git(repo, "worktree", "remove", "--force", h.path)
    bad = "diff --git a/nope.txt b/nope.txt\n--- a/nope.txt\n+++ b/nope.txt\n@@ -1 +1 @@\n-a\n+b\n"
    with pytest.raises(GitError, match=r"git apply --index --binary --whitespace=nowarn failed: .*nope.txt"):
        ws.apply_held("r9", bad, "p", "m")
    assert not Path(h.path).exists()
    assert git(repo, "rev-parse", "loop/r9") == held  # the escalated commit is untouched


def test_approving_a_redacted_patch_uses_the_exact_copy(repo: Path, tmp_path: Path) -> None:
    """The reviewer saw `[REDACTED]`; the commit gets the real value from the escalation's patch file."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "src/config.py", 'API_KEY = "sk-live-value-1234567"\n')
    diff = ws.diff(h)
    ws.finish(h, "escalated")
    shown = redact(diff.patch)
    assert "[REDACTED]" in shown and (repo / ".loop-runtime" / "patches" / "r1.patch").read_text() == diff.patch
    git(repo, "worktree", "remove", "--force", h.path)
    _approve_in_subprocess(repo, "r1", shown, tmp_path)
    assert git(repo, "show", "loop/r1:src/config.py") == 'API_KEY = "sk-live-value-1234567"'


def test_a_redacted_patch_is_matched_against_the_held_worktree(repo: Path) -> None:
    """With no patch file left, a worktree whose diff redacts to the reviewed text is committed as is."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "src/config.py", 'token = "abcdef123456"\n')
    diff = ws.diff(h)
    ws.finish(h, "escalated")
    (repo / ".loop-runtime" / "patches" / "r1.patch").unlink()
    GitWorkspace(repo).apply_held("r1", redact(diff.patch), "p", "approved")
    assert git(repo, "show", "loop/r1:src/config.py") == 'token = "abcdef123456"'


def test_a_redacted_patch_without_an_exact_copy_is_refused(repo: Path) -> None:
    """Never commit a placeholder: with no exact copy and no matching worktree, approve fails."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "src/config.py", 'token = "abcdef123456"\n')
    diff = ws.diff(h)
    ws.finish(h, "escalated")
    (repo / ".loop-runtime" / "patches" / "r1.patch").unlink()
    write(Path(h.path), "src/config.py", 'token = "changed-since"\n')
    with pytest.raises(GitError, match="redacted"):
        ws.apply_held("r1", redact(diff.patch), "p", "m")


# --------------------------------------------------------------------------- merge


def test_merge_fast_forwards_the_base_branch_and_marks_merged(repo: Path) -> None:
    """L3: a clean main checkout on the base branch gets loop/<id>; manifest says `merged`."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "docs/guide.md", "better guide\n")
    ws.diff(h)
    sha = ws.finish(h, "active", commit_message="docs")
    assert ws.merge(h) == sha == git(repo, "rev-parse", "main")
    assert (repo / "docs" / "guide.md").read_text() == "better guide\n"
    assert _manifest(repo)["r1"]["status"] == "merged"


def test_merge_makes_a_merge_commit_when_main_moved(repo: Path) -> None:
    """A base that moved on gets a merge commit with both parents."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "docs/guide.md", "better guide\n")
    ws.diff(h)
    sha = ws.finish(h, "active", commit_message="docs")
    write(repo, "README.md", "# moved\n")
    git(repo, "commit", "-qam", "move")
    merged = ws.merge(h)
    assert git(repo, "rev-parse", f"{merged}^2") == sha


def test_merge_refuses_a_dirty_main_checkout_or_another_branch(repo: Path) -> None:
    """Uncommitted user changes, or HEAD not on the base branch, refuse the merge and change nothing."""
    ws = GitWorkspace(repo)
    h = ws.prepare("r1", "p")
    write(Path(h.path), "docs/guide.md", "better\n")
    ws.diff(h)
    ws.finish(h, "active", commit_message="docs")
    main = git(repo, "rev-parse", "main")
    write(repo, "README.md", "user is editing\n")
    with pytest.raises(GitError, match="uncommitted changes"):
        ws.merge(h)
    git(repo, "checkout", "-q", "--", "README.md")
    git(repo, "checkout", "-q", "-b", "feature")
    with pytest.raises(GitError, match="on refs/heads/feature, not main"):
        ws.merge(h)
    assert git(repo, "rev-parse", "main") == main
    assert _manifest(repo)["r1"]["status"] == "active"


# --------------------------------------------------------------------------- recovery


def test_recover_stale_marks_dead_attempts_and_keeps_committed_branches(repo: Path) -> None:
    """Active attempts of dead runs older than the limit: worktree removed, empty branch deleted, `stale`."""
    clock = ManualClock(T0)
    ws = GitWorkspace(repo, clock=clock)
    empty = ws.prepare("dead-empty", "p")
    done = ws.prepare("dead-committed", "p")
    write(Path(done.path), "src/app.py", "work\n")
    ws.diff(done)
    ws.finish(done, "active", commit_message="work")
    ws.prepare("live", "p")
    clock.advance(3600)
    ws.prepare("young", "p")
    assert sorted(ws.recover_stale(1800, {"live"})) == ["dead-committed", "dead-empty"]
    statuses = {k: v["status"] for k, v in _manifest(repo).items()}
    assert statuses == {"dead-empty": "stale", "dead-committed": "stale", "live": "active", "young": "active"}
    assert not Path(empty.path).exists() and not Path(done.path).exists()
    assert not _has_branch(repo, "loop/dead-empty")
    assert _has_branch(repo, "loop/dead-committed")
    assert parse_manifest((repo / ".loop-worktrees" / "manifest.json").read_text()).get("live") is not None


# --------------------------------------------------------------------------- worktree integrity (issue 10)


@pytest.mark.parametrize("tamper", ["gitdir-pointer", "dir", "symlink", "admin-commondir", "admin-gitdir",
                                    "admin-head", "config-worktree"])
def test_a_tampered_worktree_link_is_refused_then_repaired(tmp_path: Path, tamper: str) -> None:
    """No runtime git command runs in a worktree whose `.git` link was changed; `integrity` reports
    and repairs it, so holding the attempt never touches the user's checkout."""
    repo = make_repo(tmp_path / "repo", {"a.py": "a = 1\n"})
    ws = GitWorkspace(repo)
    h = ws.prepare("r-a1", "p")
    wt = Path(h.path)
    admin = repo / ".git" / "worktrees" / "r-a1"
    head_before = (repo / ".git" / "HEAD").read_text()
    if tamper == "gitdir-pointer":
        (wt / ".git").write_text("gitdir: ../../.git\n")
    elif tamper == "dir":
        (wt / ".git").unlink()
        (wt / ".git").mkdir()
    elif tamper == "symlink":
        (wt / ".git").unlink()
        (wt / ".git").symlink_to("../../.git")
    elif tamper == "admin-commondir":
        (admin / "commondir").write_text("/tmp\n")
    elif tamper == "admin-gitdir":
        (admin / "gitdir").write_text(str(repo / ".git") + "\n")
    elif tamper == "admin-head":
        (admin / "HEAD").write_text("ref: refs/heads/main\n")
    else:
        (admin / "config.worktree").write_text("[core]\n\thooksPath = /tmp\n")
    write(wt, "a.py", "a = 2\n")
    with pytest.raises(GitError, match="tampered"):
        ws.diff(h)
    assert ws.integrity(h)
    assert ws.integrity(h) == ()  # repaired
    assert ws.diff(h).touched_paths == ("a.py",)
    ws.finish(h, "escalated")
    assert (repo / ".git" / "HEAD").read_text() == head_before
    assert git(repo, "diff", "--cached", "--name-only") == ""


def test_nested_git_entries_are_found_even_when_ignored(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "a = 1\n", ".gitignore": "build/\n"})
    ws = GitWorkspace(repo)
    h = ws.prepare("r-a1", "p")
    wt = Path(h.path)
    write(wt, "build/deep/.git", "gitdir: ../../../../.git\n")
    write(wt, "sub/.GIT/config", "[core]\n")
    (wt / "lnk").mkdir()
    (wt / "lnk" / ".git").symlink_to("../../../.git")
    assert ws.nested_git(h) == ["build/deep/.git", "lnk/.git", "sub/.GIT"]
    problems = ws.integrity(h)
    assert len(problems) == 3 and all("nested git entry" in p for p in problems)
    assert ws.nested_git(h) == []  # moved to quarantine, not deleted
    assert any((repo / ".loop-runtime" / "quarantine").rglob("config"))


def test_an_index_flag_cannot_hide_an_edit_from_the_diff(tmp_path: Path) -> None:
    """assume-unchanged / skip-worktree set in the worktree's index does not hide a change."""
    repo = make_repo(tmp_path / "repo", {"a.py": "a = 1\n", "b.py": "b = 1\n"})
    ws = GitWorkspace(repo)
    h = ws.prepare("r-a1", "p")
    wt = Path(h.path)
    write(wt, "a.py", "a = 2\n")
    write(wt, "b.py", "b = 2\n")
    git(wt, "update-index", "--assume-unchanged", "a.py")
    git(wt, "update-index", "--skip-worktree", "b.py")
    assert ws.diff(h).touched_paths == ("a.py", "b.py")
