"""Leases: who ticks a loop now (``ports.store.LeaseStore``).

A pattern is ticked by one process at a time: ``acquire_lease`` takes a row in ``leases`` only if
it is free, expired or already ours, inside ``BEGIN IMMEDIATE`` (SQLite's write lock), so two
processes cannot both see it free. Leases expire, so a crashed process blocks its pattern for at
most one TTL.
"""

from __future__ import annotations

from datetime import datetime

from .base import StoreBase
from .schema import expiry_ts, to_ts

__all__ = ["Leases"]


class Leases(StoreBase):
    """``LeaseStore`` over the ``leases`` table."""

    def acquire_lease(self, pattern: str, owner: str, ttl_s: float, now: datetime) -> bool:
        """Take ``pattern``'s lease if it is free, expired or already ``owner``'s."""
        with self._tx("acquire_lease") as conn:
            row = conn.execute("SELECT owner, expires_at FROM leases WHERE pattern = ?", (pattern,)).fetchone()
            if row is not None and row[0] != owner and row[1] > to_ts(now):
                return False
            conn.execute(
                "INSERT INTO leases (pattern, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (pattern) DO UPDATE SET owner = excluded.owner, "
                "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                (pattern, owner, to_ts(now), expiry_ts(now, ttl_s)),
            )
            return True

    def renew_lease(self, pattern: str, owner: str, ttl_s: float, now: datetime) -> bool:
        """Extend ``owner``'s lease; False when another process has taken it meanwhile."""
        with self._tx("renew_lease") as conn:
            cur = conn.execute(
                "UPDATE leases SET expires_at = ? WHERE pattern = ? AND owner = ?",
                (expiry_ts(now, ttl_s), pattern, owner),
            )
            return cur.rowcount == 1

    def release_lease(self, pattern: str, owner: str) -> None:
        """Give the lease back (a no-op when ``owner`` no longer holds it)."""
        with self._tx("release_lease") as conn:
            conn.execute("DELETE FROM leases WHERE pattern = ? AND owner = ?", (pattern, owner))

    def lease_holder(self, pattern: str, now: datetime) -> str | None:
        """Who holds an unexpired lease on ``pattern``, if anyone."""
        owner = self._one(
            "lease_holder",
            "SELECT owner FROM leases WHERE pattern = ? AND expires_at > ?",
            (pattern, to_ts(now)),
        )
        return None if owner is None else str(owner)
