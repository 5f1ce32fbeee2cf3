"""A worker's capacity in ticks (``temporal.capacity``): ``--concurrency N`` means N ticks at a time on the
per-port path too, where a tick's session outlives the ``open_tick`` activity that opened it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("temporalio")

from loop_runtime.temporal import capacity  # noqa: E402
from loop_runtime.temporal.capacity import TickSlots  # noqa: E402

CTX = SimpleNamespace()


def test_an_open_session_holds_the_workers_capacity_until_it_closes() -> None:
    sessions = [0]
    slots = TickSlots(1, lambda: sessions[0])
    assert slots.try_reserve_slot(CTX) is not None  # polls for a tick
    assert slots.try_reserve_slot(CTX) is None
    sessions[0] = 1  # open_tick opened the tick's session …
    slots.release_slot(CTX)  # … and its activity ended: the session still holds the tick
    assert slots.try_reserve_slot(CTX) is None

    async def waits() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slots.reserve_slot(CTX), 0.3)  # no poll: another worker takes the next tick
        sessions[0] = 0  # close_tick
        await asyncio.wait_for(slots.reserve_slot(CTX), 5)

    asyncio.run(waits())


def test_a_session_nobody_closes_gives_way_when_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity, "EXPIRE_EVERY_S", 0.1)
    sessions = [1]
    slots = TickSlots(1, lambda: sessions[0], expire=lambda: sessions.__setitem__(0, 0))
    asyncio.run(asyncio.wait_for(slots.reserve_slot(CTX), 5))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.lists(st.sampled_from(["reserve", "open", "fail", "close"]), max_size=60))
def test_slots_in_use_and_open_sessions_never_exceed_the_concurrency(n: int, ops: list[str]) -> None:
    sessions = [0]
    slots = TickSlots(n, lambda: sessions[0])
    for op in ops:
        if op == "reserve":
            slots.try_reserve_slot(CTX)
        elif op == "open" and slots.used:  # an activity in a slot opened a session, then ended
            sessions[0] += 1
            slots.release_slot(CTX)
        elif op == "fail" and slots.used:  # an activity ended without a session
            slots.release_slot(CTX)
        elif op == "close" and sessions[0]:
            sessions[0] -= 1
        assert slots.used + sessions[0] <= n
