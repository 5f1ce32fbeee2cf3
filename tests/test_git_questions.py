"""``adapters.git``'s questions the application asks (the commit a branch names, where a merge conflicts):
answered by git through the one runner of every git command, never by a raw subprocess elsewhere."""

from __future__ import annotations

from pathlib import Path

from loop_runtime.adapters.git import merge_conflicts, rev_parse
from tests.support.gitrepo import git, make_repo


def test_rev_parse_names_a_branchs_commit_and_none_for_what_is_no_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "1\n"})
    assert rev_parse(repo, "main") == git(repo, "rev-parse", "main")
    assert rev_parse(repo, "loop/gone") is None
    assert rev_parse(repo, "--all") is None  # an option is never taken for a revision
    assert rev_parse(repo, "main:a.txt") is None  # a blob is not a commit


def test_merge_conflicts_lists_conflicting_paths_and_leaves_the_checkout_alone(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "1\n", "b.txt": "b\n"})
    git(repo, "switch", "-q", "-c", "loop/x")
    (repo / "a.txt").write_text("2\n")
    git(repo, "commit", "-qam", "two")
    git(repo, "switch", "-q", "main")
    assert merge_conflicts(repo, "loop/x") == []  # a fast-forward merges cleanly
    (repo / "a.txt").write_text("3\n")
    git(repo, "commit", "-qam", "three")
    head = git(repo, "rev-parse", "HEAD")
    assert merge_conflicts(repo, "loop/x") == ["a.txt"]
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""
    assert merge_conflicts(repo, "--help") == []  # not a revision: git cannot tell, no option is run
