"""Read the ``## Daily limits`` table of ``loop-budget.md`` (R17).

loop-init scaffolds the file once and then it belongs to a human, who may reorder
columns, bold a cell or write ``1,000,000`` instead of ``1M``. Columns are therefore
found by their header text, and token cells accept ``k``/``M`` suffixes. A cell that
is present but unreadable is an error naming the loop and column (a budget silently
read as "no limit" would be worse than a clear stop); an empty or ``-`` cell means
"no limit stated".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ..errors import ConfigError
from .md_table import split_row as _split_row
from .registry import name_matches
from .registry_types import Pattern

RUNS_COLUMN = "Max runs/day"
TOKENS_COLUMN = "Max tokens/day"
_AMOUNT = re.compile(r"^(\d+(?:\.\d+)?)\s*([km])?(?:\s*tokens?)?$", re.IGNORECASE)
_MULTIPLIER = {None: 1, "k": 1_000, "m": 1_000_000}
_EMPTY = {"", "-", "—", "–", "n/a", "none"}
_H2 = re.compile(r"^##(?!#)\s*(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SEPARATOR_CELL = re.compile(r"^:?-+:?$")


@dataclass(frozen=True)
class BudgetRow:
    loop: str
    max_runs_per_day: int | None
    max_tokens_per_day: int | None
    spawns: str


@dataclass(frozen=True)
class BudgetTable:
    rows: tuple[BudgetRow, ...]


def parse_token_amount(s: str) -> int:
    """``100k`` → 100000, ``2M`` → 2000000, ``1.5M``, ``750000``, ``1,000,000``; else ValueError."""
    text = str(s).strip().replace(",", "").replace("_", "")
    match = _AMOUNT.match(text)
    if not match:
        raise ValueError(f"not a token amount: {s!r}")
    try:
        value = Decimal(match.group(1)) * _MULTIPLIER[(match.group(2) or "").lower() or None]
    except InvalidOperation:
        raise ValueError(f"not a token amount: {s!r}") from None
    if value != value.to_integral_value():
        raise ValueError(f"not a whole number of tokens: {s!r}")
    return int(value)


def parse_budget(text: str, *, file: str = "loop-budget.md") -> BudgetTable:
    """Rows of the Daily limits table (or of the first table with a tokens/day column)."""
    tables = _tables(text)
    chosen = next((t for section, t in tables if "daily limits" in section and _header_ok(t[0])), None)
    if chosen is None:
        chosen = next((t for _, t in tables if _header_ok(t[0])), None)
    if chosen is None:
        return BudgetTable(rows=())
    columns = _columns(chosen[0])
    rows = [_row(cells, columns, file) for cells in chosen[1:]]
    return BudgetTable(rows=tuple(r for r in rows if r is not None))


def find_budget_row(table: BudgetTable, pattern: Pattern) -> BudgetRow | None:
    """The row for ``pattern``, matched by id or human name like LOOP.md overrides are."""
    return next((row for row in table.rows if name_matches(row.loop, pattern)), None)


def _tables(text: str) -> list[tuple[str, list[list[str]]]]:
    """Every pipe table as (lower-case H2 title it sits under, [header, rows...])."""
    found: list[tuple[str, list[list[str]]]] = []
    section, fenced = "", False
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and _H2.match(line):
            section = _H2.match(line).group(1).casefold()  # type: ignore[union-attr]
        elif not fenced and _is_row(line) and i + 1 < len(lines) and _is_separator(lines[i + 1]):
            table = [_split_row(line)]
            i += 2
            while i < len(lines) and _is_row(lines[i]):
                table.append(_split_row(lines[i]))
                i += 1
            found.append((section, table))
            continue
        i += 1
    return found


def _is_row(line: str) -> bool:
    return line.strip().startswith("|")


def _is_separator(line: str) -> bool:
    cells = [c.replace(" ", "") for c in _split_row(line) if c.strip()]
    return _is_row(line) and bool(cells) and all(_SEPARATOR_CELL.match(c) for c in cells)


def _header_key(cell: str) -> str:
    return " ".join(_clean(cell).casefold().split())


def _columns(header: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, cell in enumerate(header):
        key = _header_key(cell)
        for name, needle in (("loop", "loop"), ("loop", "pattern"), ("runs", "runs"), ("tokens", "tokens"),
                             ("spawns", "spawn")):
            if needle in key and name not in columns:
                columns[name] = index
                break
    columns.setdefault("loop", 0)
    return columns


def _header_ok(header: list[str]) -> bool:
    keys = [_header_key(c) for c in header]
    return any("tokens" in k for k in keys) or any("runs" in k for k in keys)


def _row(cells: list[str], columns: dict[str, int], file: str) -> BudgetRow | None:
    def cell(name: str) -> str:
        index = columns.get(name)
        return _clean(cells[index]) if index is not None and index < len(cells) else ""

    loop = cell("loop")
    if not loop:
        return None
    return BudgetRow(
        loop=loop,
        max_runs_per_day=_amount(cell("runs"), file, loop, RUNS_COLUMN),
        max_tokens_per_day=_amount(cell("tokens"), file, loop, TOKENS_COLUMN),
        spawns=cell("spawns"),
    )


def _amount(text: str, file: str, loop: str, column: str) -> int | None:
    if text.casefold() in _EMPTY:
        return None
    try:
        return parse_token_amount(text)
    except ValueError:
        raise ConfigError(file, f"Daily limits[{loop}].{column}", text) from None


def _clean(text: str) -> str:
    return " ".join(text.replace("**", "").replace("`", "").split()).strip()
