"""Is this output a person's terminal? One rule for every command that draws for people.

A CI runner often allocates a pseudo-terminal (GitHub Actions' ``script``, GitLab's
``docker -t``), so ``isatty()`` alone would give a CI log rich tables folded to 80
columns and live lines full of carriage returns. Output is interactive only when the
stream is a terminal, ``CI`` is not set to a true value and ``TERM`` is not ``dumb``.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any

_FALSE = ("", "0", "false", "no", "off")


def in_ci() -> bool:
    """``CI`` set to anything but an explicit false (GitHub, GitLab, CircleCI… set ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() not in _FALSE


def interactive(stream: Any) -> bool:
    """True when ``stream`` is a person's terminal (not a pipe, a file, a CI log or a dumb terminal)."""
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or file-like without isatty
        return False
    return tty and not in_ci() and os.environ.get("TERM", "") != "dumb"
