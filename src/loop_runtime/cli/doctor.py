"""``doctor``: the project's readiness checks, each with its fix."""

from __future__ import annotations

import sys

import click

from .group import Ctx, cli, emit_json, json_option, pass_ctx


@cli.command()
@json_option()
@pass_ctx
def doctor(c: Ctx, as_json: bool) -> None:
    """Check the project: files, git, tests, backends, GitHub, Temporal — each with its fix.

    Exit 0 ready, 2 a human must act, 1 broken.
    """
    from ..app.doctor import run_checks
    from ..core.doctor import as_json as doctor_json, exit_code, render

    checks = run_checks(c.root)
    if as_json:
        emit_json(doctor_json(checks))
    else:
        click.echo(render(checks))
    sys.exit(exit_code(checks))
