"""One row of a Markdown pipe table, split into cells (LOOP.md overrides and loop-budget.md).

Why shared: both files are hand-edited Markdown tables and must read a row the same way —
outer pipes optional, an escaped ``\\|`` staying inside its cell, cells stripped.
"""

from __future__ import annotations

import re

_CELL_BREAK = re.compile(r"(?<!\\)\|")


def split_row(line: str) -> list[str]:
    """``| a | b\\|c |`` → ``["a", "b\\|c"]``: the cells of one table row, stripped."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.strip() for cell in _CELL_BREAK.split(body)]


__all__ = ["split_row"]
