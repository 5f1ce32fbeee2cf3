"""The one locked read-modify-write: reads happen inside the lock, writes are atomic, waits are bounded."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loop_runtime.adapters import locked_files
from loop_runtime.adapters.locked_files import FileLocked, atomic_write, lock_file_for, locked, update
from loop_runtime.adapters.mock import MemoryStateWriter
from loop_runtime.adapters.state_files import FileStateWriter
from loop_runtime.errors import ConfigError, GateDenied


def _increment(text: str | None) -> str:
    n = int(text or "0")
    time.sleep(0.0005)  # widen the read→write window: a lost update would show
    return str(n + 1)


def test_two_threads_incrementing_through_update_never_lose_one(tmp_path: Path) -> None:
    """The read is inside the lock: 2 threads × 150 increments = exactly 300."""
    target = tmp_path / "counter.txt"
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(150):
                update(tmp_path, target, _increment)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert target.read_text() == "300"


def test_state_writer_update_is_locked_across_threads(tmp_path: Path) -> None:
    """FileStateWriter.update (the port every engine write goes through) has the same guarantee."""
    w = FileStateWriter(tmp_path)
    threads = [threading.Thread(target=lambda: [w.update("n.txt", _increment) for _ in range(100)])
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (tmp_path / "n.txt").read_text() == "300"


def test_memory_writer_update_is_atomic_too() -> None:
    w = MemoryStateWriter()
    threads = [threading.Thread(target=lambda: [w.update("n", _increment) for _ in range(100)]) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert w.read("n") == "300"


_HOLDER = """
import sys, time
from pathlib import Path
from loop_runtime.adapters.locked_files import locked
root, target = Path(sys.argv[1]), Path(sys.argv[2])
with locked(root, target):
    (root / "held").write_text("1")
    time.sleep(float(sys.argv[3]))
"""


def _hold_lock_in_another_process(root: Path, target: Path, seconds: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(root), str(target), str(seconds)])
    deadline = time.monotonic() + 30
    while not (root / "held").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "lock holder did not start"
        time.sleep(0.01)
    return proc


def test_lock_timeout_is_one_clear_line(tmp_path: Path) -> None:
    target = tmp_path / "loop-run-log.md"
    target.write_text("before\n")
    holder = _hold_lock_in_another_process(tmp_path, target, 5)
    try:
        t0 = time.monotonic()
        with pytest.raises(FileLocked) as err:
            update(tmp_path, target, lambda t: "after\n", timeout_s=0.3)
        assert time.monotonic() - t0 < 3
    finally:
        holder.kill()
        holder.wait()
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("loop-run-log.md: locked by another process for 0s") or "locked by another process" in msg
    assert "loop-run-log.md" in msg
    assert target.read_text() == "before\n"  # nothing written on timeout


def test_lock_timeout_from_the_cli_is_exit_1_one_line(tmp_path: Path) -> None:
    """A tick that cannot get the run log's lock fails with one line and exit 1, not a traceback."""
    from tests.conftest import run_cli

    (tmp_path / "STATE.md").write_text("# Loop State\n")
    holder = _hold_lock_in_another_process(tmp_path, tmp_path / "loop-run-log.md", 20)
    try:
        proc = run_cli("run", "daily-triage", "--scenario", "report-only", "--log-format", "none", cwd=tmp_path,
                       env={"LOOP_RUNTIME_LOCK_TIMEOUT_S": "0.5"})
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "loop-run-log.md" in lines[0] and "locked by another process for" in lines[0]


def test_bad_lock_timeout_env_names_the_variable(tmp_path: Path) -> None:
    os.environ["LOOP_RUNTIME_LOCK_TIMEOUT_S"] = "soon"
    try:
        with pytest.raises(ConfigError, match="LOOP_RUNTIME_LOCK_TIMEOUT_S"):
            update(tmp_path, tmp_path / "x", lambda t: "x")
    finally:
        del os.environ["LOOP_RUNTIME_LOCK_TIMEOUT_S"]


