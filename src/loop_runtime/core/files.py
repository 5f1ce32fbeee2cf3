"""Read-modify-write through the ``StateWriter`` port, for every record the engine keeps.

Why a helper and not ``state.read`` then ``state.write``: between those two calls another
process may append its own run-log entry or ledger attempt, which the write would erase.
``update`` hands the writer a function of the *current* text; the file adapter runs it
under the file's lock. Writers without ``update`` (older third-party fakes) fall back to
read + write, which is fine for anything that is not shared between processes.
"""

from __future__ import annotations

from collections.abc import Callable

from ..ports import StateWriter


def update_file(state: StateWriter, path: str, fn: Callable[[str | None], str | None]) -> str | None:
    """Apply ``fn`` to the current text of ``path`` and store the result; returns the stored text."""
    upd = getattr(state, "update", None)
    if callable(upd):
        return upd(path, fn)
    old = state.read(path)
    new = fn(old)
    if new is None or new == old:
        return old
    state.write(path, new)
    return new
