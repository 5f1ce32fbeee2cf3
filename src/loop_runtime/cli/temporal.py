"""The engine on Temporal: ``worker`` and ``schedule sync`` (the work is in ``temporal.commands``)."""

from __future__ import annotations

from typing import Any

import click

from .group import Ctx, cli, emit_json, pass_ctx


def temporal_options(f: Any) -> Any:
    """``--temporal HOST:PORT``, ``--namespace`` and ``--task-queue`` (defaults: ``[temporal]`` in loop-runtime.toml)."""
    f = click.option("--task-queue", default=None, help="Task queue (default: [temporal] task_queue, else "
                     "loop-runtime).")(f)
    f = click.option("--namespace", default=None, help="Temporal namespace (default: [temporal] namespace, "
                     "else default).")(f)
    return click.option("--temporal", "address", default=None, metavar="HOST:PORT",
                        help="Temporal frontend (default: [temporal] address, else localhost:7233).")(f)


@cli.command()
@temporal_options
@click.option("--work-dir", type=click.Path(file_okay=False), default=None,
              help="Where this worker keeps its clones (default: $LOOP_RUNTIME_WORKER_DIR, else "
              "~/.cache/loop-runtime/worker).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Ticks this worker runs at once (one at a time per repository).")
@pass_ctx
def worker(c: Ctx, address: str | None, namespace: str | None, task_queue: str | None, work_dir: str | None,
           concurrency: int) -> None:
    """Run a Temporal worker: ticks, budgets and escalations of every repository scheduled on the queue."""
    from ..temporal.commands import run_worker_command

    run_worker_command(c, address, namespace, task_queue, work_dir, concurrency)


@cli.group()
def schedule() -> None:
    """Temporal Schedules of the project's loops."""


@schedule.command("sync")
@temporal_options
@click.option("--fleet", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A fleet file (loop-fleet.toml): sync every repository it lists (local paths).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@pass_ctx
def schedule_sync(c: Ctx, address: str | None, namespace: str | None, task_queue: str | None, fleet: str | None,
                  as_json: bool) -> None:
    """Create or update one Schedule per enabled loop, delete those of removed loops, pause while killed."""
    from ..temporal.commands import schedule_sync_command

    docs = schedule_sync_command(c, address, namespace, task_queue, fleet)
    if as_json:
        emit_json(docs if fleet else docs[0])
        return
    for d in docs:
        click.echo(d["text"])
