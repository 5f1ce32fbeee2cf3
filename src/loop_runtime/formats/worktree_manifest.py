"""`.loop-worktrees/manifest.json` and `locks/<owner>.json`, exactly as loop-worktree 1.2.0 writes them.

Why byte-compatible: the ecosystem's own ``loop-worktree list``, ``mark``, ``cleanup`` and
``gc`` must keep working on what the runtime records (R25), and the runtime must read
what they write. The tool serialises with ``JSON.stringify(manifest, null, 2)`` plus a
newline and keeps unknown keys when it rewrites an entry, so we do the same: keys we
do not know travel through ``extra`` untouched, and the runtime's own addition
(``baseCommit``, needed to re-apply a held patch days later) is just such a key to the tool.

Entry keys: ``id, path, branch, baseBranch, pattern, createdAt, status``. Lock keys:
``owner, paths, lockedAt, expiresAt?``. Path overlap for locks is loop-worktree's
segment rule (``pathsOverlap`` in ``dist/lock.js``). Text in, values out: no file I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, UTC
from typing import Any

from ..errors import ConfigError
from .json_text import load_json as _load_json

__all__ = [
    "CLEANUP_DEFAULT_STATUSES",
    "LockFile",
    "MANIFEST_DIR",
    "MANIFEST_FILE",
    "Manifest",
    "VALID_STATUSES",
    "WorktreeEntry",
    "format_timestamp",
    "is_expired",
    "parse_lock",
    "parse_manifest",
    "parse_timestamp",
    "paths_overlap",
    "render_lock",
    "remove",
    "render_manifest",
    "set_status",
    "upsert",
]

MANIFEST_DIR = ".loop-worktrees"
MANIFEST_FILE = f"{MANIFEST_DIR}/manifest.json"
VALID_STATUSES = ("active", "rejected", "escalated", "merged", "stale")
CLEANUP_DEFAULT_STATUSES = ("rejected", "escalated")

_ENTRY_KEYS = {
    "id": "id",
    "path": "path",
    "branch": "branch",
    "baseBranch": "base_branch",
    "pattern": "pattern",
    "createdAt": "created_at",
    "status": "status",
}
_BASE_COMMIT_KEY = "baseCommit"


@dataclass(frozen=True)
class WorktreeEntry:
    """One attempt's worktree as loop-worktree records it.

    ``base_commit`` is the runtime's extension (JSON ``baseCommit``), written after the
    tool's keys; ``extra`` keeps keys written by anyone else, in their order.
    """

    id: str
    path: str
    branch: str
    base_branch: str
    pattern: str
    created_at: str
    status: str
    base_commit: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: getattr(self, attr) for key, attr in _ENTRY_KEYS.items()}
        if self.base_commit is not None:
            out[_BASE_COMMIT_KEY] = self.base_commit
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


@dataclass(frozen=True)
class Manifest:
    version: int = 1
    worktrees: tuple[WorktreeEntry, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def get(self, entry_id: str) -> WorktreeEntry | None:
        for entry in self.worktrees:
            if entry.id == entry_id:
                return entry
        return None


@dataclass(frozen=True)
class LockFile:
    """An advisory path lock: ``owner`` is about to touch ``paths`` (globs) until ``expires_at``."""

    owner: str
    paths: tuple[str, ...]
    locked_at: str
    expires_at: str | None = None


# --------------------------------------------------------------------------- manifest


def _string(obj: Mapping[str, Any], key: str, where: str, file: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise ConfigError(file, f"{where}.{key}", value)
    return value


def _parse_entry(raw: Any, index: int, file: str) -> WorktreeEntry:
    where = f"worktrees[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(file, where, raw, message=f"{where} invalid: expected an object")
    values = {attr: _string(raw, key, where, file) for key, attr in _ENTRY_KEYS.items() if key != "status"}
    status = raw.get("status")
    if status not in VALID_STATUSES:
        raise ConfigError(file, f"{where}.status", status, valid=VALID_STATUSES)
    base_commit = _string(raw, _BASE_COMMIT_KEY, where, file, required=False)
    known = set(_ENTRY_KEYS) | {_BASE_COMMIT_KEY}
    extra = {k: v for k, v in raw.items() if k not in known}
    return WorktreeEntry(status=status, base_commit=base_commit, extra=extra, **values)  # type: ignore[arg-type]


def parse_manifest(text: str, file: str = MANIFEST_FILE) -> Manifest:
    """Parse a manifest; an empty text is an empty manifest (the tool treats a missing file so)."""
    if not text.strip():
        return Manifest()
    raw = _load_json(text, file)
    if not isinstance(raw, dict) or raw.get("version") != 1 or not isinstance(raw.get("worktrees"), list):
        raise ConfigError(file, "manifest", None,
                          message="invalid manifest: expected { version: 1, worktrees: [] }")
    entries = tuple(_parse_entry(item, i, file) for i, item in enumerate(raw["worktrees"]))
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if entry.id in seen:
            raise ConfigError(file, f"worktrees[{i}].id", entry.id,
                              message=f"worktrees[{i}].id duplicate: {entry.id!r}")
        seen.add(entry.id)
    extra = {k: v for k, v in raw.items() if k not in ("version", "worktrees")}
    return Manifest(version=1, worktrees=entries, extra=extra)


def render_manifest(m: Manifest) -> str:
    """Serialise like ``JSON.stringify(manifest, null, 2) + "\\n"`` (non-ASCII kept as is)."""
    obj: dict[str, Any] = {"version": m.version, "worktrees": [e.as_json() for e in m.worktrees]}
    for key, value in m.extra.items():
        obj.setdefault(key, value)
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def upsert(m: Manifest, entry: WorktreeEntry) -> Manifest:
    """Replace the entry with the same id, or append it (loop-worktree ``create`` drops then pushes)."""
    if any(e.id == entry.id for e in m.worktrees):
        return replace(m, worktrees=tuple(entry if e.id == entry.id else e for e in m.worktrees))
    return replace(m, worktrees=(*m.worktrees, entry))


def set_status(m: Manifest, entry_id: str, status: str) -> Manifest:
    """loop-worktree ``mark``: change one entry's status; unknown ids and statuses are errors."""
    if status not in VALID_STATUSES:
        raise ConfigError(MANIFEST_FILE, "status", status, valid=VALID_STATUSES)
    entry = m.get(entry_id)
    if entry is None:
        raise ConfigError(MANIFEST_FILE, "id", entry_id, message=f"no worktree with run id {entry_id!r}")
    return upsert(m, replace(entry, status=status))


