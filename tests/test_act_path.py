"""The act path for real: git worktrees, the project's own failing test, diff gates, the verifier,
escalation held in the store and approved or rejected later from another process (issue: act path)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.gitrepo import git, make_repo

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def project(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    files = {
        "calc.py": BUGGY,
        "tests/test_calc.py": TEST,
        "conftest.py": "",
        "loop-runtime.toml": f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"\n',
        **(extra or {}),
    }
    return make_repo(tmp_path / "repo", files)


def scenario(tmp_path: Path, implementer: list[dict], verifier: list[dict] | None = None) -> str:
    doc = {
        "triage": {"decision": "act", "summary": "CI red", "tokens": 1000,
                   "items": [{"id": "CI-1", "title": "test_add fails", "detail": "add() subtracts", "files": ["calc.py"]}]},
        "implementer": [{"tokens": 3000, **i} for i in implementer],
        "verifier": verifier or [{"verdict": "APPROVE", "tokens": 1000}],
    }
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(doc))
    return str(path)


def run(repo: Path, scen: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("run", "ci-sweeper", "--level", "L2", "--scenario", scen, *extra, cwd=repo, env=env)


def status_porcelain(repo: Path) -> str:
    return git(repo, "status", "--porcelain")


def test_real_fix_is_committed_on_the_loop_branch_and_base_is_untouched(tmp_path: Path) -> None:
    """Fix → the project's tests pass in the worktree → APPROVE → commit on loop/<id>; main unchanged."""
    repo = project(tmp_path)
    base = git(repo, "rev-parse", "main")
    proc = run(repo, scenario(tmp_path, [{"files": {"calc.py": FIXED}}]))
    assert proc.returncode == 0, proc.stderr
    assert "tests: passed" in proc.stdout and "committed: safe + allowlisted" in proc.stdout
    assert git(repo, "rev-parse", "main") == base
    assert (repo / "calc.py").read_text() == BUGGY
    branches = git(repo, "branch", "--list", "loop/*", "--format=%(refname:short)").splitlines()
    assert len(branches) == 1
    assert git(repo, "show", f"{branches[0]}:calc.py") + "\n" == FIXED
    body = git(repo, "log", "-1", "--format=%B", branches[0])
    assert "Loop-Run-Id:" in body and "Loop-Pattern: ci-sweeper" in body
    patches = list((repo / ".loop-runtime" / "patches").glob("*.patch"))
    assert len(patches) == 1 and "+    return a + b" in patches[0].read_text()
    entry = json.loads((repo / "loop-run-log.md").read_text().strip().splitlines()[-1])
    assert entry["outcome"] == "fix-proposed" and entry["tokens_estimate"] == 5000
    assert status_porcelain(repo).splitlines() and all(
        line[3:] in {"ci-sweeper-state.md", "loop-run-log.md", "loop-ledger.json"}
        for line in status_porcelain(repo).splitlines())


