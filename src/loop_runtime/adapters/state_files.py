"""The ecosystem's human-facing files on disk, written atomically and only where the level allows.

Why a write allowlist here and not only in the engine: R9 says an L1 loop writes nothing
but its state file, the run log, ``docs/last-run.json`` and ``.loop-context/``. Enforcing
that at the one adapter every write goes through makes it a property of the runtime,
not a convention of the code that happens to call it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import ConfigError, GateDenied
from . import locked_files
from .locked_files import atomic_write  # noqa: F401  (re-exported: the one atomic writer)

L1_WRITABLE = ("loop-run-log.md", "docs/last-run.json")
L1_WRITABLE_DIRS = (".loop-context/",)


class FileStateWriter:
    """``ports.StateWriter`` over the project root.

    ``writable`` lists the relative paths (and folder prefixes ending in ``/``) this
    writer may change; anything else raises ``GateDenied`` — the runtime's own write guard.
    """

    def __init__(self, root: Path, *, writable: Iterable[str] | None = None) -> None:
        self.root = Path(root).resolve()
        self.writable = tuple(writable) if writable is not None else None

    def _path(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        if p != self.root and self.root not in p.parents:
            raise ConfigError(rel, "path", rel, message=f"path escapes the project root: {rel!r}")
        return p

    def read(self, path: str) -> str | None:
        p = self._path(path)
        try:
            return p.read_text("utf-8")
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            return ""
        except UnicodeDecodeError:
            raise ConfigError(path, "encoding", None, message="not UTF-8 text") from None

    def _check_writable(self, path: str) -> None:
        if self.writable is not None and not any(
            path == w or (w.endswith("/") and path.startswith(w)) for w in self.writable
        ):
            raise GateDenied(f"write to {path!r} refused: not writable at this level (allowed: "
                             f"{', '.join(self.writable)})")

    def write(self, path: str, text: str) -> None:
        """Replace the whole file (under its lock, atomically)."""
        self.update(path, lambda _old: text)

    def update(self, path: str, fn: Callable[[str | None], str | None]) -> str | None:
        """Read-modify-write under the file's lock: ``fn`` sees the text as it is now.

        Locking and atomic replacement live in ``locked_files``; this is the seam where
        the level's write allowlist applies to every writer.
        """
        self._check_writable(path)
        target = self._path(path)
        if target.is_dir():
            raise ConfigError(path, "path", path, message=f"{path} is a directory, not a file")
        return locked_files.update(self.root, target, fn)


def writable_for(level: str, state_file: str) -> tuple[str, ...]:
    """What the runtime itself may write at ``level`` (code changes happen in worktrees, not here)."""
    base = (state_file, *L1_WRITABLE, *L1_WRITABLE_DIRS)
    if level in ("L2", "L3"):
        return (*base, "loop-ledger.json")
    return base
