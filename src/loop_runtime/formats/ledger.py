"""``loop-ledger.json`` (the circuit breaker's input) and ``.loop-context/daily-spend.<id>.json`` (R15).

loop-init seeds the ledger for fix-capable patterns::

    {
      "goal": "Get failing CI back to green",
      "pattern": "ci-sweeper",
      "level": "L2",
      "attempts": []
    }

and every fix iteration appends ``{iteration, timestamp?, action, outcome, error?,
tokensUsed?, repeated?}`` with ``outcome`` one of ``success | failure | noop``. The
file is shared with humans and with ``npx @cobusgreyling/loop-context``, so we write it
the way the JS tools do (2-space JSON, camelCase keys, trailing newline), keep keys we
do not know, and refuse a malformed file with one line naming the field instead of
guessing. ``pattern``/``level`` may be absent in hand-written ledgers; they read as
``""`` and are then not written back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard

from ..errors import ConfigError
from .json_text import load_strict_json

LEDGER_FILE = "loop-ledger.json"
OUTCOMES = ("success", "failure", "noop")
_ATTEMPT_KEYS = ("iteration", "timestamp", "action", "outcome", "error", "tokensUsed", "repeated")
_LEDGER_KEYS = ("goal", "pattern", "level", "startedAt", "attempts")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Attempt:
    """One fix iteration. ``repeated`` is loop-context's collapse count (a number) or a flag."""

    iteration: int
    action: str
    outcome: str
    error: str | None = None
    tokens_used: int | None = None
    timestamp: str | None = None
    repeated: bool | int | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ledger:
    goal: str
    pattern: str
    level: str
    started_at: str | None
    attempts: tuple[Attempt, ...]
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DailySpend:
    """loop-context's per-pattern running total for one UTC day."""

    date: str
    tokens_used_today: int


# ------------------------------------------------------------------ parsing


def _whole_number(value: Any) -> TypeGuard[int | float]:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _opt_str(obj: Mapping[str, Any], key: str, where: str, file: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ConfigError(file, f"{where}{key}", value, message=f"{where}{key} invalid: {value!r} (expected a string)")


def _attempt(raw: Any, index: int, file: str) -> Attempt:
    where = f"attempts[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(file, where, raw, message=f"{where} invalid: {raw!r} (expected an object)")
    iteration = raw.get("iteration")
    if not _whole_number(iteration):
        raise ConfigError(file, f"{where}.iteration", iteration, message=f"{where}.iteration invalid: {iteration!r} "
                          "(expected a whole number)")
    action = raw.get("action")
    if not isinstance(action, str):
        raise ConfigError(file, f"{where}.action", action, message=f"{where}.action invalid: {action!r} "
                          "(expected a string)")
    outcome = raw.get("outcome")
    if outcome not in OUTCOMES:
        raise ConfigError(file, f"{where}.outcome", outcome, valid=OUTCOMES)
    tokens = raw.get("tokensUsed")
    if tokens is not None and (not _whole_number(tokens) or tokens < 0):
        raise ConfigError(file, f"{where}.tokensUsed", tokens, message=f"{where}.tokensUsed invalid: {tokens!r} "
                          "(expected a whole number >= 0)")
    repeated = raw.get("repeated")
    if repeated is not None and not isinstance(repeated, bool) and not _whole_number(repeated):
        raise ConfigError(file, f"{where}.repeated", repeated, message=f"{where}.repeated invalid: {repeated!r} "
                          "(expected a boolean or a count)")
    return Attempt(
        iteration=int(iteration), action=action, outcome=outcome,
        error=_opt_str(raw, "error", f"{where}.", file),
        tokens_used=None if tokens is None else int(tokens),
        timestamp=_opt_str(raw, "timestamp", f"{where}.", file),
        repeated=repeated if repeated is None or isinstance(repeated, bool) else int(repeated),
        extras={k: v for k, v in raw.items() if k not in _ATTEMPT_KEYS},
    )


def parse_ledger(text: str, *, file: str = LEDGER_FILE) -> Ledger:
    """Read a ledger; anything loop-context could not use safely is a ``ConfigError``."""
    data = load_strict_json(text, file)
    if not isinstance(data, dict) or not isinstance(data.get("goal"), str) \
            or not isinstance(data.get("attempts"), list):
        raise ConfigError(file, "goal/attempts", None,
                          message="invalid ledger: expected { goal: string, attempts: Attempt[] }")
    return Ledger(
        goal=data["goal"],
        pattern=_opt_str(data, "pattern", "", file) or "",
        level=_opt_str(data, "level", "", file) or "",
        started_at=_opt_str(data, "startedAt", "", file),
        attempts=tuple(_attempt(a, i, file) for i, a in enumerate(data["attempts"])),
        extras={k: v for k, v in data.items() if k not in _LEDGER_KEYS},
    )


# ------------------------------------------------------------------ rendering


def attempt_json(a: Attempt) -> dict[str, Any]:
    """An attempt as loop-context reads it (camelCase, absent fields omitted)."""
    out: dict[str, Any] = {"iteration": a.iteration}
    if a.timestamp is not None:
        out["timestamp"] = a.timestamp
    out["action"] = a.action
    out["outcome"] = a.outcome
    for key, value in (("error", a.error), ("tokensUsed", a.tokens_used), ("repeated", a.repeated)):
        if value is not None:
            out[key] = value
    out.update({k: v for k, v in a.extras.items() if k not in out})
    return out


def ledger_json(ledger: Ledger) -> dict[str, Any]:
    out: dict[str, Any] = {"goal": ledger.goal}
    if ledger.pattern:
        out["pattern"] = ledger.pattern
    if ledger.level:
        out["level"] = ledger.level
    if ledger.started_at is not None:
        out["startedAt"] = ledger.started_at
    out["attempts"] = [attempt_json(a) for a in ledger.attempts]
    out.update({k: v for k, v in ledger.extras.items() if k not in out})
    return out


def js_json(value: Any) -> str:
    """``JSON.stringify(value, null, 2)``: same layout and escapes (lone surrogates as ``\\udXXX``)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def render_ledger(ledger: Ledger) -> str:
    """The ledger as loop-init writes it: 2-space JSON and a trailing newline."""
    return js_json(ledger_json(ledger)) + "\n"


def new_ledger(goal: str, pattern: str, level: str, started_at: str | None) -> Ledger:
    return Ledger(goal=goal, pattern=pattern, level=level, started_at=started_at, attempts=())


def append_attempt(ledger: Ledger, attempt: Attempt) -> Ledger:
    return replace(ledger, attempts=ledger.attempts + (attempt,))


def next_iteration(ledger: Ledger) -> int:
    """The iteration number the next attempt should carry (1 for an empty ledger)."""
    return max((a.iteration for a in ledger.attempts), default=0) + 1


# ------------------------------------------------------------------ daily spend


def parse_daily_spend(text: str, *, file: str = "daily-spend.json") -> DailySpend | None:
    """Read ``daily-spend.<id>.json``; like loop-context, an unreadable file counts as no spend."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("date"), str):
        return None
    tokens = data.get("tokensUsedToday")
    if not _whole_number(tokens):
        return None
    return DailySpend(date=data["date"], tokens_used_today=int(tokens))


def render_daily_spend(spend: DailySpend) -> str:
    """As loop-context writes it: ``JSON.stringify(state, null, 2)``, no trailing newline."""
    return js_json({"date": spend.date, "tokensUsedToday": spend.tokens_used_today})
