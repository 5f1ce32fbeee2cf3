"""``loop-runtime``: the command line, one module per command group.

Exit codes (R27): 0 completed (including no-op and paused), 2 a human is needed
(escalation, gate hold, budget or runs/day halt), 1 configuration or runtime error — always one
line on stderr naming the file, field and value, never a traceback. Every read command
takes ``--json``. The project root is ``--root`` > ``LOOP_PROJECT_ROOT`` > cwd (R33).

The package:

* ``group`` — the click group, the shared context (``--root``, the project) and shared options;
* ``show`` (list, status, plan, cost, escalations), ``gate`` (gate check), ``doctor``, ``run``,
  ``actions`` (kill, resume, approve, reject, topup), ``daemon`` (start), ``dashboard``, ``mcp``,
  ``temporal`` (worker, schedule sync) — the commands, each a thin call into the application
  layer (``app``) or the driver it starts;
* ``readouts`` — printing ``list`` and ``status``, without click (the fast entry point ``quick``
  runs it directly);
* ``entry`` — every command registered, ``--root`` accepted everywhere, and ``main``.

Start-up matters (a scheduler or CI job calls this often): importing this package costs
nothing — click and the commands load when ``main`` or ``cli`` is first used, and each
command imports what it needs inside its body.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs start-up time; type checkers still read the block
if TYPE_CHECKING:
    from typing import Any


def main(argv: list[str] | None = None) -> None:
    """The click CLI with every error mapped to one line and the documented exit code."""
    from .entry import main as run

    run(argv)


def __getattr__(name: str) -> Any:
    """``loop_runtime.cli.cli``: the click group with every command (loaded on first use)."""
    if name == "cli":
        from .entry import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
