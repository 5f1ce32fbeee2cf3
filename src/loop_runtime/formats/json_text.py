"""JSON text to a value, with the one-line ``ConfigError`` every JSON format of the project gives.

Why one module: the ledger, promotion evidence, the worktree manifest and repair evidence
each had their own ``json.loads`` wrapper; two wordings existed for two kinds of file and
are kept exactly (tests and users read them):

* ``load_strict_json``: the ecosystem's own files (ledger, promotion evidence). ``NaN`` and
  ``Infinity`` are refused like JavaScript's ``JSON.parse`` refuses them, and a syntax error
  names the line and column: ``invalid JSON: Expecting value (line 1, column 1)``.
* ``load_json``: loop-runtime's own files (worktree manifest, repair evidence):
  ``not valid JSON: <what json said>``.
"""

from __future__ import annotations

import json

from ..errors import ConfigError

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any


def reject_constant(name: str) -> Any:
    """``parse_constant`` that refuses ``NaN``/``Infinity`` (JavaScript's ``JSON.parse`` does too)."""
    raise ValueError(f"{name} is not valid JSON")


def load_strict_json(text: str, file: str) -> Any:
    """``text`` as JSON without ``NaN``/``Infinity``; a problem is one ``ConfigError`` naming ``file``."""
    try:
        return json.loads(text, parse_constant=reject_constant)
    except json.JSONDecodeError as err:
        raise ConfigError(file, "json", None,
                          message=f"invalid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    except (ValueError, RecursionError) as err:
        raise ConfigError(file, "json", None, message=f"invalid JSON: {err}") from None


def load_json(text: str, file: str) -> Any:
    """``text`` as JSON; a problem is one ``ConfigError`` naming ``file``."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(file, "json", None, message=f"not valid JSON: {exc}") from None


__all__ = ["load_json", "load_strict_json", "reject_constant"]
