"""The ecosystem's human-facing files on disk, written atomically and only where the level allows.

Why a write allowlist here and not only in the engine: R9 says an L1 loop writes nothing
but its state file, the run log, ``docs/last-run.json`` and ``.loop-context/``. Enforcing
that at the one adapter every write goes through makes it a property of the runtime,
not a convention of the code that happens to call it.

The same goes for secrets: ``write`` redacts what it is given (``at_rest``) before it
reaches the disk, whatever the caller forgot — see ``core.secrets``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
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

    def __init__(self, root: Path, *, writable: Iterable[str] | None = None,
                 secrets: Sequence[str] | None = None) -> None:
        self.root = Path(root).resolve()
        self.writable = tuple(writable) if writable is not None else None
        self._secrets = None if secrets is None else tuple(secrets)

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
        secrets = self._known_secrets()

        def redacted(old: str | None) -> str | None:
            new = fn(old)
            if new is None:
                return None
            if old and old.endswith("\n") and new.startswith(old):
                # an append (the run log): only the new lines are ours to redact, and redacting
                # them alone keeps a long log's write cheap
                return old + at_rest(path, new[len(old):], secrets)
            return at_rest(path, new, secrets)  # no secret at rest, whoever calls

        return locked_files.update(self.root, target, redacted)

    def _known_secrets(self) -> tuple[str, ...]:
        if self._secrets is None:
            self._secrets = project_secrets(self.root)
        return self._secrets


# --------------------------------------------------------------------------- no secret at rest


def project_secrets(root: Path) -> tuple[str, ...]:
    """The exact values no project file may hold: ``.env*`` values and secret-named env vars."""
    from .environment import secret_values

    return tuple(secret_values(Path(root), os.environ))


def at_rest(path: str, text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` as it may be written to ``path``: redacted, its JSON/Markdown structure intact."""
    from ..core.secrets import redact_file_text

    return redact_file_text(str(path), text, secrets)


def writable_for(level: str, state_file: str) -> tuple[str, ...]:
    """What the runtime itself may write at ``level`` (code changes happen in worktrees, not here)."""
    base = (state_file, *L1_WRITABLE, *L1_WRITABLE_DIRS)
    if level in ("L2", "L3"):
        return (*base, "loop-ledger.json")
    return base
