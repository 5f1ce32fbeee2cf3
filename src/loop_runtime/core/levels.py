"""Autonomy levels L0→L3 and the rule that the lowest constraint wins (R8).

Why a module of its own: the level is decided from several independent sources (the
configured level, the budget, readiness, the kill switch) and every driver must combine
them the same way, with the reason kept so a human can see *why* a loop ran at L1.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..formats.levels import LEVELS  # the one list of levels (formats validate it too)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .budget import BudgetVerdict
    from .killswitch import KillState

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
    """The effective level of one tick and every constraint that was considered.

    ``effective`` is a level, or ``"paused"`` (a kill switch) or ``"halted"`` (the budget): a
    loop in either state runs no tick at all, which ``status`` shows and the engine stops on.
    """

    configured: str
    effective: str
    reason: str

    @property
    def stopped(self) -> bool:
        return self.effective in STOPPED


#: Effective "levels" at which no tick runs: the kill switch is engaged, or a budget is spent.
STOPPED = ("paused", "halted")

#: Why L2/L3 fall to L1 where no worktree can be made; one text for the engine, status and dashboard.
NO_WORKTREE = "not a git repository: acting needs a worktree"


def lowest(configured: str, caps: list[tuple[str, str]]) -> LevelDecision:
    """Combine the configured level with ``(cap_level, reason)`` constraints; the lowest wins."""
    effective, reason = configured, "configured"
    for cap, why in caps:
        if rank(cap) < rank(effective):
            effective, reason = cap, why
    return LevelDecision(configured=configured, effective=effective, reason=reason)


def effective_level(configured: str, *, budget: BudgetVerdict, kill: KillState, can_act: bool = True,
                    source: str = "configured") -> LevelDecision:
    """THE rule for the level a loop runs at now; the engine, ``status``, the scheduler and the
    dashboard all call it, so they cannot disagree (tests/test_rule_agreement.py).

    Order matters and is the ecosystem's: a kill switch stops everything (R12), a spent budget halts
    (R4), then the lowest of the constraints wins (R8): ≥80% of a budget → L1, no git repository → L1.
    ``budget`` is the verdict on the tightest scope over the loop (``core.budget.judge``); ``source``
    names where the configured level came from, the reason shown when nothing lowered it.
    """
    if kill.engaged:
        return LevelDecision(configured, "paused", f"kill switch ({kill.source})")
    if budget.halt:
        return LevelDecision(configured, "halted", budget.reason)
    caps: list[tuple[str, str]] = []
    if budget.level_cap:
        caps.append((budget.level_cap, budget.reason))
    if rank(configured) >= 2 and not can_act:
        caps.append(("L1", NO_WORKTREE))
    decision = lowest(configured, caps)
    return decision if decision.reason != "configured" else LevelDecision(configured, configured, source)
