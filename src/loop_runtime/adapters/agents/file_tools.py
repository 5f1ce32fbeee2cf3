"""File tools confined to one worktree, for agents whose tools we run ourselves (the OpenAI backend).

The model's arguments are untrusted input. Every path goes through ``resolve_inside``:
relative only, no ``..`` component, no ``.git`` (hooks there would run code outside the
worktree, and remote URLs may hold tokens), and after resolving symlinks the target
must still lie inside the root — so a symlink committed in the repository cannot lead a
read or a write out of it. Writes are atomic (temp file + rename) and keep the file mode.

Each tool returns a short text for the model; refusals raise ``GateDenied`` and other
failures ``FileToolError``, which the agent loop turns into tool results (never a crash).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from ...errors import AdapterError, GateDenied
from ..locked_files import atomic_write

MAX_READ_BYTES = 256 * 1024
MAX_WRITE_BYTES = 4 * 1024 * 1024
MAX_LIST_ENTRIES = 2000
MAX_SEARCH_RESULTS = 200
MAX_SEARCH_FILE_BYTES = 2 * 1024 * 1024
SKIP_DIRS = frozenset({".git"})


class FileToolError(AdapterError):
    """A file tool could not do what the model asked; the message goes back to the model."""


def resolve_inside(root: str | os.PathLike[str], rel: str) -> Path:
    """The real path of ``rel`` under ``root``; ``GateDenied`` for anything that could leave it.

    Refused: empty or NUL-containing paths, absolute paths, any ``..`` component, any
    ``.git`` component, and paths whose resolved target (symlinks followed) is outside root.
    """
    if not isinstance(rel, str) or not rel.strip() or "\x00" in rel:
        raise GateDenied(f"invalid path: {rel!r}")
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or os.path.isabs(rel):
        raise GateDenied(f"absolute path refused (use a path relative to the worktree): {rel!r}")
    if ".." in pure.parts:
        raise GateDenied(f"'..' refused in path: {rel!r}")
    if SKIP_DIRS.intersection(pure.parts):
        raise GateDenied(f".git is off limits: {rel!r}")
    base = Path(root).resolve(strict=True)
    full = base.joinpath(*pure.parts).resolve(strict=False)
    if full != base and base not in full.parents:
        raise GateDenied(f"path escapes the worktree through a symlink: {rel!r}")
    if SKIP_DIRS.intersection(full.relative_to(base).parts):
        raise GateDenied(f".git is off limits: {rel!r}")
    return full


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix() or "."


def _looks_binary(head: bytes) -> bool:
    return b"\x00" in head[:8192]


def read_file(root: str | os.PathLike[str], path: str) -> str:
    """The text of a file (truncated past ``MAX_READ_BYTES``, with a note saying so)."""
    full = resolve_inside(root, path)
    try:
        with open(full, "rb") as handle:
            data = handle.read(MAX_READ_BYTES + 1)
    except IsADirectoryError as exc:
        raise FileToolError(f"{path} is a directory; use list_files") from exc
    except OSError as exc:
        raise FileToolError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if _looks_binary(data):
        raise FileToolError(f"{path} is a binary file")
    text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
    if len(data) > MAX_READ_BYTES:
        text += f"\n[truncated after {MAX_READ_BYTES} bytes]"
    return text


def _walk(root: Path, start: Path) -> list[Path]:
    """Files under ``start`` (sorted, ``.git`` skipped, symlinked directories not followed)."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(start, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        found.extend(Path(folder) / name for name in sorted(files))
    return found


def list_files(root: str | os.PathLike[str], path: str = ".") -> str:
    """Every file under ``path``, one relative path per line."""
    base = Path(root).resolve(strict=True)
    start = resolve_inside(base, path or ".")
    if start.is_file():
        return _rel(base, start)
    if not start.is_dir():
        raise FileToolError(f"no such directory: {path}")
    files = _walk(base, start)
    lines = [_rel(base, f) for f in files[:MAX_LIST_ENTRIES]]
    if len(files) > MAX_LIST_ENTRIES:
        lines.append(f"[{len(files) - MAX_LIST_ENTRIES} more files not listed]")
    return "\n".join(lines) if lines else "(no files)"


def search(root: str | os.PathLike[str], pattern: str, path: str = ".") -> str:
    """Lines matching a regular expression, as ``path:line: text``."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise FileToolError(f"invalid regular expression {pattern!r}: {exc}") from exc
    base = Path(root).resolve(strict=True)
    start = resolve_inside(base, path or ".")
    files = [start] if start.is_file() else _walk(base, start)
    hits: list[str] = []
    for file in files:
        try:
            if file.is_symlink() or file.stat().st_size > MAX_SEARCH_FILE_BYTES:
                continue
            data = file.read_bytes()
        except OSError:
            continue
        if _looks_binary(data):
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if regex.search(line):
                hits.append(f"{_rel(base, file)}:{number}: {line[:300]}")
                if len(hits) >= MAX_SEARCH_RESULTS:
                    return "\n".join([*hits, f"[stopped after {MAX_SEARCH_RESULTS} matches]"])
    return "\n".join(hits) if hits else "(no matches)"


_atomic_write = atomic_write  # the one atomic writer (temp + fsync + rename, mode kept)


def write_file(root: str | os.PathLike[str], path: str, content: str) -> str:
    """Create or replace a file atomically (parent folders created inside the worktree)."""
    full = resolve_inside(root, path)
    data = content.encode("utf-8")
    if len(data) > MAX_WRITE_BYTES:
        raise FileToolError(f"refusing to write {len(data)} bytes (limit {MAX_WRITE_BYTES})")
    if full.is_dir():
        raise FileToolError(f"{path} is a directory")
    try:
        full.parent.mkdir(parents=True, exist_ok=True)
        resolve_inside(root, path)  # the folders we just made cannot have changed the answer; check anyway
        _atomic_write(full, data)
    except OSError as exc:
        raise FileToolError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return f"wrote {len(data)} bytes to {path}"


def edit_file(root: str | os.PathLike[str], path: str, old: str, new: str) -> str:
    """Replace the one exact occurrence of ``old`` with ``new`` (zero or several is an error)."""
    if not old:
        raise FileToolError("old text must not be empty (use write_file to create a file)")
    full = resolve_inside(root, path)
    try:
        data = full.read_bytes()
    except OSError as exc:
        raise FileToolError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_WRITE_BYTES or _looks_binary(data):
        raise FileToolError(f"{path} is binary or too large to edit")
    try:
        text = data.decode("utf-8")  # strict: re-encoding a lossy decode would corrupt the file
    except UnicodeDecodeError as exc:
        raise FileToolError(f"{path} is not UTF-8 text") from exc
    count = text.count(old)
    if count == 0:
        raise FileToolError(f"old text not found in {path}")
    if count > 1:
        raise FileToolError(f"old text occurs {count} times in {path}; include more context to make it unique")
    try:
        _atomic_write(full, text.replace(old, new, 1).encode("utf-8"))
    except OSError as exc:
        raise FileToolError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return f"edited {path}"


__all__ = ["FileToolError", "edit_file", "list_files", "read_file", "resolve_inside", "search", "write_file"]
