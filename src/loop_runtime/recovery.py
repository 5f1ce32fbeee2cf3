"""Crash recovery: finish what a killed process left, from its journal, without redoing work.

A tick killed with ``kill -9`` at any phase leaves a ``running`` tick in the store whose
owner no longer holds the lease. The next process to take the lease:

* settles the dead tick's open reservations at their full amount (fail closed — the
  tokens may have been spent before the crash);
* writes the tick's one run-log entry if the journal shows none was written (outcome
  ``no-op`` with note ``crashed``, tokens = what the journal recorded);
* marks orphan worktrees ``stale`` and removes them (branches with commits are kept);
* never redoes a commit: a journal that recorded ``commit`` keeps its sha.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .formats.runlog import RunLogEntry, append_entry


def _journal_tokens(phases: list[Any]) -> int:
    total = 0
    for p in phases:
        if p.phase.startswith("agent:"):
            u = p.data.get("usage") or {}
            total += sum(int(u.get(k, 0) or 0) for k in ("input", "output", "cache_write", "cache_read"))
    return total


def recover(project: Any, store: Any, pattern: str, now: datetime) -> list[str]:
    """Finalise crashed ticks of ``pattern``; the caller holds the pattern's lease. Returns their ids."""
    from .adapters import locked_files

    recovered: list[str] = []
    for tick in store.open_ticks(pattern):
        phases = store.phases(tick.tick_id)
        store.set_tick_status(tick.tick_id, "crashed")
        settled = store.settle_orphans({t.tick_id for t in store.open_ticks(None)}, now)
        # what the journal recorded as settled, plus the orphan reservations just charged in full
        tokens = _journal_tokens(phases) + sum(r.amount for r in settled if r.tick_id == tick.tick_id)
        if not any(p.phase == "logged" for p in phases):
            entry = RunLogEntry(run_id=tick.run_id, pattern=pattern, duration_s=0, items_found=0, actions_taken=0,
                                escalations=0, tokens_estimate=tokens, outcome="no-op",
                                extras={"note": "crashed", "tick": tick.tick_id})
            locked_files.update(project.root, project.root / "loop-run-log.md",
                                lambda text, e=entry: append_entry(text, e, now=now, project=project.root.name))
            store.record_phase(tick.tick_id, "logged", {"outcome": "no-op", "note": "crashed"}, now)
        store.finish_tick(tick.tick_id, outcome="crashed", tokens=tokens,
                          summary={"note": "recovered after crash", "phases": [p.phase for p in phases][-20:]},
                          finished_at=now)
        store.set_tick_status(tick.tick_id, "crashed")
        store.add_event("tick.recovered", {"tick": tick.tick_id, "tokens": tokens}, now, pattern=pattern,
                        tick_id=tick.tick_id)
        recovered.append(tick.tick_id)
    if recovered and project.is_git and (project.root / ".loop-worktrees").exists():
        from .adapters.git_workspace import GitWorkspace

        live: set[str] = set()  # worktrees of ticks still running in other processes
        for other in store.open_ticks(None):
            live |= {str(p.data.get("run_id")) for p in store.phases(other.tick_id) if p.phase == "workspace"}
        GitWorkspace(project.root).recover_stale(0, live)
    return recovered
