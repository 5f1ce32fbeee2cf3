"""core.shim_policy: which git/gh calls an agent may make at each level (pure; the shims ask it)."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.core.shim_policy import GIT_READ_ONLY, decide, decide_gh, decide_git

OWN = "loop/daily-triage-20260101T000000Z-abc123-a1"


def git(cmd: str, level: str, branch: str | None = OWN) -> bool:
    return decide_git(shlex.split(cmd), level=level, branch=branch).allowed


def gh(cmd: str, level: str, branch: str | None = OWN) -> bool:
    return decide_gh(shlex.split(cmd), level=level, branch=branch).allowed


READS = ["status", "status --short", "diff HEAD~1", "log --oneline -5", "show HEAD:README.md", "branch", "branch -a",
         "branch --list 'loop/*'", "tag", "tag -l", "remote -v", "config --get user.name", "config --list",
         "config user.name", "-c core.hooksPath=/dev/null -c core.fsmonitor= config user.name", "config get user.name",
         "stash list", "worktree list", "rev-parse HEAD", "-C sub log", "--no-pager diff", "grep foo", "blame x.py",
         "ls-files", "--version", "symbolic-ref HEAD", "reflog"]
MUTATING = ["commit -m x", "push origin HEAD", f"push origin {OWN}", "tag v1", "tag -d v1", "reset --hard HEAD~1",
            "reset --hard origin/main", "branch -D main", "branch new", "checkout main", "switch -c x",
            "config user.name x", "config --unset user.name", "config --add x.y z", "config edit", "config -e",
            "config set user.name x", "config --file f user.name", "remote add evil https://x", "stash", "update-ref refs/heads/main HEAD",
            "push --force origin main", "rebase main", "add -A", "clean -fdx", "gc"]


@pytest.mark.parametrize("cmd", READS)
def test_read_only_git_is_allowed_at_every_level(cmd: str) -> None:
    for level in ("L0", "L1", "L2", "L3"):
        assert git(cmd, level), (cmd, level)


@pytest.mark.parametrize("cmd", MUTATING)
def test_l1_denies_every_mutating_git_form(cmd: str) -> None:
    d = decide_git(shlex.split(cmd), level="L1", branch=OWN)
    assert not d.allowed and d.mutating


def test_l2_commits_in_the_worktree_and_pushes_only_its_own_branch() -> None:
    for cmd in ("add -A", "commit -m fix", "commit --amend --no-edit", "restore x.py", "checkout -- x.py",
                "reset --hard", "reset HEAD~1", "rm old.py", "mv a b", f"push origin {OWN}",
                f"push -u origin HEAD:{OWN}", f"push origin +{OWN}", f"push origin refs/heads/{OWN}"):
        assert git(cmd, "L2"), cmd
    for cmd in ("push", "push origin", "push origin main", "push origin HEAD:main", f"push origin {OWN} main",
                "push --all origin", "push --tags origin", f"push --mirror origin {OWN}",
                f"push origin :{OWN}", f"push --delete origin {OWN}", "push origin loop/someone-else",
                f"push origin {OWN}:loop/other", "tag v1", "checkout main", "checkout -b x", "switch x",
                "reset --hard origin/main", "branch -f main HEAD", "update-ref refs/heads/main HEAD",
                "config core.hooksPath /tmp", "remote set-url origin x", "stash", "notes add -m x",
                f"-C /elsewhere commit -m x", "-c core.hooksPath=/tmp commit -m x", "--git-dir=/x/.git commit -m x"):
        assert not git(cmd, "L2"), cmd


def test_push_needs_the_worktree_to_be_on_a_loop_branch() -> None:
    assert not git("push origin main", "L2", branch="main")
    assert not git("push origin HEAD", "L2", branch=None)


def test_unknown_forms_fail_closed() -> None:
    for cmd in ("frobnicate", "my-alias", "--weird-global status", "filter-branch --all", "replace a b"):
        for level in ("L1", "L2", "L3"):
            assert not git(cmd, level), (cmd, level)
    assert not gh("frob x", "L3") and not gh("extension install x/y", "L3")


def test_gh_reads_everywhere_mutations_by_level() -> None:
    for cmd in ("pr view 1", "pr list", "issue list --json number", "api repos/o/r/pulls", "run list",
                "release list", "search issues bug", "-R o/r pr view 3", "--version"):
        for level in ("L1", "L2", "L3"):
            assert gh(cmd, level), (cmd, level)
    mutations = ("pr create --fill", "pr merge 3", "issue close 1", "issue comment 1 -b hi", "release create v1",
                 "repo delete o/r --yes", "api -X POST repos/o/r/issues", "api repos/o/r/issues -f title=x",
                 "api graphql -f query=mutation{x}", "secret set X", "pr comment 1 -b x", "label create x")
    for cmd in mutations:
        for level in ("L1", "L2"):
            assert not gh(cmd, level), (cmd, level)
    assert gh("pr create --fill", "L3") and gh(f"pr create --head {OWN}", "L3")
    assert not gh("pr create --head main", "L3")
    merge = decide_gh(["pr", "merge", "3"], level="L3", branch=OWN)
    assert merge.allowed and merge.needs_gate == "auto-merge"
    for cmd in ("issue close 1", "issue comment 1 -b hi", "release create v1", "api -X DELETE repos/o/r"):
        assert not gh(cmd, "L3"), cmd


def test_other_tools_are_denied() -> None:
    assert not decide("curl", ["http://x"], level="L3").allowed


WORDS = st.sampled_from(["commit", "push", "tag", "reset", "--hard", "origin", "main", OWN, "HEAD", "-m", "x",
                         "-C", "/tmp", "-c", "a=b", "--", "branch", "-D", "config", "status", "log", "--delete",
                         "+main", f"HEAD:{OWN}", "checkout", "-b", "pr", "merge", "create", "api", "-X", "POST",
                         "issue", "close", "release", "--force", "--all", "stash", "rebase", "update-ref"])


@given(st.lists(WORDS, max_size=7))
def test_l1_never_allows_a_mutation(argv: list[str]) -> None:
    """Property: whatever the words, L1 allows only decisions that are not mutating."""
    for tool in ("git", "gh"):
        d = decide(tool, argv, level="L1", branch=OWN)
        assert not (d.allowed and d.mutating)


@given(st.lists(WORDS, max_size=7))
def test_an_allowed_git_push_only_names_the_own_branch(argv: list[str]) -> None:
    """Property: any push the policy allows (at any level) has only own-branch refspecs."""
    for level in ("L2", "L3"):
        d = decide_git(["push", *argv], level=level, branch=OWN)
        if d.allowed:
            specs = [a for a in argv if not a.startswith("-")][1:]
            assert specs and all(s.lstrip("+").split(":")[-1] in (OWN, f"refs/heads/{OWN}") for s in specs)
            assert not {"--all", "--delete", "--mirror", "--tags"} & set(argv)


@given(st.sampled_from(sorted(GIT_READ_ONLY)), st.lists(WORDS, max_size=4))
def test_read_only_subcommands_are_never_mutating(sub: str, rest: list[str]) -> None:
    d = decide_git([sub, *rest], level="L1")
    assert d.allowed and not d.mutating
