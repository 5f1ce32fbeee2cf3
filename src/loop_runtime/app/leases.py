"""The lease that keeps two processes from ticking the same loop at once.

Why a module of its own: the lease is a rule between processes (the CLI's ``run``, the daemon,
a Temporal worker) that share one store; taking it, renewing it while the tick runs and voiding
the lease of a dead process on this host are the same steps for every driver.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..errors import LeaseHeld

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime

    from ..ports import Clock
    from ..ports.store import LeaseStore

LEASE_TTL_S = 120.0
"""A lease not renewed for this long is free; a running tick renews it every quarter of it."""


def dead_local_owner(owner: str) -> bool:
    """A lease owner ``host:pid:nonce`` on this host whose process no longer exists."""
    import socket

    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def live_holder(store: LeaseStore, pattern: str, now: datetime) -> str | None:
    """Who ticks ``pattern`` now: the lease holder, unless its process on this host is gone."""
    holder = store.lease_holder(pattern, now)
    return None if holder is None or dead_local_owner(holder) else holder


def acquire(store: LeaseStore, pattern: str, owner: str, clock: Clock) -> None:
    """Take the loop's lease, voiding one held by a dead process on this host; ``LeaseHeld`` otherwise."""
    now = clock.now()
    if store.acquire_lease(pattern, owner, LEASE_TTL_S, now):
        return
    holder = store.lease_holder(pattern, now)
    if holder is not None and dead_local_owner(holder):
        store.release_lease(pattern, holder)  # its process is gone: the lease is void
    if not store.acquire_lease(pattern, owner, LEASE_TTL_S, now):
        raise LeaseHeld(f"pattern {pattern!r} is being ticked by another process ({holder}); try again later")


@asynccontextmanager
async def held(store: LeaseStore, pattern: str, owner: str, clock: Clock) -> AsyncIterator[None]:
    """Hold the loop's lease for the body, renewing it in the background; released however the body ends."""
    acquire(store, pattern, owner, clock)

    async def renew() -> None:
        while True:
            await asyncio.sleep(LEASE_TTL_S / 4)
            store.renew_lease(pattern, owner, LEASE_TTL_S, clock.now())

    renewing = asyncio.ensure_future(renew())
    try:
        yield
    finally:
        renewing.cancel()
        store.release_lease(pattern, owner)
