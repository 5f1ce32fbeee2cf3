"""Run ids are unique — in one process, across processes, across ticks in one second — and stay ISO-8601."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.adapters.run_ids import allocate_run_id
from loop_runtime.core.run_ids import RunIdSequence, format_run_id, next_run_id
from loop_runtime.formats.runlog import parse_run_log, parse_run_time
from tests.conftest import run_cli
from tests.support import npm_tools

T0 = datetime(2026, 11, 30, 19, 0, 0, 123456, tzinfo=UTC)
ISO_MS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def test_the_form_is_javascripts_to_iso_string() -> None:
    assert format_run_id(T0) == "2026-11-30T19:00:00.123Z"
    assert next_run_id(T0, None) == "2026-11-30T19:00:00.123Z"


def test_a_clock_that_has_not_moved_still_gets_a_later_id() -> None:
    seq = RunIdSequence()
    ids = [seq.next(T0) for _ in range(5)]
    assert ids == ["2026-11-30T19:00:00.123Z", "2026-11-30T19:00:00.124Z", "2026-11-30T19:00:00.125Z",
                   "2026-11-30T19:00:00.126Z", "2026-11-30T19:00:00.127Z"]


def test_a_clock_that_went_backwards_does_not_reuse_an_id() -> None:
    seq = RunIdSequence()
    first = seq.next(T0)
    assert seq.next(T0 - timedelta(hours=1)) > first


@pytest.mark.parametrize("last", ["garbage", "", "2026-11-30T19:00:00Z", "2026-11-30", "9999-99-99T00:00:00Z"])
def test_an_unreadable_or_older_style_last_id_is_handled(last: str) -> None:
    run_id = next_run_id(T0, last)
    assert parse_run_time(run_id) is not None and run_id >= "2026-11-30T19:00:00.123Z"


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
       st.lists(st.integers(min_value=-5000, max_value=5000), max_size=20))
def test_ids_strictly_increase_and_parse_back(start: datetime, moves_ms: list[int]) -> None:
    seq = RunIdSequence()
    now, ids = start, []
    for move in moves_ms:
        now += timedelta(milliseconds=move)
        ids.append(seq.next(now))
    assert ids == sorted(set(ids))  # strictly increasing, so unique; fixed width, so string order is time order
    for run_id in ids:
        assert parse_run_time(run_id) is not None and len(run_id) == 24


def _allocate_many(root: str, n: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put([allocate_run_id(Path(root), T0) for _ in range(n)])


def test_processes_on_one_project_never_issue_the_same_id(tmp_path: Path) -> None:
    """Four processes, all with a frozen clock, 50 ids each: 200 distinct ids."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_allocate_many, args=(str(tmp_path), 50, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    ids = [i for _ in procs for i in queue.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
    assert len(ids) == 200 and len(set(ids)) == 200


def test_the_run_id_file_keeps_the_users_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        allocate_run_id(tmp_path, T0)
    finally:
        os.umask(old)
    assert (tmp_path / ".loop-runtime" / "last-run-id").stat().st_mode & 0o777 == 0o640


def test_ticks_in_one_second_get_distinct_run_ids_in_the_run_log(tmp_path: Path) -> None:
    """The bug: `run --ticks 3` of a fast no-op wrote one run_id three times."""
    from loop_runtime.adapters.clock import ManualClock
    from loop_runtime.app.runner import LoopRunner, RunOptions
    from loop_runtime.app.runtime import load_project

    project = load_project(tmp_path)
    plan = project.plan("ci-sweeper")
    clock = ManualClock(T0)  # time never moves: the worst case
    for _ in range(2):  # two runners, as two `run` invocations would be
        runner = LoopRunner(project, plan, RunOptions(scenario="noop", clock=clock))
        try:
            for _ in range(2):
                asyncio.run(runner.tick())
        finally:
            runner.store.close()
    ids = [e.run_id for e in parse_run_log((tmp_path / "loop-run-log.md").read_text()).entries]
    assert len(ids) == 4 and len(set(ids)) == 4


def test_cli_ticks_get_distinct_iso_run_ids(tmp_path: Path) -> None:
    proc = run_cli("run", "ci-sweeper", "--scenario", "noop", "--ticks", "3", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    entries = parse_run_log((tmp_path / "loop-run-log.md").read_text()).entries
    ids = [e.run_id for e in entries]
    assert len(ids) == len(set(ids)) >= 1
    import re

    assert all(re.match(ISO_MS, i) for i in ids)


@pytest.mark.parity
def test_loop_audit_and_javascript_read_our_run_ids(tmp_path: Path) -> None:
    """loop-audit counts our run log as fresh activity; `new Date(id).toISOString()` gives the id back exactly."""
    proc = run_cli("run", "ci-sweeper", "--scenario", "noop", "--ticks", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for state in tmp_path.glob("*state*.md"):
        state.unlink()  # only the run log may count as evidence now
    audit = npm_tools.run_tool("loop-audit", ".", "--json", cwd=tmp_path)
    assert audit.stdout.startswith("{"), audit.stderr  # its exit code grades the repo, not the log
    evidence = json.loads(audit.stdout)["signals"]["loopActivity"]["evidence"]
    assert "log:loop-run-log.md:fresh" in evidence
    ids = [e.run_id for e in parse_run_log((tmp_path / "loop-run-log.md").read_text()).entries]
    node = shutil.which("node")
    assert node is not None
    echoed = subprocess.run([node, "-e", "for (const id of JSON.parse(process.argv[1])) "
                             "console.log(new Date(id).toISOString())", json.dumps(ids)],
                            capture_output=True, text=True, timeout=60)
    assert echoed.stdout.split() == ids
