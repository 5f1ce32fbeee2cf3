"""The click group and what every command group shares: the context (``--root``, the project),
the option spellings used by several commands, and ``--json`` output.

Only click (and json) at module level: everything else is imported inside the command that
needs it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import click


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


class Ctx:
    """The root flag as given, and the project loaded from it once, on first use."""

    def __init__(self, root: str | None) -> None:
        self._root_flag = root
        self._project: Any = None

    @property
    def root(self) -> Any:
        from ..app.runtime import resolve_root

        return resolve_root(self._root_flag)

    @property
    def project(self) -> Any:
        if self._project is None:
            from ..app.runtime import load_project

            self._project = load_project(self.root)
        return self._project


pass_ctx = click.make_pass_decorator(Ctx)
ROOT_HELP = "Project root (default: $LOOP_PROJECT_ROOT, else the current directory)."

LEVEL_HELP = "Autonomy level: L0 observe, L1 report, L2 propose fixes, L3 merge (default: LOOP.md, else the registry)."

BACKEND_CHOICE = click.Choice(["mock", "claude", "codex", "openai", "grok", "opencode", "gemini"],
                              case_sensitive=False)

JSON_HELP = "Machine-readable output."

FLEET_HELP = "A fleet file (loop-fleet.toml): every repository's loops, one portfolio budget."


def json_option(help: str = JSON_HELP) -> Any:  # noqa: A002 - click's own name for it
    return click.option("--json", "as_json", is_flag=True, help=help)


def pattern_param(*, default: str | None = None) -> Any:
    """The pattern as a positional argument or as loop-cost/loop-init's ``-p/--pattern`` (either, not both).

    A wrapper, so the command keeps one ``pattern`` parameter whichever spelling was used.
    """

    def deco(f: Any) -> Any:
        @functools.wraps(f)
        def wrapper(*args: Any, pattern: str | None = None, pattern_opt: str | None = None, **kw: Any) -> Any:
            if pattern and pattern_opt and pattern != pattern_opt:
                raise click.UsageError(f"two patterns given: {pattern!r} and --pattern {pattern_opt!r}")
            chosen = pattern or pattern_opt or default
            if chosen is None:
                raise click.UsageError("missing pattern: give it as an argument or with -p/--pattern")
            return f(*args, pattern=chosen, **kw)

        wrapper = click.option("-p", "--pattern", "pattern_opt", metavar="ID",
                               help="Pattern id (same as the PATTERN argument; loop-cost/loop-init spelling).")(wrapper)
        return click.argument("pattern", required=False)(wrapper)

    return deco


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", type=click.Path(file_okay=False), default=None, help=ROOT_HELP)
@click.version_option(package_name="loop-runtime")
@click.pass_context
def cli(ctx: click.Context, root: str | None) -> None:
    """Run loop-engineering loops: scheduler, worktrees, verifier, budget breaker, human gates."""
    ctx.obj = Ctx(root)


def _root_after_subcommand(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """``loop-runtime status --root X`` means the same as ``loop-runtime --root X status`` (the later one wins)."""
    if value is not None:
        ctx.ensure_object(Ctx)._root_flag = value


def accept_root_everywhere(group: click.Group) -> None:
    """Give every subcommand (and sub-subcommand) its own ``--root``, as gh/git users expect."""
    for command in group.commands.values():
        if not any(isinstance(p, click.Option) and "--root" in p.opts for p in command.params):
            command.params.append(click.Option(["--root"], type=click.Path(file_okay=False), default=None,
                                               expose_value=False, is_eager=True, callback=_root_after_subcommand,
                                               help=ROOT_HELP))
        if isinstance(command, click.Group):
            accept_root_everywhere(command)
