"""``gate check``: the path policy (gate.yaml), exactly as @cobusgreyling/loop-gate."""

from __future__ import annotations

import sys

import click

from ..errors import LoopError
from .group import Ctx, cli, emit_json, json_option, pass_ctx


@cli.group()
def gate() -> None:
    """Path policy (gate.yaml), exactly as @cobusgreyling/loop-gate."""


@gate.command("check")
@click.argument("paths", nargs=-1, required=False)
@click.option("--paths", "paths_opt", multiple=True, metavar="P1,P2,...",
              help="Changed paths, comma-separated (loop-gate's spelling); more may follow as arguments.")
@click.option("--action", type=click.Choice(["commit", "merge", "auto-merge"]), default="commit", show_default=True,
              help="What the loop wants to do with the paths.")
@click.option("--gate-file", default=None, help="Policy file (default: <root>/gate.yaml, else the safety.md default).")
@json_option("Machine-readable output (loop-gate's JSON).")
@pass_ctx
def gate_check(c: Ctx, paths: tuple[str, ...], paths_opt: tuple[str, ...], action: str, gate_file: str | None,
               as_json: bool) -> None:
    """Check paths against the gate policy; exit 0 allowed, 2 escalate.

    PATHS: changed file paths (each may be comma-separated), e.g. `gate check --paths a.py b.py`.
    """
    paths = (*paths_opt, *paths)
    if not paths:
        raise click.UsageError("no paths: give them as arguments or with --paths a,b")
    from ..core.gate import check, format_decision, split_paths_arg

    policy, warning = _policy(c, gate_file)
    split = [p for arg in paths for p in split_paths_arg(arg)]
    if not split:  # `--paths ""` or `--paths ,,`: nothing to check is not "allowed"
        raise click.UsageError("--paths must contain at least one non-empty path.")
    decision = check(policy, split, action)
    if warning and not as_json:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        emit_json(decision.as_json())
    else:
        click.echo(format_decision(decision))
    sys.exit(0 if decision.allowed else 2)


def _policy(c: Ctx, gate_file: str | None) -> tuple[object, str | None]:
    """The policy of ``--gate-file`` (an unreadable file is an error), else the project's gate.yaml or the default."""
    from ..adapters.project_files import load_gate_policy
    from ..formats.gate_config import parse_gate_yaml

    if not gate_file:
        return load_gate_policy(c.root)
    from pathlib import Path

    try:
        text = Path(gate_file).read_text("utf-8")
    except OSError as e:
        raise LoopError(f"{gate_file}: cannot read gate file: {e.strerror}") from None
    return parse_gate_yaml(text, file=gate_file), None
