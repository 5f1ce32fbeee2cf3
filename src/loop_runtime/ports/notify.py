"""Notifications to humans (escalations, budget warnings, daily summaries).

Part of ``loop_runtime.ports`` (every name is importable from there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


# --------------------------------------------------------------------------- notifier


@dataclass(frozen=True)
class Notification:
    kind: str  # escalation | budget-80 | budget-100 | kill | daemon-error | daily-summary
    title: str
    body: str
    pattern: str | None = None
    url: str | None = None


@runtime_checkable
class Notifier(Protocol):
    def notify(self, note: Notification) -> None: ...


