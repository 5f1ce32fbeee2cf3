"""Read and append ``loop-run-log.md``, the ecosystem's one-JSON-object-per-line run history (R22, R23).

Appending reproduces ``scripts/append-run-log.mjs`` byte for byte: the text up to and
including the marker, a blank line, the kept entry lines joined by ``\\n``, a final
``\\n``; kept lines are the trimmed originals, never re-serialised. One deliberate
difference: an entry whose ``run_id`` is not a date is kept instead of dropped
(upstream issue #610), so hand-written ids survive.

Reading is tolerant: a Markdown-table log (the quant starter), a missing marker or
malformed lines never raise; they just contribute no token data.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, UTC
from types import MappingProxyType

from ..errors import ConfigError
from .json_text import reject_constant

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any

MARKER = "<!-- Loop appends below this line -->"
MAX_AGE = timedelta(days=30)
OUTCOMES = ("report-only", "fix-proposed", "escalated", "no-op")
CANONICAL_FIELDS = (
    "run_id", "pattern", "duration_s", "items_found", "actions_taken", "escalations", "tokens_estimate", "outcome",
)
_CANONICAL = frozenset(CANONICAL_FIELDS)
_NO_EXTRAS: Mapping[str, Any] = MappingProxyType({})
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?$",
    re.IGNORECASE,
)
# JavaScript's String.prototype.trim() set (Python's str.strip() also strips \x1c-\x1f and \x85).
_JS_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")

TEMPLATE = """# Loop Run Log — {project}

Append one entry per run. Prune entries older than 30 days.

## Format

```json
{{
  "run_id": "2026-06-09T08:15:00Z",
  "pattern": "daily-triage",
  "duration_s": 45,
  "items_found": 4,
  "actions_taken": 1,
  "escalations": 0,
  "tokens_estimate": 52000,
  "outcome": "report-only | fix-proposed | escalated | no-op"
}}
```

## Recent Runs

