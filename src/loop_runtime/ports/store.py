"""The store's ports: one small protocol per concern, and the records they return.

The core never sees a database: it talks to ``BudgetLedger`` and ``TickJournal`` (``ports``). The
application layer and the drivers need more (leases, escalations, the event feed, when a loop is next
due), and each of them needs only some of it: a function takes the narrowest protocol that says what it
reads or writes, so a reader knows from a signature that status does not write and that the scheduler
does not decide escalations. ``adapters.store.sqlite.RunStore`` (SQLite) implements them all; ``Store`` is
that whole surface, for the one place that opens it (``app.services``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, Protocol, runtime_checkable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

from .records import (  # noqa: F401  (re-exported: the records belong with the protocols that return them)
    EscalationRecord,
    EventRecord,
    PhaseRecord,
    PruneReport,
    ReservationRecord,
    TickRecord,
    TopupRecord,
)


# --------------------------------------------------------------------------- protocols

@runtime_checkable
class LeaseStore(Protocol):
    """Who ticks a loop now: one lease per loop, renewed while its tick runs, so two processes never tick it at
    once."""

    def acquire_lease(self, pattern: str, owner: str, ttl_s: float, now: datetime) -> bool: ...
    def renew_lease(self, pattern: str, owner: str, ttl_s: float, now: datetime) -> bool: ...
    def release_lease(self, pattern: str, owner: str) -> None: ...
    def lease_holder(self, pattern: str, now: datetime) -> str | None: ...


@runtime_checkable
class TickStore(Protocol):
    """Every tick and its phases, as the journal records them (resume, recovery, status and the dashboard read
    them)."""

    def begin_tick(
        self, *, tick_id: str, run_id: str, pattern: str, level: str, backend: str, started_at: datetime, owner: str
    ) -> None: ...
    def record_phase(self, tick_id: str, phase: str, data: Mapping[str, Any], at: datetime) -> None: ...
    def phases(self, tick_id: str) -> list[PhaseRecord]: ...
    def finish_tick(
        self, tick_id: str, *, outcome: str, tokens: int, summary: Mapping[str, Any], finished_at: datetime
    ) -> None: ...
    def set_tick_status(self, tick_id: str, status: str) -> None: ...
    def get_tick(self, tick_id: str) -> TickRecord | None: ...
    def open_ticks(self, pattern: str | None = None) -> list[TickRecord]: ...
    def recent_ticks(self, pattern: str | None = None, limit: int = 50) -> list[TickRecord]: ...
    def last_tick(self, pattern: str) -> TickRecord | None: ...
    def tick_run_ids(self, pattern: str, day: date) -> set[str]: ...
    def runs_on_day(self, pattern: str, day: date) -> int: ...


@runtime_checkable
class EventStore(Protocol):
    """The append-only feed the dashboard streams and the notifier counts."""

    def add_event(
        self,
        kind: str,
        payload: Mapping[str, Any],
        at: datetime,
        *,
        pattern: str | None = None,
        tick_id: str | None = None,
    ) -> int: ...
    def events_since(self, event_id: int, limit: int = 200) -> list[EventRecord]: ...
    def count_events(self, kind: str, *, pattern: str | None, since: datetime) -> int: ...
    def last_event_id(self) -> int: ...


@runtime_checkable
class LedgerStore(Protocol):
    """Budget rows of every scope and UTC day: reservations, settled spend, spend other tools logged, top-ups."""

    def reserve(
        self, *, pattern: str, day: date, amount: int, cap: int, tick_id: str, now: datetime
    ) -> ReservationRecord | None: ...
    def settle(self, reservation_id: int, actual: int, now: datetime) -> None: ...
    def spent(self, pattern: str, day: date) -> int: ...
    def reserved(self, pattern: str, day: date) -> int: ...
    def open_reservations(self, pattern: str | None = None, *,
                          created_before: datetime | None = None) -> list[ReservationRecord]: ...
    def settle_orphans(self, live_tick_ids: set[str], now: datetime) -> list[ReservationRecord]: ...
    def external_spent(self, pattern: str, day: date) -> int: ...
    def set_external_spent(self, pattern: str, day: date, tokens: int) -> None: ...
    def add_topup(self, pattern: str, day: date, tokens: int, reason: str, at: datetime) -> None: ...
    def topups(self, pattern: str, day: date) -> int: ...
    def topup_records(self, pattern: str) -> list[TopupRecord]: ...
    def rollups(self, pattern: str | None = None, since: date | None = None) -> list[tuple[str, str, str, int, int]]: ...


@runtime_checkable
class EscalationStore(Protocol):
    """What waits for a human: opened by a tick, decided by approve/reject."""

    def add_escalation(
        self,
        *,
        pattern: str,
        tick_id: str,
        run_id: str,
        item_id: str,
        title: str,
        diff: str,
        context: Mapping[str, Any],
        created_at: datetime,
    ) -> str: ...
    def list_escalations(self, status: str | None = "open") -> list[EscalationRecord]: ...
    def get_escalation(self, esc_id: str) -> EscalationRecord | None: ...
    def resolve_escalation(
        self,
        esc_id: str,
        *,
        status: Literal["approved", "rejected"],
        decided_by: str,
        reason: str,
        at: datetime,
        result: Mapping[str, Any] = {},  # read-only default, never mutated
    ) -> None: ...


@runtime_checkable
class ScheduleStore(Protocol):
    """When each loop is next due (the scheduler writes, status and the dashboard read)."""

    def get_next_due(self, pattern: str) -> datetime | None: ...
    def set_next_due(self, pattern: str, at: datetime) -> None: ...
    def set_next_dues(self, due: Mapping[str, datetime]) -> None: ...


@runtime_checkable
class Store(LeaseStore, TickStore, EventStore, LedgerStore, EscalationStore, ScheduleStore, Protocol):
    """Everything the SQLite store offers, for the composition root that opens it once per project."""

    @property
    def secrets(self) -> tuple[str, ...]: ...

    def close(self) -> None: ...

    def prune(self, now: datetime, *, keep_days: int = 90, batch: int = 1000) -> PruneReport: ...
