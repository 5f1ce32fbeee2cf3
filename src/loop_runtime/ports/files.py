"""The project's human-facing files, the clock, and publishing a change (a pull request).

Part of ``loop_runtime.ports`` (every name is importable from there).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


# --------------------------------------------------------------------------- state files


@runtime_checkable
class StateWriter(Protocol):
    """Reads and writes the ecosystem's human-facing files (STATE.md, run log, ...).

    Paths are relative to the project root. Writes are atomic (temp file + rename) in
    the file adapter; ``MemoryStateWriter`` keeps them in a dict.
    """

    def read(self, path: str) -> str | None: ...

    def write(self, path: str, text: str) -> None: ...

    def update(self, path: str, fn: Callable[[str | None], str | None]) -> str | None:
        """Read-modify-write as one step: ``fn`` gets the text as it is now (``None`` if absent).

        The file adapter holds the file's lock from the read to the atomic replace, so
        concurrent ticks never lose each other's entries. Returns the text now stored.
        (Optional for third-party writers: ``core.files.update_file`` falls back to
        read + write.)
        """
        ...


# --------------------------------------------------------------------------- clock


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC datetime."""
        ...


# --------------------------------------------------------------------------- publishing (GitHub)


@runtime_checkable
class ChangePublisher(Protocol):
    """Pushes an accepted change to its ``loop/*`` branch and opens a pull request (``adapters.github``).

    ``publish`` takes a ``core.github_pr.PublishRequest`` and returns a ``Published``; a refused
    merge raises ``errors.GithubRefused`` (the tick escalates).
    """

    def publish(self, request: Any) -> Any: ...

    def comment(self, number: int, body: str) -> str | None: ...
