"""Autonomy levels L0→L3 and the rule that the lowest constraint wins (R8).

Why a module of its own: the level is decided from several independent sources (the
configured level, the budget, readiness, the kill switch) and every driver must combine
them the same way, with the reason kept so a human can see *why* a loop ran at L1.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("L0", "L1", "L2", "L3")

#: What each level may do, enforced at run time (R9–R11).
RULES = {
    "L0": "Draft: prompts are drafted for review; no agent is called and nothing is written.",
    "L1": "Report-only: triage and write the state file and run log; no code edits, no sub-agents.",
    "L2": "Assisted: fixes only inside an isolated git worktree on branch loop/<run-id>, checked by "
    "tests, gates and a separate verifier; a human merges.",
    "L3": "Unattended: as L2, and a fix may be merged only when gate.yaml's autoMergeAllowlist allows "
    "every path and the verifier says APPROVE (and promotion is merge-ready when promotion.yaml exists).",
}


def is_level(value: object) -> bool:
    return isinstance(value, str) and value in LEVELS


def rank(level: str) -> int:
    return LEVELS.index(level)


@dataclass(frozen=True)
class LevelDecision:
    """The effective level of one tick and every constraint that was considered."""

    configured: str
    effective: str
    reason: str


def lowest(configured: str, caps: list[tuple[str, str]]) -> LevelDecision:
    """Combine the configured level with ``(cap_level, reason)`` constraints; the lowest wins."""
    effective, reason = configured, "configured"
    for cap, why in caps:
        if rank(cap) < rank(effective):
            effective, reason = cap, why
    return LevelDecision(configured=configured, effective=effective, reason=reason)
