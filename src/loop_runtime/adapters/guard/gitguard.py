"""``GitGuard``: ``ports.OutsideGuard`` for the main checkout.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...errors import LoopError
from ...formats.worktree_manifest import MANIFEST_FILE, parse_manifest
from .files import OutsideSnapshot, _Quarantine
from .gitdir import _git_dir, _meta, _restore_meta
from .refs import _maybe
from .snapshot import compare, restore, snapshot
from .spine import spine_patterns


class GitGuard:
    """``ports.OutsideGuard`` for the main checkout at ``root``.

    The branches of attempts listed in the worktree manifest may move: an agent committing
    inside its own worktree moves ``refs/heads/loop/<id>``, and another loop's engine
    creates, commits and deletes its attempts' branches meanwhile. Any other ref, file or
    git setting that changes is reported.
    """

    def __init__(self, root: Path | str, *, ignore: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.ignore = tuple(ignore)
        self.watch = spine_patterns(self.ignore)
        self._early: list[str] = []  # git metadata already put back by ``changes``
        self._git_dir: Path | None = None

    def _manifest(self) -> list[Any]:
        try:
            text = (self.root / MANIFEST_FILE).read_text(encoding="utf-8")
            return list(parse_manifest(text, file=str(self.root / MANIFEST_FILE)).worktrees)
        except (OSError, LoopError):
            return []

    def _allowed_refs(self, before: OutsideSnapshot | None = None,
                      after: OutsideSnapshot | None = None) -> frozenset[str]:
        entries = self._manifest()
        allowed = {f"refs/heads/{e.branch}" for e in entries}
        if before is not None and after is not None:
            allowed |= self._loop_merges(entries, before, after)
        return frozenset(allowed)

    def _loop_merges(self, entries: list[Any], before: OutsideSnapshot, after: OutsideSnapshot) -> set[str]:
        """Base-branch moves made by another loop's L3 merge of a ``merged`` attempt (not an agent)."""
        tips = {before.refs.get(f"refs/heads/{e.branch}") or after.refs.get(f"refs/heads/{e.branch}")
                for e in entries if e.status == "merged"}
        tips.discard(None)
        moved: set[str] = set()
        for name, new in after.refs.items():
            if not tips or not name.startswith("refs/heads/") or before.refs.get(name) in (None, new):
                continue
            parents = (_maybe(["rev-list", "--parents", "-n", "1", new], self.root) or "").split()
            if new in tips or any(p in tips for p in parents[2:]):  # fast-forward, or a merge commit of the tip
                moved.add(name)
        return moved

    @property
    def git_dir(self) -> Path:
        if self._git_dir is None:
            self._git_dir = _git_dir(self.root)
        return self._git_dir

    def _watch(self, before: OutsideSnapshot) -> tuple[str, ...]:
        """The watched patterns plus every file seen before (a deleted one no longer matches a glob)."""
        return (*self.watch, *(p for p in before.spine if p not in self.watch))

    def snapshot(self) -> OutsideSnapshot:
        return snapshot(self.root, ignore=self.ignore, git_dir=self.git_dir, watch=self.watch)

    def changes(self, before: OutsideSnapshot) -> tuple[str, ...]:
        """What changed since ``before``. A changed git config, hook or worktree link is put
        back *before* the runtime runs git again (``core.fsmonitor``, a filter or a hook
        would otherwise run the agent's code as the runtime) and is still reported."""
        git_dir = self.git_dir
        meta = _meta(git_dir)
        if meta != before.meta:
            changed = OutsideSnapshot(root=before.root, head=before.head, head_ref=before.head_ref, refs=before.refs,
                                      status=before.status, files=before.files, meta=meta, spine=before.spine)
            self._early = _restore_meta(git_dir, before, changed, _Quarantine(self.root))
        after = snapshot(self.root, ignore=self.ignore, meta=meta, git_dir=git_dir, watch=self._watch(before))
        return compare(before, after, allowed_refs=self._allowed_refs(before, after))

    def restore(self, before: OutsideSnapshot) -> tuple[str, ...]:
        early, self._early = list(getattr(self, "_early", [])), []
        watch = self._watch(before)
        after = snapshot(self.root, ignore=self.ignore, watch=watch)
        return tuple(early) + restore(self.root, before, after, allowed_refs=self._allowed_refs(before, after),
                                      ignore=self.ignore, watch=watch)
