"""``GitWorkspace``: one git worktree per act attempt, recorded the way loop-worktree records it.

Why worktrees: at L2 an agent may change code, but never the user's checkout or the
base branch. Each attempt gets ``.loop-worktrees/<run-id>`` on a new branch
``loop/<run-id>`` from the base commit, listed in ``.loop-worktrees/manifest.json`` so
the ecosystem's ``loop-worktree list/cleanup/gc`` see our attempts (R25). Manifest
updates happen under ``.loop-worktrees/.manifest.mutex`` (stale after 30 s); advisory
locks in ``.loop-worktrees/locks/*.json`` by other owners are honoured, read under the
tool's own ``locks/.mutex``.

The diff is the truth: ``diff`` stages everything in the worktree's own index and
asks git what changed against the base commit; ``finish`` commits exactly the tree that
was checked (files written later, such as test caches, are left out), with ``Loop-Run-Id`` and
``Loop-Pattern`` trailers, and writes the binary-safe patch to
``.loop-runtime/patches/<run-id>.patch``. A rejected attempt is discarded and its
branch deleted; its worktree may be recycled into a small pool
(``.loop-runtime/worktree-pool``) so a repeat attempt costs a ``checkout`` + ``clean``
instead of writing every file of the repository again.

The adapter lives by concern, one mixin each over ``base.WorkspaceBase`` (settings, root, manifest,
base branch): ``attempt`` (prepare, diff, finish, commit, discard), ``pool`` (recycled worktrees),
``integrity`` (a worktree's git links, nested ``.git``), ``merge`` (L3 merge, approving a held change)
and ``bookkeeping`` (manifest entries, other owners' locks). Every git command goes through
``adapters.git``.
"""

from __future__ import annotations

from .attempt import Attempt
from .base import BASE_DIR, EXCLUDES, PATCH_DIR, POOL_DIR, STATUSES, WorkspaceBase
from .bookkeeping import Bookkeeping
from .integrity import Integrity
from .merge import Merge
from .pool import Pool

__all__ = ["BASE_DIR", "EXCLUDES", "PATCH_DIR", "POOL_DIR", "STATUSES", "GitWorkspace"]


class GitWorkspace(Attempt, Merge, Bookkeeping, Integrity, Pool, WorkspaceBase):
    """``ports.Workspace`` over git worktrees of the repository at ``root``."""
