"""Preflight, the I/O half: read what the tick will read, and prove every write target writable.

Nothing here writes, creates or locks anything: a failed preflight must leave the tree
byte-identical (no ``.loop-runtime/`` either). A write target is refused when it is a
directory, not a regular file, a symlink (or below one) that leads outside the project,
read-only (no write bit — checked on the mode as well, since root ignores permissions),
or when the folder that would receive its temp file cannot be written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError


def _inside(root: Path, rel: str) -> Path:
    """The real path of ``rel``, refusing absolute paths, ``..`` and symlinks leading out."""
    if not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        raise ConfigError(rel, "path", rel, message=f"path escapes the project root: {rel!r}")
    real = (root / rel).resolve()
    if real != root and root not in real.parents:
        raise ConfigError(rel, "path", rel, message=f"{rel} resolves outside the project ({real}); a symlink "
                          "may not lead loop-runtime's writes out of the project")
    return real


def read_texts(root: Path, paths: Iterable[str]) -> dict[str, str | None]:
    """The text of each path (``None`` when absent); a folder or non-UTF-8 file is an error."""
    root = Path(root).resolve()
    out: dict[str, str | None] = {}
    for rel in paths:
        real = _inside(root, rel)
        try:
            mode = real.stat().st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError
            if not stat.S_ISREG(mode):  # a FIFO or device would block or never end
                raise ConfigError(rel, "path", rel, message=f"{rel} is not a regular file")
            out[rel] = real.read_text("utf-8")
        except FileNotFoundError:
            out[rel] = None
        except IsADirectoryError:
            raise ConfigError(rel, "path", rel, message=f"{rel} is a directory, not a file") from None
        except NotADirectoryError:
            raise ConfigError(rel, "path", rel, message=f"a parent of {rel} is a file, not a directory") from None
        except UnicodeDecodeError:
            raise ConfigError(rel, "encoding", None, message="not UTF-8 text") from None
        except PermissionError:
            raise ConfigError(rel, "path", rel, message=f"{rel} cannot be read (permission denied)") from None
    return out


def _writable_dir(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and bool(st.st_mode & 0o222) and os.access(path, os.W_OK | os.X_OK)


def check_file_target(root: Path, rel: str) -> None:
    """``rel`` can be atomically replaced (or created) by loop-runtime."""
    root = Path(root).resolve()
    real = _inside(root, rel)
    try:
        st = real.stat()
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise ConfigError(rel, "path", rel, message=f"a parent of {rel} is a file, not a directory") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(rel, "path", rel, message=f"{rel} is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(rel, "path", rel, message=f"{rel} is not a regular file")
        if not st.st_mode & 0o222 or not os.access(real, os.W_OK):
            raise ConfigError(rel, "mode", oct(st.st_mode & 0o777),
                              message=f"{rel} is not writable (mode {oct(st.st_mode & 0o777)})")
    folder = real.parent
    while not folder.exists():  # the nearest existing ancestor receives the new folders
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(rel, "path", rel, message=f"a parent of {rel} is a file, not a directory")
    if not _writable_dir(folder):
        shown = folder.relative_to(root).as_posix() if folder != root else "the project root"
        raise ConfigError(rel, "path", rel, message=f"{rel} cannot be written: folder {shown} is not writable")


def check_dir_target(root: Path, rel: str) -> None:
    """``rel`` is (or can become) a folder loop-runtime writes in (``.loop-runtime``, worktrees)."""
    root = Path(root).resolve()
    path = root / rel
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ConfigError(rel, "path", rel, message=f"{rel} must be a folder (found a file or symlink)")
    target = path if path.exists() else root
    if not _writable_dir(target):
        raise ConfigError(rel, "path", rel, message=f"{rel} cannot be written: "
                          f"{'it' if path.exists() else 'the project root'} is not writable")


def check_writable(root: Path, files: Iterable[str], dirs: Iterable[str] = ()) -> None:
    for rel in files:
        check_file_target(root, rel)
    for rel in dirs:
        check_dir_target(root, rel)
