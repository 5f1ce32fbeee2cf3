"""The tick lifecycle as data (after h11's ``_state.py``): one table, one error type.

    idle → discovering → triaging ─┬→ reporting ───────────────────────────────→ done
                                   └→ implementing → verifying → gated ─┬→ committed → done
                                         ↑                │             └→ escalated → done
                                         └──── rejected ←─┘
    any working state → halted (kill switch, budget, timeout) → done
    escalated also from: triaging (the item already failed max attempts), committed (GitHub
    refused the merge), and implementing/verifying/rejected (a check or the breaker)

Every transition the engine makes goes through ``advance`` (``core.tick.Tick.phase`` is
read-only); an illegal one raises ``IllegalTransition`` — a bug in the engine, never a user error.
"""

from __future__ import annotations

# Rules
TRANSITIONS: dict[str, frozenset[str]] = {
    "idle": frozenset({"discovering", "halted"}),
    "discovering": frozenset({"triaging", "reporting", "halted"}),
    "triaging": frozenset({"reporting", "implementing", "escalated", "halted"}),
    "implementing": frozenset({"verifying", "rejected", "escalated", "halted"}),
    "verifying": frozenset({"gated", "rejected", "escalated", "halted"}),
    "rejected": frozenset({"implementing", "escalated", "halted"}),
    "gated": frozenset({"committed", "escalated", "halted"}),
    "reporting": frozenset({"done"}),
    "committed": frozenset({"done", "escalated"}),
    "escalated": frozenset({"done"}),
    "halted": frozenset({"done"}),
    "done": frozenset(),
}

PHASES = tuple(TRANSITIONS)


class IllegalTransition(RuntimeError):
    def __init__(self, src: str, dst: str) -> None:
        super().__init__(f"illegal tick transition {src} → {dst}")
        self.src, self.dst = src, dst


def advance(src: str, dst: str) -> str:
    """``dst`` when the table allows ``src → dst``, else ``IllegalTransition``."""
    if dst not in TRANSITIONS.get(src, frozenset()):
        raise IllegalTransition(src, dst)
    return dst
