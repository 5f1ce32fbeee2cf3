"""Every command registered on the group, ``--root`` accepted everywhere, and ``main``.

Importing this module loads click and the command modules (not what the commands use:
each imports that inside its body).
"""

from __future__ import annotations

import sys

import click

from . import actions, daemon, dashboard, doctor, gate, mcp, run, show, temporal  # noqa: F401 - they register
from .group import accept_root_everywhere, cli

accept_root_everywhere(cli)


def main(argv: list[str] | None = None) -> None:
    """Map every error to one line and the documented exit code (click's own here, the rest in ``readouts``)."""
    from .readouts import echo, guarded, say_error

    def invoke() -> None:
        try:
            cli.main(args=argv, prog_name="loop-runtime", standalone_mode=False)
        except click.exceptions.Abort:
            echo("loop-runtime: aborted", err=True)
            sys.exit(1)
        except click.ClickException as e:
            say_error(f"loop-runtime: {e.format_message()}")
            sys.exit(1)

    guarded(invoke)
