"""The read commands: ``list``, ``status``, ``plan``, ``cost``, ``escalations``.

Each asks the application layer for its document (``app.commands``: the one the ``--json``
output prints) and prints it; ``list`` and ``status`` print through ``readouts``, which the
fast entry point (``quick``) runs without click.
"""

from __future__ import annotations

import click

from .group import FLEET_HELP, LEVEL_HELP, Ctx, cli, emit_json, json_option, pass_ctx, pattern_param


@cli.command("list")
@json_option()
@pass_ctx
def list_cmd(c: Ctx, as_json: bool) -> None:
    """List the registry's patterns (the project's registry, else the bundled one)."""
    from .readouts import show_list

    show_list(c._root_flag, as_json)


@cli.command()
@json_option()
@click.option("--fleet", "fleet", default=None, metavar="FILE", help=FLEET_HELP)
@click.option("--temporal", "temporal", is_flag=False, flag_value="", default=None, metavar="[HOST:PORT]",
              help="The project on Temporal: schedules, running ticks, waiting escalations (address: "
              "[temporal] in loop-runtime.toml, else localhost:7233).")
@click.option("--namespace", default=None, help="Temporal namespace (with --temporal).")
@pass_ctx
def status(c: Ctx, as_json: bool, fleet: str | None, temporal: str | None, namespace: str | None) -> None:
    """Every loop: level (configured/effective), cadence, next run, last outcome, spend, escalations."""
    if temporal is not None:
        from ..temporal.commands import show_temporal_status

        show_temporal_status(c.project, temporal or None, namespace, as_json)
        return
    from .readouts import show_status

    if fleet:
        from ..adapters.fleet import load_fleet
        from ..app.fleet import fleet_status
        from ..app.runtime import now_utc
        from .readouts import print_fleet_status

        doc = fleet_status(load_fleet(fleet), now_utc())
        emit_json(doc) if as_json else print_fleet_status(doc)
        return

    show_status(c._root_flag, as_json, c.project)


@cli.command()
@pattern_param()
@click.option("-l", "--level", type=click.Choice(["L0", "L1", "L2", "L3"], case_sensitive=False), default=None,
              help=LEVEL_HELP)
@click.option("-c", "--cadence", default=None, help="Override the cadence (e.g. 15m, 6h-1d).")
@json_option()
@pass_ctx
def plan(c: Ctx, pattern: str, level: str | None, cadence: str | None, as_json: bool) -> None:
    """Show how a loop would run: level, cadence, caps, attempts, and where each came from.

    PATTERN: a pattern id from the registry (`loop-runtime list`).
    """
    from ..app.commands import plan_doc
    from ..render import plan_text

    doc = plan_doc(c.project, pattern, level, cadence)
    if as_json:
        emit_json(doc)
    else:
        click.echo(plan_text(doc))
        click.echo(f"  registry:    {doc['registry']['source']} ({doc['registry']['path']})")


@cli.command()
@pattern_param(default="daily-triage")
@click.option("-l", "--level", type=click.Choice(["L1", "L2", "L3"]), default="L1", show_default=True,
              help="Readiness level the estimate assumes (its blend of no-op, report and action runs).")
@click.option("-c", "--cadence", default=None, help="Override the cadence (e.g. 15m, 1d, 5m-15m).")
@click.option("-o", "--orchestration", default="single", show_default=True, metavar="MODE",
              help="Multi-agent action cost: single, maker-checker, parallel:N (N>=2), debate:R (R>=1).")
@click.option("--conservative", is_flag=True, help="Use the slower end of a cadence range.")
@click.option("--with-caching", is_flag=True, help="Also estimate the prompt-caching scenario.")
@click.option("--list", "list_ids", is_flag=True, help="List pattern ids (id, token cost, cadence) and exit.")
@json_option("Machine-readable output (loop-cost's JSON).")
@pass_ctx
def cost(c: Ctx, pattern: str, level: str, cadence: str | None, orchestration: str, conservative: bool,
         with_caching: bool, list_ids: bool, as_json: bool) -> None:
    """Estimate daily tokens exactly as @cobusgreyling/loop-cost does (default pattern: daily-triage).

    PATTERN: a pattern id from the registry (`loop-runtime list`).
    """
    from ..app.commands import cost_doc
    from ..core.cost import format_estimate, list_patterns

    if list_ids:
        from ..adapters.project_files import load_registry

        for line in list_patterns(load_registry(c.root)):
            click.echo(line)
        return
    est = cost_doc(c.root, pattern, level, cadence, orchestration, conservative, with_caching)
    if as_json:
        emit_json(est)
    else:
        click.echo(format_estimate(est))


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Include approved and rejected ones.")
@json_option()
@pass_ctx
def escalations(c: Ctx, show_all: bool, as_json: bool) -> None:
    """List escalations held for a human."""
    from ..app.commands import escalations_doc

    doc = escalations_doc(c.project, show_all)
    docs = doc["escalations"]
    if as_json:
        emit_json(doc)
        return
    if not docs:
        click.echo("No open escalations.")
        return
    from ..render import table

    click.echo(table([[d["id"], d["status"], d["pattern"], d["item"], d["reason"], d["createdAt"], d["title"][:60]]
                      for d in docs], ["ID", "STATUS", "LOOP", "ITEM", "REASON", "CREATED", "TITLE"]))
