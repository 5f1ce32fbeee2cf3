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
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import ConfigError, GateDenied

L1_WRITABLE = ("loop-run-log.md", "docs/last-run.json")
L1_WRITABLE_DIRS = (".loop-context/",)


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file in the same folder + rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        from .fsmode import new_file_mode

        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else new_file_mode())  # not mkstemp's 0o600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

    def write(self, path: str, text: str) -> None:
        if self.writable is not None and not any(
            path == w or (w.endswith("/") and path.startswith(w)) for w in self.writable
        ):
            raise GateDenied(f"write to {path!r} refused: not writable at this level (allowed: "
                             f"{', '.join(self.writable)})")
        text = at_rest(path, text, self._known_secrets())
        atomic_write(self._path(path), text)

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