def test_fix_fails_tests_twice_then_passes(tmp_path: Path) -> None:
    """Two wrong fixes fail the real tests (REJECT even if the verifier approved); the third passes."""
    repo = project(tmp_path)
    wrong = {"files": {"calc.py": "def add(a, b):\n    return a * b\n"}}
    proc = run(repo, scenario(tmp_path, [wrong, wrong, {"files": {"calc.py": FIXED}}]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("tests: FAILED") == 2 and "tests: passed" in proc.stdout
    ledger = json.loads((repo / "loop-ledger.json").read_text())
    assert [a["outcome"] for a in ledger["attempts"]] == ["failure", "failure", "success"]
    assert "assert" in ledger["attempts"][0]["error"]
    manifest = json.loads((repo / ".loop-worktrees" / "manifest.json").read_text())
    assert [w["status"] for w in manifest["worktrees"]] == ["rejected", "rejected", "active"]


def test_three_rejections_escalate_with_a_summary(tmp_path: Path) -> None:
    """Three REJECTs → escalated, exit 2, an entry in ci-sweeper's own Active Failures, held in the store (R16, R26)."""
    repo = project(tmp_path)
    proc = run(repo, scenario(tmp_path, [{"files": {"calc.py": FIXED}}],
                              [{"verdict": "REJECT", "reasons": ["style"], "tokens": 1000}]))
    assert proc.returncode == 2, proc.stderr
    esc = json.loads(run_cli("escalations", "--json", cwd=repo).stdout)["escalations"]
    assert len(esc) == 1 and esc[0]["reason"] in ("max-attempts", "breaker:frustration", "breaker:stagnation")
    state = (repo / "ci-sweeper-state.md").read_text()
    assert "- [ ] CI-1 — " in state.split("## Active Failures", 1)[1].split("## Watch", 1)[0]
    assert "## High Priority" not in state  # daily-triage's sections do not belong in ci-sweeper's file


@pytest.mark.parametrize("files,reason", [
    ({".env": "TOKEN=x\n"}, "gate:denylist"),
    ({"secrets/prod.json": "{}"}, "gate:denylist"),
    ({"gate.yaml": "version: 1\ndenylist: []\n"}, "policy:control-file"),
])
def test_sensitive_or_control_file_edits_escalate(tmp_path: Path, files: dict[str, str], reason: str) -> None:
    """Edits to .env, secrets/ or the loop's own gate.yaml are never committed: the attempt escalates."""
    repo = project(tmp_path, {"gate.yaml": "version: 1\ndenylist: ['**/.env', '**/secrets/**']\n"})
    proc = run(repo, scenario(tmp_path, [{"files": {"calc.py": FIXED, **files}}]))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    esc = json.loads(run_cli("escalations", "--json", cwd=repo).stdout)["escalations"]
    assert esc[0]["reason"] == reason
    assert git(repo, "branch", "--list", "loop/*", "--format=%(refname:short)")  # kept for review
    assert "loop(" not in git(repo, "log", "--all", "--format=%s", "--", *files)  # never committed


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    """A symlink pointing outside the worktree escalates and is never committed."""
    repo = project(tmp_path)
    proc = run(repo, scenario(tmp_path, [{"files": {"calc.py": FIXED}, "symlinks": {"leak": "/etc/passwd"}}]))
    assert proc.returncode == 2
    esc = json.loads(run_cli("escalations", "--json", cwd=repo).stdout)["escalations"]
    assert esc[0]["reason"] == "policy:symlink-escape"


def test_test_deletion_escalates(tmp_path: Path) -> None:
    """Deleting the failing test to go green escalates."""
    repo = project(tmp_path)
    proc = run(repo, scenario(tmp_path, [{"delete": ["tests/test_calc.py"]}]))
    assert proc.returncode == 2
    esc = json.loads(run_cli("escalations", "--json", cwd=repo).stdout)["escalations"]
    assert esc[0]["reason"] == "policy:test-deleted"


def test_agent_writing_into_the_main_checkout_is_restored_and_escalated(tmp_path: Path) -> None:
    """An agent that writes outside its worktree is detected, the checkout restored, the attempt escalated."""
    repo = project(tmp_path)
    proc = run(repo, scenario(tmp_path, [{"files": {"calc.py": FIXED}, "outside": {"calc.py": "hacked\n",
                                                                                     "new.txt": "x\n"}}]))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (repo / "calc.py").read_text() == BUGGY
    assert not (repo / "new.txt").exists()
    esc = json.loads(run_cli("escalations", "--json", cwd=repo).stdout)["escalations"]
    assert esc[0]["reason"] == "outside-change"


def test_approve_from_another_process_commits_exactly_the_held_diff(tmp_path: Path) -> None:
    """An escalated change is approved later by another process: committed as reviewed, no backend call."""
    repo = project(tmp_path)
    proc = run(repo, scenario(tmp_path, [{"files": {"calc.py": FIXED}}],
                              [{"verdict": "ESCALATE_HUMAN", "reasons": ["touches math"], "tokens": 1000}]))
    assert proc.returncode == 2
    (esc,) = json.loads(run_cli("escalations", "--json", cwd=repo).stdout)["escalations"]
    log_before = (repo / "loop-run-log.md").read_text()
    ok = run_cli("approve", esc["id"], cwd=repo)
    assert ok.returncode == 0, ok.stderr
    assert git(repo, "show", f"{esc['branch']}:calc.py") + "\n" == FIXED
    assert (repo / "loop-run-log.md").read_text() == log_before  # no tick, no tokens
    again = run_cli("approve", esc["id"], cwd=repo)
    assert again.returncode == 1 and "already approved" in again.stderr
    assert "Human decision: approved by" in (repo / "ci-sweeper-state.md").read_text()


def test_approve_with_merge_reaches_the_base_branch(tmp_path: Path) -> None:
    """approve --merge merges the held change into main."""
    repo = project(tmp_path)
    run(repo, scenario(tmp_path, [{"files": {"calc.py": FIXED}}],
                       [{"verdict": "ESCALATE_HUMAN", "tokens": 1000}]))
    (esc,) = json.loads(run_cli("escalations", "--json", cwd=repo).stdout)["escalations"]
    for name in ("ci-sweeper-state.md", "loop-run-log.md"):
        git(repo, "add", name)
    git(repo, "commit", "-qm", "loop state")
    ok = run_cli("approve", esc["id"], "--merge", cwd=repo)
    assert ok.returncode == 0, ok.stderr
    assert git(repo, "show", "main:calc.py") + "\n" == FIXED


def test_reject_from_another_process_discards_and_records(tmp_path: Path) -> None:
    """reject --reason discards the held worktree and records the decision in the state file."""
    repo = project(tmp_path)
    run(repo, scenario(tmp_path, [{"files": {"calc.py": FIXED}}], [{"verdict": "ESCALATE_HUMAN", "tokens": 1000}]))
    (esc,) = json.loads(run_cli("escalations", "--json", cwd=repo).stdout)["escalations"]
    ok = run_cli("reject", esc["id"], "--reason", "not this way", cwd=repo)
    assert ok.returncode == 0, ok.stderr
    assert "rejected by" in (repo / "ci-sweeper-state.md").read_text()
    assert "not this way" in (repo / "ci-sweeper-state.md").read_text()
    manifest = json.loads((repo / ".loop-worktrees" / "manifest.json").read_text())
    assert manifest["worktrees"][-1]["status"] == "rejected"
    assert json.loads(run_cli("escalations", "--json", cwd=repo).stdout)["escalations"] == []


def test_l3_merges_only_what_the_auto_merge_allowlist_allows(tmp_path: Path) -> None:
    """L3 + APPROVE + every path in autoMergeAllowlist → merged into main; otherwise only proposed."""
    gate = "version: 1\ndenylist: ['**/.env']\nautoMergeAllowlist: ['docs/**', 'calc.py']\n"
    repo = project(tmp_path, {"gate.yaml": gate, "ci-sweeper-state.md": "# Loop State\n\nLast run: never\n",
                              "loop-run-log.md": "# Log\n\n<!-- Loop appends below this line -->\n"})
    run_cli("run", "ci-sweeper", "--level", "L1", "--scenario", "report-only", cwd=repo)  # own files now dirty
    proc = run_cli("run", "ci-sweeper", "--level", "L3", "--scenario",
                   scenario(tmp_path, [{"files": {"calc.py": FIXED}}]), cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "merged into main" in proc.stdout
    assert git(repo, "show", "main:calc.py") + "\n" == FIXED

    repo2 = project(tmp_path / "two", {"gate.yaml": gate})
    proc2 = run_cli("run", "ci-sweeper", "--level", "L3", "--scenario",
                    scenario(tmp_path, [{"files": {"calc.py": FIXED, "src/extra.py": "x = 1\n"}}]), cwd=repo2)
    assert proc2.returncode == 0, proc2.stdout + proc2.stderr
    assert "not merged" in proc2.stdout
    assert git(repo2, "show", "main:calc.py") + "\n" == BUGGY


def test_l3_with_promotion_yaml_holds_the_merge_without_merge_ready_evidence(tmp_path: Path, fixtures: Path) -> None:
    """When promotion.yaml exists, L3 merges only if promotion is merge-ready; no evidence → not merged (R11)."""
    gate = "version: 1\ndenylist: ['**/.env']\nautoMergeAllowlist: ['calc.py']\n"
    repo = project(tmp_path, {"gate.yaml": gate,
                              "promotion.yaml": (fixtures / "examples__coaligne__promotion.yaml").read_text()})
    proc = run_cli("run", "ci-sweeper", "--level", "L3", "--scenario",
                   scenario(tmp_path, [{"files": {"calc.py": FIXED}}]), cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not merged: promotion.yaml: not merge-ready" in proc.stdout
    assert git(repo, "show", "main:calc.py") + "\n" == BUGGY


def test_guard_ignores_what_the_runtime_itself_writes_during_an_agent_run(tmp_path: Path) -> None:
    """A kill switch, another loop's state file and run-log entry written *by the runtime* (through
    ``locked_files``, which records each write) while an agent runs are not 'outside changes' and are
    never restored away; an agent's own write — of any file, these included — is still caught."""
    from loop_runtime.adapters import locked_files
    from loop_runtime.adapters.guard import GitGuard
    from loop_runtime.app.runner import runtime_written
    from loop_runtime.app.runtime import load_project

    repo = project(tmp_path, {"loop-run-log.md": "# Log\n\n<!-- Loop appends below this line -->\n"})
    guard = GitGuard(repo, ignore=runtime_written(load_project(repo)))
    before = guard.snapshot()
    locked_files.write(repo, repo / "loop-pause-all", "paused\n")
    locked_files.write(repo, repo / "ci-sweeper-state.md", "# Loop State\n")
    locked_files.write(repo, repo / "loop-run-log.md", "# Log\n\n<!-- Loop appends below this line -->\n\n{}\n")
    assert guard.changes(before) == ()
    (repo / "ci-sweeper-state.md").write_text("# Loop State\n- forged by the agent\n")
    assert guard.changes(before)
    (repo / "calc.py").write_text("hacked\n")
    assert guard.changes(before) and guard.restore(before)
    assert (repo / "loop-pause-all").exists() and (repo / "calc.py").read_text() == BUGGY
    assert (repo / "ci-sweeper-state.md").read_text() == "# Loop State\n"  # the runtime's last write


def test_guard_allows_another_loops_l3_merge(tmp_path: Path) -> None:
    """A base-branch move that merges a `merged` loop attempt (another loop at L3) is not undone."""
    from loop_runtime.adapters.git_workspace import GitWorkspace
    from loop_runtime.adapters.guard import GitGuard

    repo = project(tmp_path)
    ws = GitWorkspace(repo)
    handle = ws.prepare("other-loop-a1", "ci-sweeper")
    (Path(handle.path) / "calc.py").write_text(FIXED)
    ws.diff(handle)
    ws.finish(handle, "active", commit_message="fix add")
    guard = GitGuard(repo)
    before = guard.snapshot()
    ws.merge(handle)
    assert guard.changes(before) == ()
    git(repo, "commit", "-q", "--allow-empty", "-m", "agent sneaks a commit onto main")
    assert guard.changes(before)  # a commit on top of the merge is not the merge: still reported
