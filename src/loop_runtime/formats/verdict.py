"""Read a verifier's ``## Verdict: APPROVE | REJECT | ESCALATE_HUMAN`` (R28).

The verifier is an agent, so its output is untrusted text: the default stance is
REJECT. A verdict counts only when a line says ``Verdict:`` followed by one keyword;
the contract's own template line (``APPROVE | REJECT | ESCALATE_HUMAN``, which an
agent may echo) is not a verdict. When several verdict lines appear, the last one
wins (agents revise themselves). ``ESCALATE`` alone is read as ESCALATE_HUMAN because
doubt should reach a human, never an approval.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

VerdictKind = Literal["APPROVE", "REJECT", "ESCALATE_HUMAN"]
MAX_REASONS = 10
MAX_REASON_CHARS = 300

_VERDICT = re.compile(
    r"^\s*(?:[-*+>]\s*)?(?:#{1,6}\s*)?[*_]{0,2}\s*verdict\s*[*_]{0,2}\s*:\s*[*_`]{0,2}\s*"
    r"(APPROVED?|REJECT(?:ED)?|ESCALATE(?:[ _-]?HUMAN)?)\b[*_`]{0,2}(.*)$",
    re.IGNORECASE,
)
_LABEL = re.compile(
    r"^\s*(?:[-*+]\s+|\d+[.)]\s+)?(#{1,6}\s*)?[*_]{0,2}\s*(?:reasons?|why)\b\s*(?:\([^)]*\))?"
    r"\s*[*_]{0,2}\s*(:)?\s*[*_]{0,2}\s*(.*)$",
    re.IGNORECASE,
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*\S)\s*$")
_HEADING = re.compile(r"^\s*#{1,6}\s")


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    found: bool
    reasons: tuple[str, ...]


def parse_verdict(text: str) -> Verdict:
    """The last verdict line in ``text``; none (or only the template) means REJECT, found=False."""
    lines = text.splitlines()
    at, kind, trailing = None, None, ""
    for i, line in enumerate(lines):
        match = _VERDICT.match(line)
        if match and not match.group(2).lstrip().startswith("|"):
            at, kind, trailing = i, _kind(match.group(1)), match.group(2)
    if at is None or kind is None:
        return Verdict(kind="REJECT", found=False, reasons=())
    reasons = _reasons(lines, at, trailing)
    return Verdict(kind=kind, found=True, reasons=reasons)


def combine_verdicts(verdicts: Iterable[Verdict]) -> Verdict:
    """Several checkers: any ESCALATE_HUMAN escalates, only unanimous APPROVE approves."""
    items = list(verdicts)
    if not items:
        return Verdict(kind="REJECT", found=False, reasons=("no verifier verdict",))
    if any(v.kind == "ESCALATE_HUMAN" for v in items):
        kind: VerdictKind = "ESCALATE_HUMAN"
    elif all(v.kind == "APPROVE" for v in items):
        kind = "APPROVE"
    else:
        kind = "REJECT"
    deciding = [v for v in items if v.kind == kind] if kind != "APPROVE" else items
    reasons = tuple(r for v in deciding for r in v.reasons)[:MAX_REASONS]
    return Verdict(kind=kind, found=all(v.found for v in items), reasons=reasons)


def _kind(word: str) -> VerdictKind:
    word = word.upper()
    if word.startswith("APPROVE"):
        return "APPROVE"
    if word.startswith("REJECT"):
        return "REJECT"
    return "ESCALATE_HUMAN"


def _reasons(lines: list[str], at: int, trailing: str) -> tuple[str, ...]:
    """Trailing verdict text, then list items under a Reasons/Why label (else right after the verdict)."""
    reasons: list[str] = []
    head = _tidy(trailing.lstrip(" \t—–-:*_`"))
    if head:
        reasons.append(head)
    label = _label_index(lines, at)
    if label is not None:
        inline = _label_text(lines[label])
        if inline:
            reasons.append(inline)
        reasons.extend(_list_after(lines, label))
    else:
        reasons.extend(_list_after(lines, at))
    return tuple(r[:MAX_REASON_CHARS] for r in reasons if r)[:MAX_REASONS]


def _label_index(lines: list[str], at: int) -> int | None:
    """The first Reasons/Why label after the verdict, else the last one before it."""
    labels = [i for i, line in enumerate(lines) if _label_text(line) is not None and not _VERDICT.match(line)]
    after = [i for i in labels if i > at]
    before = [i for i in labels if i < at]
    return after[0] if after else (before[-1] if before else None)


def _label_text(line: str) -> str | None:
    """Inline text of a ``Reasons:`` / ``### Why`` label line, None when the line is not one."""
    match = _LABEL.match(line)
    if match is None:
        return None
    heading, colon, rest = match.groups()
    if not heading and not colon and rest.strip():
        return None  # prose that merely starts with "Why ..."
    return _tidy(rest)


def _list_after(lines: list[str], start: int) -> list[str]:
    """List items following line ``start`` until prose, a heading or another verdict."""
    items: list[str] = []
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        if _HEADING.match(line) or _VERDICT.match(line):
            break
        match = _LIST_ITEM.match(line)
        if not match:
            if items:
                break
            continue
        items.append(_tidy(match.group(1)))
        if len(items) >= MAX_REASONS:
            break
    return items


def _tidy(text: str) -> str:
    return " ".join(text.replace("**", "").split())[:MAX_REASON_CHARS]