def test_lock_files_live_under_loop_runtime_and_git_ignores_them(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    update(tmp_path, tmp_path / "STATE.md", lambda t: "# s\n")
    update(tmp_path, tmp_path / "docs" / "last-run.json", lambda t: "{}\n")
    assert lock_file_for(tmp_path, tmp_path / "STATE.md").parent == tmp_path / ".loop-runtime" / "locks"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")] == []
    status = subprocess.run(["git", "status", "--porcelain", "--ignored=no"], cwd=tmp_path, capture_output=True,
                            text=True, check=True).stdout
    assert ".loop-runtime" not in status and ".lock" not in status
    assert sorted(status.split()) == sorted(["??", "STATE.md", "??", "docs/"])


def test_atomic_write_keeps_the_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    f = tmp_path / "STATE.md"
    f.write_text("old")
    f.chmod(0o640)
    atomic_write(f, "new")
    assert f.read_text() == "new" and stat.S_IMODE(f.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["STATE.md"]


def test_a_new_file_gets_the_umask_default_not_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "new.md", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.md").stat().st_mode) == 0o644


def test_update_that_raises_writes_nothing(tmp_path: Path) -> None:
    f = tmp_path / "loop-ledger.json"
    f.write_text("{}")

    def boom(text: str | None) -> str:
        raise ConfigError("loop-ledger.json", "attempts", "many")

    with pytest.raises(ConfigError):
        update(tmp_path, f, boom)
    assert f.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == [".loop-runtime",
                                                                                     "loop-ledger.json"]


def test_update_returning_none_or_same_text_does_not_touch_the_file(tmp_path: Path) -> None:
    f = tmp_path / "docs-last-run.json"
    assert update(tmp_path, f, lambda t: None) is None and not f.exists()
    f.write_text("same")
    before = f.stat().st_mtime_ns
    time.sleep(0.01)
    assert update(tmp_path, f, lambda t: t) == "same"
    assert f.stat().st_mtime_ns == before


def test_loop_context_daily_spend_lock_is_honoured(tmp_path: Path) -> None:
    """loop-context's `.loop-context/.daily-spend.<p>.lock` (exclusive create) blocks our write while fresh."""
    spend = tmp_path / ".loop-context" / "daily-spend.ci-sweeper.json"
    spend.parent.mkdir()
    spend.write_text('{"date": "2026-11-30", "tokensUsedToday": 5}')
    theirs = tmp_path / ".loop-context" / ".daily-spend.ci-sweeper.lock"
    theirs.write_text("4242\n")
    with pytest.raises(FileLocked, match="daily-spend.ci-sweeper.json"):
        update(tmp_path, spend, lambda t: "{}", timeout_s=0.3)
    assert theirs.exists() and spend.read_text().endswith("5}")
    # and we take it the same way while we write, then remove it
    seen: list[bool] = []
    theirs.unlink()
    update(tmp_path, spend, lambda t: (seen.append(theirs.exists()), "{}")[1])
    assert seen == [True] and not theirs.exists() and spend.read_text() == "{}"


def test_a_stale_loop_context_lock_is_broken_after_30s(tmp_path: Path) -> None:
    spend = tmp_path / ".loop-context" / "daily-spend.p.json"
    spend.parent.mkdir()
    theirs = tmp_path / ".loop-context" / ".daily-spend.p.lock"
    theirs.write_text("1\n")
    old = time.time() - locked_files.ECOSYSTEM_STALE_S - 5
    os.utime(theirs, (old, old))
    update(tmp_path, spend, lambda t: "{}", timeout_s=1)
    assert spend.read_text() == "{}" and not theirs.exists()


def test_the_write_allowlist_still_applies_to_update(tmp_path: Path) -> None:
    w = FileStateWriter(tmp_path, writable=("STATE.md",))
    with pytest.raises(GateDenied):
        w.update("src/app.py", lambda t: "x")
    assert not (tmp_path / "src").exists()


def test_state_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "STATE.md").mkdir()
    with pytest.raises(ConfigError, match="directory"):
        FileStateWriter(tmp_path).update("STATE.md", lambda t: "x")


def test_locked_is_reentrant_free_for_different_files(tmp_path: Path) -> None:
    """Holding one file's lock never blocks another file (one lock per target)."""
    with locked(tmp_path, tmp_path / "a"):
        update(tmp_path, tmp_path / "b", lambda t: "b", timeout_s=0.5)
    assert (tmp_path / "b").read_text() == "b"


def test_a_symlinked_file_and_its_target_share_one_lock_and_the_link_survives(tmp_path: Path) -> None:
    (tmp_path / "real-state.md").write_text("0")
    (tmp_path / "STATE.md").symlink_to("real-state.md")
    via_link = FileStateWriter(tmp_path)
    threads = [threading.Thread(target=lambda: [update(tmp_path, tmp_path / "STATE.md", _increment)
                                                for _ in range(100)]),
               threading.Thread(target=lambda: [via_link.update("real-state.md", _increment) for _ in range(100)])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (tmp_path / "STATE.md").is_symlink() and (tmp_path / "real-state.md").read_text() == "200"


def test_the_guard_ignores_another_loops_temp_files_but_not_look_alikes(tmp_path: Path) -> None:
    """A concurrent tick's temp file must not read as an agent's outside write (it escalated an L2 tick)."""
    import fnmatch
    import tempfile

    from loop_runtime.app.runner import runtime_written
    from loop_runtime.app.runtime import load_project

    ignore = runtime_written(load_project(tmp_path))
    fd, tmp = tempfile.mkstemp(prefix=".STATE.md" + locked_files.TEMP_MARK, suffix=".tmp", dir=tmp_path)
    os.close(fd)
    for name in (Path(tmp).name, "docs/.last-run.json.loop-runtime-x1.tmp", ".loop-run-log.md.loop-runtime-q.tmp",
                 ".loop-pause-all.loop-runtime-z.tmp"):
        assert any(fnmatch.fnmatchcase(name, pat) for pat in ignore), name
    for name in ("src/.STATE.md.loop-runtime-x.tmp.py", "evil.py", ".STATE.md.other.tmp", "src/app.tmp"):
        assert not any(fnmatch.fnmatchcase(name, pat) for pat in ignore), name
