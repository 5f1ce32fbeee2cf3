"""Read per-loop level and cadence overrides from a human-owned ``LOOP.md`` (R30).

LOOP.md is free-form Markdown that people write by hand, so parsing never fails:
whatever is not understood is ignored, and a cadence that cannot be read gives a
warning naming the loop instead of an error. The runtime never writes LOOP.md.

Two shapes are understood (reference §1.3):

* a table ``| Pattern | Cadence | Status | Command |`` (columns found by header name;
  the Status or Level column gives ``L0``–``L3``);
* one ``### Name (L1 — automated + report)`` heading per loop with bullets such as
  ``- Cadence: 1d weekdays``.

Only the ``## Active Loops`` section (or any H2 naming active loops or a loop
schedule) and the text before the first H2 are read, so tables elsewhere (an
"Automation status" history, a links table) cannot silently change a loop's level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .md_table import split_row as _split_row
from .registry import ID_RE, name_matches
from .registry_types import Pattern

CADENCE_TOKEN_RE = re.compile(r"^[0-9]+[mhd](-[0-9]+[mhd])?$")
LEVEL_RE = re.compile(r"\bL([0-3])\b")
_DASHES = re.compile(r"\s*[\u2010-\u2015\u2212]\s*")
_H2 = re.compile(r"^##(?!#)\s*(.*?)\s*#*\s*$")
_H3 = re.compile(r"^###(?!#)\s*(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LOOP_SECTION = re.compile(r"\bactive\b.*\bloops?\b|^loops?$|\bloop schedule\b|^schedule$", re.IGNORECASE)
_BULLET_FIELD = re.compile(r"^\s*[-*+]\s*(?:\*\*)?\s*([A-Za-z][A-Za-z /-]*?)\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*(.*)$")
_PATTERN_FLAG = re.compile(r"--pattern[=\s]+`?([a-z][a-z0-9-]*)")
_SEPARATOR_CELL = re.compile(r"^:?-{1,}:?$")


@dataclass(frozen=True)
class LoopOverride:
    """What LOOP.md says about one loop; ``None`` fields mean "not stated"."""

    name: str
    level: str | None
    cadence: str | None
    status: str
    pattern_id: str | None


@dataclass(frozen=True)
class LoopMd:
    """What ``LOOP.md`` says about each loop (its overrides), and what could not be read (warnings, never errors)."""

    overrides: tuple[LoopOverride, ...]
    warnings: tuple[str, ...]


def parse_loop_md(text: str) -> LoopMd:
    """Collect loop overrides from the active-loops tables and H3 entries; never raises."""
    overrides: list[LoopOverride] = []
    warnings: list[str] = []
    for block in _loop_blocks(_lines_outside_fences(text)):
        overrides.extend(_parse_tables(block, warnings))
        overrides.extend(_parse_headings(block, warnings))
    unique: dict[str, LoopOverride] = {}
    for override in overrides:
        key = _clean(override.name).casefold()
        if key in unique:
            warnings.append(f"LOOP.md: duplicate entry for loop {override.name!r} ignored")
        else:
            unique[key] = override
    return LoopMd(overrides=tuple(unique.values()), warnings=tuple(warnings))


def find_override(loop_md: LoopMd, pattern: Pattern) -> LoopOverride | None:
    """The override for ``pattern``, matched by id or by name ("Daily Triage" ↔ ``daily-triage``)."""
    for override in loop_md.overrides:
        if override.pattern_id == pattern.id:
            return override
    for override in loop_md.overrides:
        if name_matches(override.name, pattern):
            return override
    return None


def parse_cadence_override(text: str) -> str | None:
    """First token of ``text`` that is a registry cadence (``1d``, ``6h-1d``); en dashes count as ``-``."""
    folded = _DASHES.sub("-", text.replace("`", " "))
    for token in folded.split():
        token = token.strip("()[]{},;.*_'\"")
        if CADENCE_TOKEN_RE.fullmatch(token):
            return token
    return None


def _lines_outside_fences(text: str) -> list[str]:
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        lines.append("" if fenced else line)
    return lines


def _loop_blocks(lines: list[str]) -> list[list[str]]:
    """The preamble plus every H2 section whose title names active loops or a schedule."""
    blocks: list[list[str]] = [[]]
    keep = True
    for line in lines:
        heading = _H2.match(line)
        if heading:
            keep = bool(_LOOP_SECTION.search(_clean(heading.group(1))))
            blocks.append([])
            continue
        if keep:
            blocks[-1].append(line)
    return [b for b in blocks if b]


def _parse_tables(block: list[str], warnings: list[str]) -> list[LoopOverride]:
    found: list[LoopOverride] = []
    i = 0
    while i + 1 < len(block):
        line, following = block[i].strip(), block[i + 1].strip()
        if line.startswith("|") and following.startswith("|") and _is_separator(following):
            columns = _columns(_split_row(line))
            i += 2
            while i < len(block) and block[i].strip().startswith("|"):
                if columns is not None:
                    row = _row_override(_split_row(block[i]), columns, warnings)
                    if row is not None:
                        found.append(row)
                i += 1
        else:
            i += 1
    return found


def _is_separator(line: str) -> bool:
    cells = [c for c in _split_row(line) if c]
    return bool(cells) and all(_SEPARATOR_CELL.match(c.replace(" ", "")) for c in cells)


def _columns(header: list[str]) -> dict[str, int] | None:
    names = [_clean(h).casefold() for h in header]
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        for key in ("pattern", "loop", "name", "cadence", "status", "level", "command"):
            if name.startswith(key) and key not in columns:
                columns[key] = index
    name_col = next((columns[k] for k in ("pattern", "loop", "name") if k in columns), None)
    if name_col is None or not {"cadence", "status", "level"} & columns.keys():
        return None
    columns["name"] = name_col
    return columns


def _cell(cells: list[str], columns: dict[str, int], key: str) -> str:
    index = columns.get(key)
    return cells[index] if index is not None and index < len(cells) else ""


def _row_override(cells: list[str], columns: dict[str, int], warnings: list[str]) -> LoopOverride | None:
    name = _clean(_cell(cells, columns, "name"))
    if not name:
        return None
    status = _clean(_cell(cells, columns, "status"))
    level_text = " ".join((status, _cell(cells, columns, "level")))
    cadence_text = _cell(cells, columns, "cadence")
    return LoopOverride(
        name=name,
        level=_level(level_text),
        cadence=_cadence(name, cadence_text, warnings),
        status=status or _clean(_cell(cells, columns, "level")),
        pattern_id=_pattern_id(name, "", " ".join(cells)),
    )


def _parse_headings(block: list[str], warnings: list[str]) -> list[LoopOverride]:
    found: list[LoopOverride] = []
    starts = [i for i, line in enumerate(block) if _H3.match(line)]
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(block)
        heading = _H3.match(block[start])
        assert heading is not None
        override = _heading_override(heading.group(1), block[start + 1:end], warnings)
        if override is not None:
            found.append(override)
    return found


def _heading_override(title: str, body: list[str], warnings: list[str]) -> LoopOverride | None:
    name, _, rest = title.partition("(")
    name = _clean(name)
    if not name:
        return None
    status = _clean(rest.rsplit(")", 1)[0]) if rest else ""
    fields: dict[str, str] = {}
    for line in body:
        match = _BULLET_FIELD.match(line)
        if match:
            fields.setdefault(match.group(1).strip().casefold(), match.group(2).strip())
    level = _level(status) or _level(fields.get("level", "")) or _level(fields.get("status", ""))
    cadence = _cadence(name, fields["cadence"], warnings) if "cadence" in fields else None
    return LoopOverride(
        name=name,
        level=level,
        cadence=cadence,
        status=status or _clean(fields.get("status", "")),
        pattern_id=_pattern_id(name, fields.get("pattern", ""), " ".join(body)),
    )


def _level(text: str) -> str | None:
    match = LEVEL_RE.search(text)
    return f"L{match.group(1)}" if match else None


def _cadence(name: str, text: str, warnings: list[str]) -> str | None:
    if not text.strip():
        return None
    cadence = parse_cadence_override(text)
    if cadence is None:
        warnings.append(f"LOOP.md: loop {name!r} cadence not understood: {_clean(text)[:80]!r}")
    return cadence


def _pattern_id(name: str, field: str, context: str) -> str | None:
    """An explicit id: a ``Pattern: x`` bullet, the name itself when id-shaped, or a ``--pattern x`` flag."""
    for candidate in (_clean(field).split(" ", 1)[0] if field.strip() else "", name):
        if ID_RE.fullmatch(candidate) and "-" in candidate:
            return candidate
    flag = _PATTERN_FLAG.search(context)
    return flag.group(1) if flag else None


def _clean(text: str) -> str:
    """Drop Markdown emphasis and code marks, collapse whitespace."""
    return " ".join(re.sub(r"[*`_]{1,3}", " ", text).split()).strip(" :")
