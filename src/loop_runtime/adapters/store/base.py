"""What every concern of the run store shares: one connection, its lock, and the redaction seam.

Each concern (``leases``, ``ticks``, ``events``, ``ledger``, ``escalations``, ``schedule``,
``retention``) is a mixin over ``StoreBase``; ``sqlite.RunStore`` opens the connection and
composes them. Every query goes through ``_read`` (the lock, the error mapping, closed-store
check) or ``_tx`` (one ``BEGIN IMMEDIATE`` transaction), and every free-text or JSON value
written goes through ``_text``/``_json`` — so no concern can skip the lock or store a secret.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ...errors import StoreError
from .schema import dump_json

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    import threading
    from typing import Any

__all__ = ["StoreBase"]


class StoreBase:
    """The shared connection plumbing; ``RunStore`` sets ``path``, ``_lock``, ``_conn`` and ``secrets``."""

    path: Path
    _lock: threading.RLock
    _conn: sqlite3.Connection | None

    if TYPE_CHECKING:
        @property
        def secrets(self) -> tuple[str, ...]: ...

    # ------------------------------------------------------------------ redaction (no secret at rest)

    def _text(self, text: str | None) -> str | None:
        from ...core.redact import redact

        return text if not text else redact(text, extra_secrets=self.secrets)

    def _json(self, value: Mapping[str, Any]) -> str:
        from ...core.secrets import redact_json_text

        # encode first (datetimes, paths → strings), so every string is seen by the redactor; the
        # text is scanned once and left byte for byte when nothing in it can be a secret
        return redact_json_text(dump_json(value), self.secrets)

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Map sqlite3 and OS errors onto ``StoreError`` naming the database and the operation."""
        try:
            yield
        except StoreError:
            raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {what} failed: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"{self.path}: {what} failed: {exc.strerror or exc}") from exc

    @contextmanager
    def _read(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._guard(what):
            if self._conn is None:
                raise StoreError(f"{self.path}: {what} failed: the store is closed")
            yield self._conn

    @contextmanager
    def _tx(self, what: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: the write lock is taken before the first read."""
        with self._read(what) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _one(self, what: str, sql: str, args: tuple[Any, ...] = ()) -> Any:
        with self._read(what) as conn:
            row = conn.execute(sql, args).fetchone()
        return None if row is None else row[0]
