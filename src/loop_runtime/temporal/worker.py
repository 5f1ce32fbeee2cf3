"""``loop-runtime worker``: runs tick, budget and escalation workflows and their activities.

Several workers (on several machines) share one task queue and so the load. Each also
listens on a queue of its own, where an escalation's decision is sent: the change a human
approves lives in that worker's clone (its worktree and the held diff).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from .connect import TemporalSettings, connect


def default_work_dir() -> Path:
    base = os.environ.get("LOOP_RUNTIME_WORKER_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "loop-runtime", "worker")
    return Path(base)


def workflow_runner() -> Any:
    """The sandbox, with our own pure modules passed through (imported once, not per workflow run)."""
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "loop_runtime.temporal.types", "loop_runtime.temporal.port_types", "loop_runtime.temporal.codec",
        "loop_runtime.core", "loop_runtime.ports", "loop_runtime.formats", "loop_runtime.errors"))


def workflow_classes() -> list[Any]:
    from .budget_workflow import BudgetWorkflow
    from .workflows import EscalationWorkflow, TickWorkflow

    return [TickWorkflow, EscalationWorkflow, BudgetWorkflow]


async def run_worker(s: TemporalSettings, *, work_dir: Path, concurrency: int = 4,
                     ready: Any = None, stop: asyncio.Event | None = None) -> None:
    from temporalio.worker import FixedSizeSlotSupplier, Worker, WorkerTuner

    from . import activities, port_activities, port_batch, tick_session
    from .capacity import TickSlots

    client = await connect(s)
    identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    own_queue = f"{s.task_queue}.worker.{uuid.uuid4().hex[:12]}"
    activities.set_context(activities.WorkerContext(
        client=client, loop=asyncio.get_running_loop(), work_dir=work_dir, task_queue=s.task_queue,
        worker_queue=own_queue, identity=identity))
    pool = ThreadPoolExecutor(max_workers=concurrency * 2 + 4, thread_name_prefix="loop-activity")
    common: dict[str, Any] = dict(activity_executor=pool, identity=identity,
                                  max_heartbeat_throttle_interval=timedelta(seconds=1),
                                  default_heartbeat_throttle_interval=timedelta(seconds=1),
                                  graceful_shutdown_timeout=timedelta(seconds=5))
    # ``concurrency`` ticks at a time: run_tick activities and per-port sessions alike (``capacity``)
    slots = TickSlots(concurrency, tick_session.count, tick_session.expire)
    tuner = WorkerTuner.create_composite(workflow_supplier=FixedSizeSlotSupplier(100), activity_supplier=slots,
                                         local_activity_supplier=FixedSizeSlotSupplier(100),
                                         nexus_supplier=FixedSizeSlotSupplier(100))
    shared = Worker(client, task_queue=s.task_queue, workflows=workflow_classes(),
                    activities=[*activities.ACTIVITIES, *port_activities.OPEN_ACTIVITIES], workflow_runner=workflow_runner(),
                    tuner=tuner, **common)
    # this worker's own queue: decisions on the changes its clones hold, and every port call of a tick it
    # opened on the per-port path (``port_workflow``: its session lives in this process)
    own = Worker(client, task_queue=own_queue, activities=[activities.decide_escalation, activities.push_spine,
                                                           *port_activities.SESSION_ACTIVITIES,
                                                           port_batch.port_batch, port_batch.port_stop],
                 max_concurrent_activities=concurrency + 2, **common)
    stop = stop or asyncio.Event()
    try:
        async with shared, own:
            if ready is not None:
                ready(identity, own_queue)
            await stop.wait()
    finally:
        activities.set_context(None)
        pool.shutdown(wait=False, cancel_futures=True)


def serve(s: TemporalSettings, *, work_dir: Path, concurrency: int, log: Any) -> None:
    """The foreground command: runs until SIGINT/SIGTERM."""
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(identity: str, queue: str) -> None:
            log(f"worker {identity} on {s.address} namespace {s.namespace} task queue {s.task_queue} "
                f"(clones in {work_dir})")

        await run_worker(s, work_dir=work_dir, concurrency=concurrency, ready=ready, stop=stop)

    asyncio.run(main())
