"""Spine pushes from a worker clone (no Temporal needed): the ecosystem's commit-and-push, retried on a
non-fast-forward, merged with a concurrent push (the run log as a union), idempotent by its trailer."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from loop_runtime.temporal import clones
from loop_runtime.temporal.types import SpineFile
from tests.support.gitrepo import git, make_repo
from tests.support.temporal import MARKER, run_log_entries, show

LOG = f"# Loop Run Log — origin\n\n## Recent Runs\n\n{MARKER}\n"


def origin(tmp_path: Path) -> Path:
    seed = make_repo(tmp_path / "seed", {"loop-run-log.md": LOG, "STATE.md": "# State\n\nnothing\n"})
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(bare)], check=True)
    return bare


def entry(run_id: str) -> str:
    return f'{{"run_id":"{run_id}","pattern":"p","outcome":"no-op"}}\n'


def push(tmp_path: Path, bare: Path, worker: str, run_id: str, *, state: str | None = None) -> tuple:
    files = [SpineFile("loop-run-log.md", LOG, LOG + entry(run_id))]
    if state is not None:
        files.append(SpineFile("STATE.md", "# State\n\nnothing\n", state))
    key = clones.project_key(str(bare))
    return clones.push_files(tmp_path / worker, str(bare), key, "main", files, f"loop(p): no-op {run_id}",
                             f"Loop-Run: p {run_id}")


def test_a_push_lands_once_and_a_retried_push_finds_its_commit(tmp_path: Path) -> None:
    bare = origin(tmp_path)
    commit, attempts, already, _ = push(tmp_path, bare, "w1", "r1")
    assert commit and attempts == 1 and not already
    again = push(tmp_path, bare, "w2", "r1")  # another worker retries the same push (the first one died after it)
    assert again[0] == commit and again[2] is True
    assert [e["run_id"] for e in run_log_entries(show(bare, "loop-run-log.md"))] == ["r1"]
    assert git(bare, "rev-list", "--count", "main") == "2"


def test_concurrent_pushes_from_two_workers_both_land_with_both_run_log_entries(tmp_path: Path) -> None:
    """Eight pushes from two workers at once: non-fast-forwards are retried, the run log is merged."""
    bare = origin(tmp_path)
    errors: list[BaseException] = []

    def worker(name: str, ids: list[str]) -> None:
        try:
            for i in ids:
                push(tmp_path, bare, name, i)
        except BaseException as e:  # noqa: BLE001 — reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(f"w{n}", [f"r{n}-{i}" for i in range(4)])) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    ids = sorted(e["run_id"] for e in run_log_entries(show(bare, "loop-run-log.md")))
    assert ids == sorted(f"r{n}-{i}" for n in (1, 2) for i in range(4))


def test_a_real_conflict_in_a_state_file_is_not_retried_forever(tmp_path: Path) -> None:
    bare = origin(tmp_path)
    push(tmp_path, bare, "w1", "r1", state="# State\n\nfrom w1\n")
    with pytest.raises(clones.PushConflict, match="STATE.md"):
        push(tmp_path, bare, "w2", "r2", state="# State\n\nfrom w2\n")


def test_a_crashed_ticks_leftovers_are_reset_before_the_next_one(tmp_path: Path) -> None:
    bare = origin(tmp_path)
    key = clones.project_key(str(bare))
    root = clones.sync_clone(tmp_path / "w", str(bare), key, "main")
    (root / "STATE.md").write_text("half written")
    (root / "ci-sweeper-state.md").write_text("untracked leftover")
    (root / ".loop-runtime").mkdir()
    (root / ".loop-runtime" / "runtime.db").write_text("kept")
    (root / "loop-ledger.json").write_text("leftover the remote now has too")
    other = clones.sync_clone(tmp_path / "other", str(bare), key, "main")  # meanwhile another worker pushed it
    (other / "loop-ledger.json").write_text("[]\n")
    git(other, "add", "loop-ledger.json")
    git(other, "commit", "-q", "-m", "ledger")
    git(other, "push", "-q", "origin", "HEAD:main")
    again = clones.sync_clone(tmp_path / "w", str(bare), key, "main")
    assert again == root and root.name == "origin"
    assert (root / "STATE.md").read_text() == "# State\n\nnothing\n"
    assert not (root / "ci-sweeper-state.md").exists()
    assert (root / "loop-ledger.json").read_text() == "[]\n"
    assert (root / ".loop-runtime" / "runtime.db").read_text() == "kept"


@pytest.mark.parametrize("url, name", [("https://github.com/acme/web.git", "web"), ("git@host:org/api.git", "api"),
                                       ("/srv/repos/origin.git/", "origin"), ("../x", "x")])
def test_keys_and_clone_names_follow_the_repository(url: str, name: str) -> None:
    assert clones.repo_name(url) == name
    key = clones.project_key(url)
    assert key.startswith(name.lower()) and key == clones.project_key(url)
    assert clones.project_key(url) != clones.project_key(url + "2")


def test_heartbeat_details_carry_no_secret(tmp_path: Path) -> None:
    """What a tick sends to Temporal's history is redacted; a worktree patch that adds a secret is not sent
    at all (that attempt's calls then run again on a retry instead of being replayed)."""
    from datetime import UTC, datetime

    from loop_runtime.temporal.activities import HeartbeatJournal

    class Inner:
        def record(self, *a: object) -> None:
            pass

    wt = make_repo(tmp_path / "wt", {"app.py": "x = 1\n"})
    secret = "sk-live-0123456789abcdefghij"
    j = HeartbeatJournal(Inner(), {}, {}, (secret,))
    now = datetime.now(UTC)
    j.record("t", "agent:triage", {"status": "ok", "text": f"found key {secret} in logs"}, now)
    j.record("t", "workspace", {"attempt": 1, "run_id": "r1", "path": str(wt)}, now)
    (wt / "app.py").write_text("x = 2\n")
    j.record("t", "agent:implementer:1", {"status": "ok", "text": "done"}, now)
    assert secret not in json.dumps(j.details())
    assert j.details()["patches"]["1"]["patch"].count("+x = 2") == 1
    j.record("t", "workspace", {"attempt": 2, "run_id": "r2", "path": str(wt)}, now)
    (wt / "app.py").write_text(f"KEY = '{secret}'\n")
    j.record("t", "agent:implementer:2", {"status": "ok", "text": "done"}, now)
    j.record("t", "agent:verifier:2", {"status": "ok", "text": "## Verdict: APPROVE"}, now)
    details = j.details()
    assert secret not in json.dumps(details)
    assert "2" not in details["patches"] and "implementer:2" not in details["replay"]
    assert "verifier:2" not in details["replay"] and "workspace:2" not in details["replay"]
    assert {"triage", "implementer:1", "workspace:1"} <= set(details["replay"])
