"""The main checkout's files as ``git status`` sees them: tracked changes, untracked and ignored files,
ignored folders — described, and put back from the previous ``HEAD`` or the saved content.
"""

from __future__ import annotations

import stat
from pathlib import Path

from ...errors import GitError
from ..git import decode, run_git
from .files import FileState, OutsideSnapshot, _Quarantine, _write_back
from .refs import _short


def _parse_status(data: bytes) -> dict[str, str]:
    tokens = decode(data).split("\0")
    status: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        rec = tokens[i]
        i += 1
        if not rec:
            continue
        kind = rec[0]
        if kind in "?!":
            status[rec[2:]] = kind
        elif kind == "1":
            head, path = rec.split(" ", 8)[:8], rec.split(" ", 8)[8]
            status[path] = " ".join(head)
        elif kind == "2":
            parts = rec.split(" ", 9)
            status[parts[9]] = " ".join(parts[:9]) + " <- " + tokens[i]
            i += 1  # the original path
        elif kind == "u":
            parts = rec.split(" ", 10)
            status[parts[10]] = " ".join(parts[:10])
    return status


def _describe_file(path: str, before: OutsideSnapshot, after: OutsideSnapshot) -> str | None:
    b_rec, a_rec = before.status.get(path), after.status.get(path)
    b_state = before.files.get(path, FileState("missing"))
    a_state = after.files.get(path, FileState("missing"))
    if b_rec == a_rec and b_state.same_as(a_state):
        return None
    if b_rec is None:
        what = {"?": "new untracked", "!": "new ignored"}.get(a_rec or "", "changed tracked")
        if a_rec not in ("?", "!") and a_state.kind == "missing":
            what = "deleted tracked"
        return f"{what} file {path}"
    if a_rec is None:
        return f"{'deleted' if b_rec in '?!' else 'reverted'} file {path}"
    if b_rec != a_rec:
        return f"git status of {path} changed"
    return f"modified file {path}"


def _tree_changes(before: OutsideSnapshot, after: OutsideSnapshot) -> list[str]:
    out: list[str] = []
    for folder, old in before.ignored_trees.items():
        new = after.ignored_trees.get(folder)
        if new is None:
            continue
        added = sorted(set(new) - set(old))
        gone = sorted(set(old) - set(new))
        changed = sorted(p for p in set(old) & set(new) if old[p] != new[p] and old[p][0] != stat.S_IFDIR)
        for label, items in (("new", added), ("deleted", gone), ("changed", changed)):
            if items:
                shown = ", ".join(items[:3]) + (" …" if len(items) > 3 else "")
                out.append(f"{len(items)} {label} file(s) in ignored folder {folder}: {shown}")
    return out


def _in_commit(root: Path, commit: str | None, path: str) -> bool:
    if commit is None:
        return False
    try:
        run_git(["cat-file", "-e", f"{commit}:{path}"], root)
        return True
    except GitError:
        return False


def _restore_clean(root: Path, before: OutsideSnapshot, path: str, q: _Quarantine) -> str:
    """A path that was clean (or absent) before: back to the previous HEAD's content."""
    target = root / path
    if _in_commit(root, before.head, path):
        q.copy(target, path)
        run_git(["--literal-pathspecs", "checkout", before.head or "HEAD", "--", path], root)
        return f"checked out {path} from {_short(before.head)}"
    run_git(["--literal-pathspecs", "rm", "--cached", "-q", "--ignore-unmatch", "--", path], root)
    if target.is_symlink() or target.exists():
        q.move(target, path)
        return f"quarantined {path}"
    return f"unstaged {path}"


def _restore_index_entry(root: Path, rec: str, path: str) -> None:
    """Put back a dirty path's index entry from its porcelain v2 record (``mI`` and ``hI``)."""
    fields = rec.split(" ")
    if fields[0] not in "12" or len(fields) < 8:
        return
    m_index, h_index = fields[4], fields[7]
    if set(h_index) == {"0"} or m_index == "000000":
        run_git(["update-index", "--force-remove", "--", path], root)
    else:
        run_git(["update-index", "--add", "--cacheinfo", f"{m_index},{h_index},{path}"], root)


def _restore_path(root: Path, before: OutsideSnapshot, after: OutsideSnapshot, path: str, q: _Quarantine) -> str:
    b_rec = before.status.get(path)
    if b_rec is None:
        return _restore_clean(root, before, path, q)
    b_state = before.files.get(path, FileState("missing"))
    target = root / path
    if b_rec not in "?!" and after.status.get(path) != b_rec:
        _restore_index_entry(root, b_rec, path)
    if b_state.same_as(after.files.get(path, FileState("missing"))):
        return f"restored the index entry of {path}"
    if b_state.kind == "missing":
        q.move(target, path)
        return f"quarantined {path}"
    if b_state.kind == "file" and b_state.data is None:
        return f"NOT restored {path}: too large to keep a copy"
    if target.is_symlink() or target.is_file():
        q.copy(target, path)
    if _write_back(target, b_state):
        return f"restored {path}"
    return f"NOT restored {path}"


def _restore_trees(root: Path, before: OutsideSnapshot, after: OutsideSnapshot, q: _Quarantine) -> list[str]:
    done: list[str] = []
    for folder, old in before.ignored_trees.items():
        new = after.ignored_trees.get(folder, {})
        for rel in sorted(set(new) - set(old), key=len):
            src = root / folder / rel
            if (src.is_symlink() or src.exists()) and not any(rel.startswith(d + "/") for d in done):
                q.move(src, f"{folder.rstrip('/')}/{rel}")
                done.append(rel)
    return [f"quarantined {len(done)} new file(s) in ignored folders"] if done else []
