"""Files the runtime itself writes in the main checkout (state files, run log, ledger,
``docs/last-run.json``, kill switches) and runtime data that decides its next step
(base-test baselines, promotion evidence, the worktree manifest) are watched by content:
a change that is neither the content before the run nor the runtime's last recorded write
is an outside change — restored and reported — while another loop's concurrent runtime
write (recorded under the file's lock by ``locked_files``) is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop_runtime.adapters import locked_files
from loop_runtime.adapters.guard import GitGuard
from loop_runtime import ports
from loop_runtime.adapters.test_runner import ProjectTestRunner
from tests.support.gitrepo import make_repo, write

SPINE = ("loop-run-log.md", "loop-ledger.json", "docs/last-run.json", "loops/state.md", "loop-pause-*")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo", {"README.md": "# demo\n", ".gitignore": ".loop-runtime/\n"})
    for rel, text in (("loop-run-log.md", "# log\n<!-- runs -->\n"), ("loop-ledger.json", "{}\n"),
                      ("docs/last-run.json", "{}\n"), ("loops/state.md", "# state\n")):
        locked_files.write(root, root / rel, text)  # as the runtime writes them
    return root


def _guard(repo: Path) -> GitGuard:
    return GitGuard(repo, ignore=SPINE)


@pytest.mark.parametrize("rel", ["loop-run-log.md", "loop-ledger.json", "docs/last-run.json", "loops/state.md"])
def test_an_agent_rewriting_a_spine_file_is_caught_and_undone(repo: Path, rel: str) -> None:
    guard = _guard(repo)
    before = guard.snapshot()
    write(repo, rel, "forged by the agent\n")
    changes = guard.changes(before)
    assert any(rel in c and "outside the runtime" in c for c in changes), changes
    guard.restore(before)
    assert (repo / rel).read_text() != "forged by the agent\n"
    assert guard.changes(before) == ()


def test_an_agent_deleting_a_spine_file_is_caught_and_undone(repo: Path) -> None:
    guard = _guard(repo)
    before = guard.snapshot()
    (repo / "loop-ledger.json").unlink()
    assert guard.changes(before)
    guard.restore(before)
    assert (repo / "loop-ledger.json").read_text() == "{}\n"


def test_a_concurrent_runtime_write_is_not_an_outside_change(repo: Path) -> None:
    """Another loop appends to the run log and rewrites its state file while this agent runs."""
    guard = _guard(repo)
    before = guard.snapshot()
    locked_files.update(repo, repo / "loop-run-log.md", lambda t: (t or "") + "- run by another loop\n")
    locked_files.write(repo, repo / "loops/state.md", "# state\nnew\n")
    assert guard.changes(before) == ()


def test_an_agent_write_after_a_runtime_write_is_restored_to_the_runtimes_content(repo: Path) -> None:
    guard = _guard(repo)
    before = guard.snapshot()
    locked_files.update(repo, repo / "loop-run-log.md", lambda t: (t or "") + "- another loop\n")
    write(repo, "loop-run-log.md", "# log\n<!-- runs -->\n- agent wiped the history\n")
    assert guard.changes(before)
    guard.restore(before)
    assert (repo / "loop-run-log.md").read_text() == "# log\n<!-- runs -->\n- another loop\n"


def test_a_deleted_kill_switch_is_put_back_and_reported(repo: Path) -> None:
    locked_files.write(repo, repo / "loop-pause-all", "paused by a human\n")
    guard = _guard(repo)
    before = guard.snapshot()
    (repo / "loop-pause-all").unlink()
    assert any("loop-pause-all" in c and "deleted" in c for c in guard.changes(before))
    guard.restore(before)
    assert (repo / "loop-pause-all").read_text() == "paused by a human\n"


def test_a_humans_resume_and_kill_through_the_runtime_are_not_outside_changes(repo: Path) -> None:
    locked_files.write(repo, repo / "loop-pause-all", "paused\n")
    guard = _guard(repo)
    before = guard.snapshot()
    assert locked_files.remove(repo, repo / "loop-pause-all")
    locked_files.write(repo, repo / "loop-pause-p1", "paused p1\n")
    assert guard.changes(before) == ()


def test_a_kill_switch_created_by_the_agent_is_reported_and_kept(repo: Path) -> None:
    guard = _guard(repo)
    before = guard.snapshot()
    write(repo, "loop-pause-all", "agent\n")
    assert any("loop-pause-all" in c and "created" in c for c in guard.changes(before))
    guard.restore(before)
    assert (repo / "loop-pause-all").exists()  # pausing is the safe direction


def test_forging_the_records_alone_is_not_enough_to_hide_a_delete(repo: Path) -> None:
    """Writing a spine file without a matching record is caught even when other records exist."""
    guard = _guard(repo)
    before = guard.snapshot()
    write(repo, "loops/state.md", "# state\nitems cleared\n")
    locked_files.write(repo, repo / "loop-ledger.json", "{\"x\": 1}\n")  # a legit runtime write elsewhere
    changes = guard.changes(before)
    assert len(changes) == 1 and "loops/state.md" in changes[0]


@pytest.mark.parametrize("rel", [".loop-runtime/promotion-evidence.json", ".loop-runtime/test-baselines/abc.json",
                                 ".loop-worktrees/manifest.json"])
def test_runtime_data_forged_during_a_run_is_caught_and_undone(repo: Path, rel: str) -> None:
    guard = _guard(repo)
    before = guard.snapshot()
    write(repo, rel, json.dumps({"forged": True}))
    assert any(rel in c for c in guard.changes(before)), guard.changes(before)
    guard.restore(before)
    assert not (repo / rel).exists()


def test_a_forged_test_baseline_is_not_believed_even_outside_a_guarded_run(tmp_path: Path, repo: Path) -> None:
    """The cache is believed only when it is byte for byte the runtime's last recorded write."""
    cache = repo / ".loop-runtime" / "test-baselines"
    runner = ProjectTestRunner("true", checkout=None, cache_dir=cache)
    real = ports.TestRun(command="true", exit_code=1, passed=False, output="1 failed")
    runner._store("a" * 40, real)
    assert runner._cached("a" * 40) is not None
    path = runner._cache_file("a" * 40)
    assert path is not None
    doc = json.loads(path.read_text())
    doc["passed"], doc["exit_code"] = True, 0
    path.write_text(json.dumps(doc))
    assert runner._cached("a" * 40) is None
    path.unlink()
    fresh = ProjectTestRunner("true", checkout=None, cache_dir=cache)
    fresh_path = fresh._cache_file("b" * 40)
    assert fresh_path is not None
    fresh_path.write_text(path.read_text() if path.exists() else json.dumps(doc | {"base_commit": "b" * 40}))
    assert fresh._cached("b" * 40) is None  # never written by the runtime: no record, not believed


