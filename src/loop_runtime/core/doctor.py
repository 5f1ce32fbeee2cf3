"""``loop-runtime doctor``'s findings as values: what is ready, what is missing, and how to fix it (pure).

Why a verdict per check and not a log: a user (or the GitHub Action) needs to know in
one glance whether a loop can run here, and the exit code says the same — 0 ready,
2 something only a human can do (log in, grant a permission), 1 broken (a file that
does not parse).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

OK, INFO, HUMAN, BROKEN = "ok", "info", "human", "broken"
MARK = {OK: "✓", INFO: "·", HUMAN: "!", BROKEN: "✗"}


@dataclass(frozen=True)
class Check:
    area: str  # files | git | tests | backend | github | temporal
    name: str
    status: str  # ok | info | human | broken
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"area": self.area, "name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def exit_code(checks: Sequence[Check]) -> int:
    if any(c.status == BROKEN for c in checks):
        return 1
    if any(c.status == HUMAN for c in checks):
        return 2
    return 0


def summary(checks: Sequence[Check]) -> str:
    code = exit_code(checks)
    return {0: "ready", 2: "a human must act before the loops can run", 1: "broken: fix the files above"}[code]


def render(checks: Sequence[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{MARK.get(c.status, '?')} {c.area}: {c.name} — {c.detail}")
        if c.fix and c.status in (HUMAN, BROKEN):
            lines.append(f"    fix: {c.fix}")
    lines.append(f"doctor: {summary(checks)}")
    return "\n".join(lines)


def as_json(checks: Sequence[Check]) -> dict[str, Any]:
    return {"status": {0: "ready", 2: "human", 1: "broken"}[exit_code(checks)], "exitCode": exit_code(checks),
            "checks": [c.as_json() for c in checks]}
