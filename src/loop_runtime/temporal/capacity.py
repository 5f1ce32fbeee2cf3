"""A worker's capacity in ticks: ``--concurrency N`` ticks at a time, on either path.

On the whole-tick path a tick is one ``run_tick`` activity, so ``N`` activity slots on the shared queue
bound the ticks. On the per-port path a tick holds no activity between its calls: ``open_tick`` takes a
slot for a moment and the tick's session (its clone, store, worktrees) then lives on in the worker until
``close_tick``. Counting slots alone, one worker would open a tick per repository at once, whatever
``N`` says — and keep polling the shared queue while busy, taking ticks an idle worker should have had.

So the shared queue's activity slots come from ``TickSlots``: a slot is handed out (and the worker
polls) only while the slots in use plus the open sessions are fewer than ``N``. A session that
nobody closed (its workflow was terminated) expires after ``tick_session.IDLE_TTL_S``, checked here
too, so it cannot hold the worker's capacity for ever.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from temporalio.worker import CustomSlotSupplier, SlotPermit

__all__ = ["TickSlots"]

#: how often a waiting reservation looks again (a session closes in an activity thread)
POLL_S = 0.05
#: how often a waiting reservation closes the sessions idle past their time (``tick_session.expire``)
EXPIRE_EVERY_S = 5.0


class TickSlots(CustomSlotSupplier):
    """Activity slots for the shared queue: at most ``n`` minus the ticks whose sessions are open."""

    def __init__(self, n: int, sessions: Callable[[], int], expire: Callable[[], None] | None = None) -> None:
        self.n = max(int(n), 1)
        self.sessions = sessions
        self.expire = expire
        self.used = 0
        self._lock = threading.Lock()

    def _take(self) -> bool:
        with self._lock:
            if self.used + self.sessions() < self.n:
                self.used += 1
                return True
        return False

    async def reserve_slot(self, ctx: object) -> SlotPermit:
        waited = 0.0
        while not self._take():
            await asyncio.sleep(POLL_S)
            waited += POLL_S
            if self.expire is not None and waited >= EXPIRE_EVERY_S:  # a session nobody closes gives way
                waited = 0.0
                await asyncio.get_running_loop().run_in_executor(None, self.expire)
        return SlotPermit()

    def try_reserve_slot(self, ctx: object) -> SlotPermit | None:
        return SlotPermit() if self._take() else None

    def mark_slot_used(self, ctx: object) -> None:
        pass

    def release_slot(self, ctx: object) -> None:
        with self._lock:
            self.used = max(self.used - 1, 0)