def remove(m: Manifest, entry_ids: Iterable[str]) -> Manifest:
    gone = set(entry_ids)
    return replace(m, worktrees=tuple(e for e in m.worktrees if e.id not in gone))


# --------------------------------------------------------------------------- time


def format_timestamp(dt: datetime) -> str:
    """JavaScript ``Date.toISOString()``: UTC, milliseconds, ``Z``."""
    utc = dt.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime | None:
    """``Date.parse`` for the ISO forms the tool writes; None where JavaScript would give NaN."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        return None
    if dt.tzinfo is None:  # Date.parse reads a date-time without offset as local time; we say UTC
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


# --------------------------------------------------------------------------- locks

_OWNER = re.compile(r"^[A-Za-z0-9._-]+$")


def parse_lock(text: str, file: str) -> LockFile:
    """Parse ``locks/<owner>.json``. A corrupt lock is an error: silently ignoring it would drop a claim."""
    raw = _load_json(text, file)
    if not isinstance(raw, dict):
        raise ConfigError(file, "lock", None, message="invalid lock: expected an object")
    owner = _string(raw, "owner", "lock", file)
    assert owner is not None
    if not _OWNER.match(owner):
        raise ConfigError(file, "lock.owner", owner)
    paths = raw.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ConfigError(file, "lock.paths", paths)
    locked_at = raw.get("lockedAt", "")
    expires_at = raw.get("expiresAt")
    if not isinstance(locked_at, str):
        raise ConfigError(file, "lock.lockedAt", locked_at)
    if expires_at is not None and not isinstance(expires_at, str):
        raise ConfigError(file, "lock.expiresAt", expires_at)
    return LockFile(owner=owner, paths=tuple(paths), locked_at=locked_at, expires_at=expires_at)


def render_lock(lock: LockFile) -> str:
    obj: dict[str, Any] = {"owner": lock.owner, "paths": list(lock.paths), "lockedAt": lock.locked_at}
    if lock.expires_at is not None:
        obj["expiresAt"] = lock.expires_at
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def is_expired(lock: LockFile, now: datetime) -> bool:
    """Expired only with a parseable ``expiresAt`` at or before ``now`` (no TTL never expires)."""
    if lock.expires_at is None:
        return False
    when = parse_timestamp(lock.expires_at)
    return when is not None and when <= now.astimezone(UTC)


def _wild(segment: str) -> bool:
    return "*" in segment or "?" in segment


def paths_overlap(a: str, b: str) -> bool:
    """loop-worktree's rule: compare segment by segment, a wildcard segment matches anything;
    a shorter glob covers a longer path only when its last segment is a wildcard."""
    if a == b:
        return True
    seg_a = [s for s in a.split("/") if s]
    seg_b = [s for s in b.split("/") if s]
    for sa, sb in zip(seg_a, seg_b, strict=False):
        if sa != sb and not _wild(sa) and not _wild(sb):
            return False
    if len(seg_a) == len(seg_b):
        return True
    shorter = seg_a if len(seg_a) < len(seg_b) else seg_b
    # JS: shorter[shorter.length - 1] of an empty array is undefined → /[*?]/.test("undefined") is false
    return bool(shorter) and _wild(shorter[-1])
