"""``TickResult``: the structured, loggable outcome of one tick."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..ports import Usage

#: Outcomes written to the run log (the ecosystem's four) plus ``halted`` (budget / kill),
#: which the run log records as ``no-op`` with a note.
OUTCOMES = ("no-op", "report-only", "fix-proposed", "escalated", "halted")

VERDICT_WORDS = {"APPROVE": "accept", "REJECT": "reject", "ESCALATE_HUMAN": "escalate"}


@dataclass(frozen=True)
class TickResult:
    tick_id: str
    run_id: str
    pattern: str
    pattern_name: str
    level: str
    effective_level: str
    level_reason: str
    decision: str  # noop | report | act | paused | halted | draft
    outcome: str  # one of OUTCOMES
    tokens: int
    usage: dict[str, Usage] = field(default_factory=dict)
    lines: tuple[str, ...] = ()
    verdict: str | None = None  # APPROVE | REJECT | ESCALATE_HUMAN
    items_found: int = 0
    actions_taken: int = 0
    escalations: int = 0
    escalation_id: str | None = None
    branch: str | None = None
    commit: str | None = None
    merged: bool = False
    note: str = ""
    duration_s: float = 0.0
    attempts: int = 0
    halt_reason: str | None = None

    @property
    def exit_code(self) -> int:
        """0 completed (incl. no-op and paused); 2 a human is needed (escalation, gate hold, budget or
        runs/day halt)."""
        if self.outcome == "escalated":
            return 2
        if self.outcome == "halted" and self.halt_reason not in ("kill", "paused"):
            return 2  # budget, runs/day cap, timeout, outside change: a human decides what next
        return 0

    @property
    def headline(self) -> str:
        verdict = f" ({VERDICT_WORDS.get(self.verdict, self.verdict.lower())})" if self.verdict else ""
        # an act decision below L2 only reports: the tick did not act, so it is not headed "act"
        word = "report" if self.decision == "act" and self.outcome == "report-only" else self.decision
        return f"{word}{verdict} — {self.tokens} tokens"

    def as_json(self) -> dict[str, Any]:
        return {
            "tickId": self.tick_id,
            "runId": self.run_id,
            "pattern": self.pattern,
            "level": self.level,
            "effectiveLevel": self.effective_level,
            "levelReason": self.level_reason,
            "decision": self.decision,
            "outcome": self.outcome,
            "verdict": self.verdict,
            "tokens": self.tokens,
            "usage": {role: u.as_dict() for role, u in self.usage.items()},
            "itemsFound": self.items_found,
            "actionsTaken": self.actions_taken,
            "escalations": self.escalations,
            "escalationId": self.escalation_id,
            "branch": self.branch,
            "commit": self.commit,
            "merged": self.merged,
            "attempts": self.attempts,
            "note": self.note,
            "haltReason": self.halt_reason,
            "durationSeconds": round(self.duration_s, 3),
            "lines": list(self.lines),
            "exitCode": self.exit_code,
        }
