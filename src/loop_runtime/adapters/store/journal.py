"""``ports.TickJournal`` over the run store: what the engine records about a tick, durably.

Why an adapter of its own: the engine only knows the journal port (begin, record, finish,
escalate, event); every process of a project shares the SQLite store behind it, so a tick
killed at any phase can be resumed or recovered from what it recorded here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date, datetime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    from ...ports.store import EscalationStore, EventStore, TickStore

    class JournalStore(TickStore, EventStore, EscalationStore, Protocol):
        """What a journal writes to: ticks and their phases, events, escalations."""

FAULT_ENV = "LOOP_RUNTIME_FAULT_AT"
"""Crash-safety tests name a journal phase here; the process dies like ``kill -9`` right after recording it."""


def crash_if_asked(phase: str) -> None:
    """The fault-injection hook of the crash-safety tests (``LOOP_RUNTIME_FAULT_AT=<phase>``)."""
    fault = os.environ.get(FAULT_ENV)
    if fault and fault == phase:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def begun_run_ids(store: TickStore, pattern: str, day: date) -> set[str]:
    """Run ids of the ticks this runtime began on ``day`` that count as runs (``core.schedule.runs_today``'s
    ``begun``): a tick the kill switch paused did no work, so it uses up none of the day's runs."""
    begun = store.tick_run_ids(pattern, day)
    if not begun:
        return begun
    # today's ticks are the newest: a few more than there are today's run ids covers every one of them
    paused = {t.run_id for t in store.recent_ticks(pattern, len(begun) + 8)
              if t.started_at.date() == day and (t.summary or {}).get("haltReason") == "paused"}
    return begun - paused


class StoreJournal:
    """``ports.TickJournal`` over the SQLite store; ``owner`` is the process that holds the loop's lease."""

    def __init__(self, store: JournalStore, owner: str) -> None:
        self.store, self.owner = store, owner

    def begin(self, *, tick_id: str, run_id: str, pattern: str, level: str, backend: str, at: datetime) -> None:
        self.store.begin_tick(tick_id=tick_id, run_id=run_id, pattern=pattern, level=level, backend=backend,
                              started_at=at, owner=self.owner)

    def record(self, tick_id: str, phase: str, data: Mapping[str, Any], at: datetime) -> None:
        self.store.record_phase(tick_id, phase, data, at)
        crash_if_asked(phase)

    def finish(self, tick_id: str, *, status: str, outcome: str, tokens: int, summary: Mapping[str, Any],
               at: datetime) -> None:
        self.store.finish_tick(tick_id, outcome=outcome, tokens=tokens, summary=summary, finished_at=at)
        self.store.set_tick_status(tick_id, status)

    def escalate(self, *, tick_id: str, run_id: str, pattern: str, item_id: str, title: str, diff: str,
                 context: Mapping[str, Any], at: datetime) -> str:
        return str(self.store.add_escalation(pattern=pattern, tick_id=tick_id, run_id=run_id, item_id=item_id,
                                             title=title, diff=diff, context=context, created_at=at))

    def event(self, kind: str, payload: Mapping[str, Any], at: datetime, *, pattern: str | None = None,
              tick_id: str | None = None) -> None:
        self.store.add_event(kind, payload, at, pattern=pattern, tick_id=tick_id)

    def run_ids_on_day(self, pattern: str, day: date) -> set[str]:
        """The runs this runtime began on ``day`` (``begun_run_ids``), for the engine's runs/day count."""
        return begun_run_ids(self.store, pattern, day)
