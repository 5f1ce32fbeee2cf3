"""Resuming a budget-halted tick: which tick, and what its journal lets it skip.

A tick halted by the budget is ``resumable``: once a human tops the budget up, it continues
from its last completed phase instead of starting over. Agent calls it completed are replayed
from the journal (no backend call, no tokens) and its worktree is reused as it was left.
``runner.resume_halted`` runs it; this module reads the journal.
"""

from __future__ import annotations

from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..ports.store import TickRecord, TickStore

RECENT = 50
"""How far back a halted tick is looked for: older ones are not worth resuming."""


def halted_tick(store: TickStore, pattern: str) -> TickRecord | None:
    """The newest resumable (budget-halted) tick of ``pattern`` among its recent ones, or None."""
    return next((t for t in store.recent_ticks(pattern, RECENT) if t.status == "resumable"), None)


def replay_of(store: TickStore, tick: TickRecord) -> dict[str, Any]:
    """What the resumed tick replays: completed agent calls by key, and each attempt's worktree."""
    replay: dict[str, Any] = {}
    for p in store.phases(tick.tick_id):
        if p.phase.startswith("agent:") and p.data.get("status") == "ok":
            replay[p.phase.removeprefix("agent:")] = p.data
        elif p.phase == "workspace":
            replay[f"workspace:{p.data.get('attempt')}"] = p.data
    return replay
