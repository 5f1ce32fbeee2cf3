"""Read the triage agent's decision: ``{"decision": "noop|report|act", "items": [...], "summary": "..."}``.

The triage agent answers in prose; the decision is a JSON object somewhere in it (in
a ```json fence, or bare). Agent output is untrusted, so this never raises and never
trusts shape or size: strings are capped at 500 characters, items at 50, ids are made
short single tokens of safe characters (they become STATE.md entry ids and branch
names), and anything unreadable degrades to
``report`` — the safe middle: a human sees the run, no code is touched.

When several objects carry a ``decision``, the last valid one wins (an agent that
quotes the schema first and answers after is read correctly).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

Decision = Literal["noop", "report", "act"]
MAX_ITEMS = 50
MAX_CHARS = 500
MAX_ID_CHARS = 100
MAX_SCAN = 2000  # '{' positions tried; bounds the work on hostile output
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9#._:/-]+")
_DECISIONS: dict[str, Decision] = {"noop": "noop", "no-op": "noop", "no_op": "noop", "report": "report", "act": "act"}


@dataclass(frozen=True)
class TriageItem:
    id: str
    title: str
    detail: str = ""
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class TriageDecision:
    decision: Decision
    items: tuple[TriageItem, ...]
    summary: str
    warnings: tuple[str, ...]
    parsed: bool


def parse_triage(text: str) -> TriageDecision:
    """The decision object found in ``text``; a missing or invalid one gives ``report``, parsed=False."""
    candidates = [obj for obj in _objects(text) if "decision" in obj]
    valid = [obj for obj in candidates if _decision(obj.get("decision")) is not None]
    if valid:
        return _build(valid[-1])
    if candidates:
        shown = _cap(_as_text(candidates[-1].get("decision")), 80)
        return _fallback(f"triage decision not one of noop|report|act: {shown!r}", candidates[-1])
    return _fallback("no triage decision JSON found in the agent output", None)


def _objects(text: str) -> list[dict[str, Any]]:
    """Every top-level JSON object in ``text``, in order (nested objects are not repeated)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    pos, tries = 0, 0
    while tries < MAX_SCAN:
        start = text.find("{", pos)
        if start == -1:
            break
        tries += 1
        try:
            obj, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            pos = start + 1
            continue
        if isinstance(obj, dict):
            found.append(obj)
        pos = end
    return found


def _decision(value: object) -> Decision | None:
    return _DECISIONS.get(value.strip().lower()) if isinstance(value, str) else None


def _build(obj: dict[str, Any]) -> TriageDecision:
    decision = _decision(obj.get("decision"))
    assert decision is not None
    warnings: list[str] = []
    items = _items(obj.get("items"), warnings)
    if decision == "act" and not items:
        warnings.append("triage decision is 'act' but lists no items")
    return TriageDecision(
        decision=decision,
        items=items,
        summary=_cap(_as_text(obj.get("summary"))),
        warnings=tuple(warnings),
        parsed=True,
    )


def _fallback(reason: str, obj: dict[str, Any] | None) -> TriageDecision:
    warnings = [reason]
    items = _items(obj.get("items"), warnings) if obj is not None else ()
    summary = _cap(_as_text(obj.get("summary"))) if obj is not None else ""
    return TriageDecision(decision="report", items=items, summary=summary, warnings=tuple(warnings), parsed=False)


def _items(raw: object, warnings: list[str]) -> tuple[TriageItem, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        warnings.append("triage 'items' is not a list; ignored")
        return ()
    if len(raw) > MAX_ITEMS:
        warnings.append(f"triage listed {len(raw)} items; kept the first {MAX_ITEMS}")
    items: list[TriageItem] = []
    for n, entry in enumerate(raw[:MAX_ITEMS]):
        if not isinstance(entry, dict):
            warnings.append(f"triage items[{n}] is not an object; ignored")
            continue
        item_id = _token(_as_text(entry.get("id")))
        if not item_id:
            item_id = f"item-{n + 1}"
            warnings.append(f"triage items[{n}] has no id; using {item_id}")
        title = _one_line(_as_text(entry.get("title"))) or item_id
        items.append(TriageItem(id=item_id, title=title, detail=_cap(_as_text(entry.get("detail"))),
                                files=_files(entry.get("files"), n, warnings)))
    return tuple(items)


def _files(raw: object, n: int, warnings: list[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        warnings.append(f"triage items[{n}].files is not a list; ignored")
        return ()
    files = [_one_line(f) for f in raw[:MAX_ITEMS] if isinstance(f, str)]
    return tuple(f for f in files if f)


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False)[:MAX_CHARS] if isinstance(value, (list, dict, bool)) else ""


def _visible(text: str, keep: str = "") -> str:
    """Drop control and format characters (invisible text could hide instructions)."""
    return "".join(c for c in text if c in keep or unicodedata.category(c) not in ("Cc", "Cf"))


def _cap(text: str, limit: int = MAX_CHARS) -> str:
    text = _visible(text, keep="\n\t").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str) -> str:
    return _cap(" ".join(_visible(text.replace("\n", " ").replace("\t", " ")).split()))


def _token(text: str) -> str:
    """An id usable as one STATE.md token: only ``[A-Za-z0-9#._:/-]``, anything else becomes ``-``."""
    token = re.sub(r"-{2,}", "-", _UNSAFE_ID.sub("-", _visible(text).strip()))
    return token.strip("-")[:MAX_ID_CHARS]
