"""The guard's three operations over every concern: ``snapshot`` the main checkout, ``compare`` two
snapshots, ``restore`` what changed between them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from pathlib import Path

from ...errors import GitError
from ..git import run_git, run_git_bytes
from .checkout import _describe_file, _parse_status, _restore_path, _restore_trees, _tree_changes
from .files import KEEP_TOTAL, RUNTIME_DIRS, OutsideSnapshot, _Quarantine, _read_state, _walk
from .files import NO_LOCKS as _NO_LOCKS
from .gitdir import _git_dir, _index, _meta, _restore_git_index, _restore_meta, _skip_meta
from .refs import _maybe, _ref_changes, _restore_refs
from .spine import _restore_spine, _spine, _spine_changes


def snapshot(root: Path, *, ignore: Iterable[str] = (), meta: Mapping[str, bytes | None] | None = None,
             git_dir: Path | None = None, watch: Iterable[str] = ()) -> OutsideSnapshot:
    """Everything the guard watches in the main checkout at ``root``.

    ``ignore`` holds ``fnmatch`` patterns of paths the runtime itself writes while agents
    run (every loop's state file, the run log, the ledger, the kill-switch files): other
    loops and a human pressing kill change them legitimately.
    """
    root = Path(root)
    git_dir = git_dir or _git_dir(root)
    meta = dict(meta) if meta is not None else _meta(git_dir)  # read before any git command runs
    patterns = tuple(ignore)
    excludes = [f":(exclude){d}" for d in RUNTIME_DIRS]
    raw = run_git_bytes(["status", "--porcelain=v2", "-z", "--untracked-files=all", "--ignored=matching",
                         "--no-renames", "--", ".", *excludes], root, env=_NO_LOCKS)
    status = {p: s for p, s in _parse_status(raw).items()  # git lists an ignored runtime folder itself
              if p.rstrip("/").split("/", 1)[0] not in RUNTIME_DIRS
              and not any(fnmatch.fnmatchcase(p.rstrip("/"), pat) for pat in patterns)}
    budget = [KEEP_TOTAL]
    files = {p: _read_state(root / p, budget) for p in sorted(status)}
    trees = {p: _walk(root / p) for p, st in files.items() if st.kind == "dir" and status[p] in "?!"}
    refs: dict[str, str] = {}
    for line in run_git(["for-each-ref", "--format=%(refname)%00%(objectname)"], root, env=_NO_LOCKS).splitlines():
        name, _, sha = line.partition("\0")
        refs[name] = sha
    index, index_data = _index(root, git_dir)
    return OutsideSnapshot(
        root=str(root), head=_maybe(["rev-parse", "-q", "--verify", "HEAD^{commit}"], root),
        head_ref=_maybe(["symbolic-ref", "-q", "HEAD"], root), refs=refs, status=status, files=files,
        ignored_trees=trees, meta=meta, index=index, index_data=index_data, spine=_spine(root, watch),
    )


def compare(before: OutsideSnapshot, after: OutsideSnapshot, *, allowed_refs: Iterable[str] = ()) -> tuple[str, ...]:
    """Human-readable differences between two snapshots; empty when nothing outside changed."""
    allowed_refs = frozenset(allowed_refs)
    out = _ref_changes(before, after, allowed_refs)
    files = [line for path in sorted(set(before.status) | set(after.status))
             if (line := _describe_file(path, before, after))]
    out.extend(files)
    out.extend(_tree_changes(before, after))
    out.extend(_spine_changes(before, after))
    merged_in = before.head_ref is not None and before.head_ref in allowed_refs
    if before.index != after.index and not merged_in and not files and not out:
        # staged changes show as file changes above; this is what status cannot show (flags, HEAD-equal entries)
        out.append("git index changed (entries staged, removed or flagged)")
    for name in sorted(set(before.meta) | set(after.meta)):
        if _skip_meta(name, before, after):
            continue
        if before.meta.get(name) != after.meta.get(name):
            out.append(f"git {name} changed" if before.meta.get(name) is not None else f"git {name} added")
    return tuple(out)


def restore(root: Path, before: OutsideSnapshot, after: OutsideSnapshot, *,
            allowed_refs: Iterable[str] = (), ignore: Iterable[str] = (), watch: Iterable[str] = ()) -> tuple[str, ...]:
    """Undo what changed between ``before`` and ``after`` where git can; returns what was done.

    Whatever is still different afterwards is reported as ``NOT restored: …``.
    """
    root = Path(root)
    allowed = frozenset(allowed_refs)
    q = _Quarantine(root)
    git_dir = _git_dir(root)
    done = _restore_meta(git_dir, before, after, q)  # first: config and hooks can run code
    done += _restore_refs(root, before, after, allowed)
    if not (before.head_ref is not None and before.head_ref in allowed):
        done += _restore_git_index(git_dir, before, after)
    done += _restore_spine(root, before, after, q)
    if done:  # with HEAD back, files the agent committed show up as changes again
        after = snapshot(root, ignore=ignore, watch=watch)
    for path in sorted(set(before.status) | set(after.status)):
        if _describe_file(path, before, after) is None:
            continue
        try:
            done.append(_restore_path(root, before, after, path, q))
        except (GitError, OSError) as exc:
            done.append(f"NOT restored {path}: {exc}")
    done += _restore_trees(root, before, after, q)
    left = compare(before, snapshot(root, ignore=ignore, watch=watch), allowed_refs=allowed)
    done += [f"NOT restored: {line}" for line in left]
    return tuple(done)