# --------------------------------------------------------------------------- end to end: a real tick


@pytest.mark.parametrize("rel", ["ci-sweeper-state.md", "loop-run-log.md", "loop-ledger.json", "docs/last-run.json",
                                 ".loop-runtime/promotion-evidence.json", ".loop-runtime/test-baselines/f.json"])
def test_an_implementer_rewriting_runtime_files_in_the_main_checkout_escalates(tmp_path: Path, rel: str) -> None:
    from tests.test_git_hijack import FIXED, git, project, scenario, tick

    repo = project(tmp_path)
    base = git(repo, "rev-parse", "HEAD")
    spec = {"files": {"calc.py": FIXED}, "outside": {rel: "forged by the implementer\n"}}
    proc = tick(repo, scenario(tmp_path, spec), "L3")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "outside" in proc.stdout
    assert (repo / rel).exists() is False or "forged by the implementer" not in (repo / rel).read_text()
    assert git(repo, "rev-parse", "main") == base


def test_a_guard_reading_at_any_step_of_another_loops_write_sees_no_outside_change(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The class of race behind a flaky concurrent run: another process's guard reads a spine file
    and its write record while this process is between two steps of a runtime write. Every step of
    the write (record announced with the new content kept, file replaced, record settled) is interrupted here by a
    full outside-change check, which must find nothing."""
    guard = _guard(repo)
    before = guard.snapshot()
    seen: list[tuple[str, ...]] = []
    real_replace, real_quick = locked_files.atomic_write, locked_files._quick_replace

    def check_after(fn):  # noqa: ANN001, ANN202
        def step(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            fn(*args, **kwargs)
            seen.append(guard.changes(before))
        return step

    monkeypatch.setattr(locked_files, "atomic_write", check_after(real_replace))
    monkeypatch.setattr(locked_files, "_quick_replace", check_after(real_quick))
    locked_files.update(repo, repo / "loop-run-log.md", lambda t: (t or "") + "- another loop\n")
    locked_files.write(repo, repo / "loops/state.md", "# state\nrewritten\n")
    locked_files.remove(repo, repo / "docs/last-run.json")
    locked_files.write(repo, repo / "loop-pause-ci", "paused\n")
    # three writes × (announce, replace, settle) + one delete × (announce, settle)
    assert len(seen) == 11 and all(c == () for c in seen), seen


def test_an_agent_write_made_while_a_runtime_write_is_in_flight_is_still_caught(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """During a runtime write both the old and the new content are acceptable, and nothing else."""
    guard = _guard(repo)
    before = guard.snapshot()
    seen: list[tuple[str, ...]] = []
    real = locked_files.atomic_write

    def forged_in_the_middle(path, data):  # noqa: ANN001, ANN202
        write(repo, "loop-run-log.md", "forged while the runtime wrote\n")
        seen.append(guard.changes(before))
        real(path, data)

    monkeypatch.setattr(locked_files, "atomic_write", forged_in_the_middle)
    locked_files.update(repo, repo / "loop-run-log.md", lambda t: (t or "") + "- another loop\n")
    assert seen and any("loop-run-log.md" in c for c in seen[0]), seen


def test_guards_and_writers_in_separate_processes_never_disagree(repo: Path) -> None:
    """Real concurrency: a process rewrites the run log through the runtime's writer as fast as it
    can while this process takes guard snapshots; no check may report a change."""
    import subprocess
    import sys

    script = ("import sys; from pathlib import Path; from loop_runtime.adapters import locked_files as lf\n"
              "root = Path(sys.argv[1])\n"
              "for i in range(300):\n"
              "    lf.update(root, root / 'loop-run-log.md', lambda t, i=i: (t or '') + f'- run {i}\\n')\n")
    writer = subprocess.Popen([sys.executable, "-c", script, str(repo)])
    guard = GitGuard(repo, ignore=(*SPINE, locked_files.temp_pattern("loop-run-log.md")))  # as runtime_written
    reports = []
    try:
        while writer.poll() is None:
            before = guard.snapshot()
            reports.append(guard.changes(before))
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert reports and all(r == () for r in reports), [r for r in reports if r][:3]