""" + MARKER


@dataclass(frozen=True)
class RunLogEntry:
    """One run, as one compact JSON line; ``extras`` keeps fields other tools add."""

    run_id: str
    pattern: str
    duration_s: float | int
    items_found: int
    actions_taken: int
    escalations: int
    tokens_estimate: int
    outcome: str
    extras: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def to_json(self) -> str:
        """Compact JSON, the 8 canonical fields first in their order, extras after (like JSON.stringify)."""
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "pattern": self.pattern,
            "duration_s": _js_number(self.duration_s),
            "items_found": int(self.items_found),
            "actions_taken": int(self.actions_taken),
            "escalations": int(self.escalations),
            "tokens_estimate": int(self.tokens_estimate),
            "outcome": self.outcome,
        }
        for key, value in self.extras.items():
            if key not in data:
                data[key] = _js_value(value)
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunLogEntry:
        """Tolerant read: any outcome is accepted, a missing or non-numeric count is 0."""
        if not isinstance(d, Mapping):
            raise ConfigError("loop-run-log.md", "entry", d, message="run-log entry must be a JSON object")
        # most lines carry only the canonical fields: one shared empty view then (status reads a month of lines)
        extras = _NO_EXTRAS if _CANONICAL.issuperset(d) else MappingProxyType(
            {str(k): v for k, v in d.items() if k not in _CANONICAL})
        # Every value is checked above or here, so the entry is filled in directly: a frozen
        # dataclass's __init__ sets each field through object.__setattr__, which made building
        # entries half the cost of reading a month of log (status reads one on every call).
        # The shapes every writer uses (strings and plain ints) are taken as they are; anything else goes
        # through the tolerant readers.
        get = d.get
        run_id, pattern, outcome = get("run_id"), get("pattern"), get("outcome")
        duration, items, actions = get("duration_s"), get("items_found"), get("actions_taken")
        escalations, tokens = get("escalations"), get("tokens_estimate")
        entry = object.__new__(cls)
        entry.__dict__.update(
            run_id=run_id if type(run_id) is str else _text(run_id),
            pattern=pattern if type(pattern) is str else _text(pattern),
            duration_s=duration if type(duration) is int else _number(duration),
            items_found=items if type(items) is int else int(_number(items)),
            actions_taken=actions if type(actions) is int else int(_number(actions)),
            escalations=escalations if type(escalations) is int else int(_number(escalations)),
            tokens_estimate=tokens if type(tokens) is int else int(_number(tokens)),
            outcome=outcome if type(outcome) is str else _text(outcome),
            extras=extras,
        )
        return entry


@dataclass(frozen=True)
class RunLog:
    """A parsed ``loop-run-log.md``: its entries and how it was written (``format``), never an error."""

    entries: tuple[RunLogEntry, ...]
    has_marker: bool
    format: str  # "json" | "table" | "none"
    skipped_lines: int

    @functools.cached_property
    def by_day(self) -> Mapping[tuple[str, date], tuple[RunLogEntry, ...]]:
        """Entries by (pattern, UTC day of their run id), in log order; undated entries are left out.

        ``status`` asks for every loop's entries of a day several times (spend, runs today), and a
        month of a busy project is thousands of lines: one pass answers all of those questions.
        """
        days: dict[tuple[str, date], list[RunLogEntry]] = {}
        for entry in self.entries:
            when = parse_run_time(entry.run_id)
            if when is not None:
                days.setdefault((entry.pattern, when.date()), []).append(entry)
        return MappingProxyType({key: tuple(group) for key, group in days.items()})


def parse_run_log(text: str) -> RunLog:
    """Entries of a run log; never raises (a table log gives format "table" and no entries).

    One command reads the same log several times (status: which loops ran, spend, runs
    today); the result is immutable, so the last few parses are remembered by text.
    """
    return _parse_run_log_cached(text)


@functools.lru_cache(maxsize=4)
def _parse_run_log_cached(text: str) -> RunLog:
    has_marker = MARKER in text
    if has_marker:
        candidates = text[text.index(MARKER) + len(MARKER):].split("\n")
    else:
        candidates = _outside_fences(text.split("\n"))
    entries: list[RunLogEntry] = []
    skipped = 0
    for line in candidates:
        trimmed = line.strip(_JS_SPACE)
        if not trimmed or (not has_marker and not trimmed.startswith("{")):
            continue
        obj = _load_object(trimmed)
        if obj is None:
            skipped += 1
        else:
            entries.append(RunLogEntry.from_dict(obj))
    if entries or has_marker:
        kind = "json"
    elif any(_TABLE_ROW.match(line) for line in text.split("\n")):
        kind = "table"
    else:
        kind = "none"
    return RunLog(entries=tuple(entries), has_marker=has_marker, format=kind, skipped_lines=skipped)


def append_entry(
    text: str | None, entry: RunLogEntry, *, now: datetime, project: str = "project", file: str = "loop-run-log.md"
) -> str:
    """The whole new log text with ``entry`` appended and entries older than 30 days pruned.

    ``text`` None means the log does not exist yet: the ecosystem template is created.
    An existing log without the marker is a human's file in another shape; it is
    refused (``ConfigError``) rather than rewritten.
    """
    if entry.outcome not in OUTCOMES:
        raise ValueError(f"run-log outcome must be one of {', '.join(OUTCOMES)}: {entry.outcome!r}")
    if text is None:
        text = TEMPLATE.format(project=" ".join(project.split()) or "project")
    at = text.find(MARKER)
    if at == -1:
        message = f"marker line {MARKER!r} not found; add it under '## Recent Runs'"
        raise ConfigError(file, "marker", MARKER, message=message)
    before, after = text[:at + len(MARKER)], text[at + len(MARKER):]
    current = _utc(now)
    kept = []
    for line in after.split("\n"):
        trimmed = line.strip(_JS_SPACE)
        if not trimmed.startswith("{"):
            continue
        obj = _load_object(trimmed)
        if obj is None:
            continue  # malformed lines are dropped, as upstream does
        when = parse_run_time(obj.get("run_id"))
        if when is None or current - when <= MAX_AGE:
            kept.append(trimmed)
    kept.append(entry.to_json())
    return f"{before}\n\n" + "\n".join(kept) + "\n"


def parse_run_time(run_id: object) -> datetime | None:
    """The UTC time an ISO-8601 ``run_id`` denotes, or None when it is not a date.

    Date-only and offset-less forms are taken as UTC (runs are logged in UTC).
    """
    if not isinstance(run_id, str):
        return None
    return _parse_iso(run_id)


@functools.lru_cache(maxsize=4096)  # pure; status asks each loop's entries twice (tokens, runs)
def _parse_iso(run_id: str) -> datetime | None:
    match = _ISO.match(run_id.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        when = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro)
        return when.replace(tzinfo=_zone(zone)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def tokens_on_day(log: RunLog, pattern: str, day: date, *, exclude_run_ids: Collection[str] = ()) -> int:
    """Tokens the log records for ``pattern`` on UTC ``day`` (the budget's "spent today").

    ``exclude_run_ids``: entries whose tokens the run store already counts (our own ticks),
    so what remains is what other tools spent.
    """
    return sum(e.tokens_estimate for e in _on_day(log, pattern, day) if e.run_id not in exclude_run_ids)


def run_ids_on_day(log: RunLog, pattern: str, day: date) -> set[str]:
    """Runs of ``pattern`` on ``day`` for the runs/day cap: one per run id (a budget-halted tick and its
    ``topup --resume`` are one run) and none for a tick the kill switch paused (it did no work: a day
    spent paused must not use up the day's runs). ``core.schedule.runs_today`` counts them."""
    return {e.run_id for e in _on_day(log, pattern, day) if not _paused(e)}


def runs_on_day(log: RunLog, pattern: str, day: date) -> int:
    """How many runs the log alone shows (``run_ids_on_day``)."""
    return len(run_ids_on_day(log, pattern, day))


def _paused(entry: RunLogEntry) -> bool:
    note = entry.extras.get("note")
    return isinstance(note, str) and (note == "paused" or note.startswith("paused:"))


def _on_day(log: RunLog, pattern: str, day: date) -> tuple[RunLogEntry, ...]:
    return log.by_day.get((pattern, day), ())


_decoder: json.JSONDecoder | None = None


def _load_object(trimmed: str) -> dict[str, Any] | None:
    """The JSON object that makes up the whole of a trimmed line (``_JS_SPACE`` stripped, a superset of
    JSON's whitespace), else None. ``raw_decode`` and an end check: ``decode`` would only look for
    whitespace around the value again, a third of the cost over a month of lines."""
    global _decoder
    if _decoder is None:  # one decoder for every line: json.loads(parse_constant=...) builds one per call
        _decoder = json.JSONDecoder(parse_constant=reject_constant)
    if trimmed.startswith("\ufeff"):
        return None  # json.loads refuses a leading BOM; the bare decoder would not
    try:
        obj, end = _decoder.raw_decode(trimmed)
    except (ValueError, RecursionError):
        return None
    return obj if end == len(trimmed) and isinstance(obj, dict) else None


def _outside_fences(lines: list[str]) -> list[str]:
    out, fenced = [], False
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append(line)
    return out


def _zone(zone: str | None) -> timezone:
    if not zone or zone.upper() == "Z":
        return UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _number(value: object) -> float | int:
    kind = type(value)  # the two shapes JSON gives, first: a month of log is thousands of calls
    if kind is int:
        return value  # type: ignore[return-value]
    if kind is float:
        return value if math.isfinite(value) else 0  # type: ignore[arg-type,return-value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return value


def _js_value(value: Any) -> Any:
    """Extras as JSON.stringify would write them: non-finite numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _js_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_js_value(v) for v in value]
    return value


def _js_number(value: float | int) -> float | int:
    """What JSON.stringify would print: integral floats without ``.0``, non-finite as 0."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0
        if value.is_integer():
            return int(value)
    return value
