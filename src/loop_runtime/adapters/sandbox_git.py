"""Git inside the sandbox: what an L2+ agent may write to commit, and bringing its objects home.

Why apart from ``sandbox``: the srt settings say *which* paths are writable; deciding the
git paths needs git itself (``rev-parse``, ``for-each-ref``), and the agent's new objects
must be copied into the repository after the run. Both are the git side of one sandboxed
process (``sandbox.SrtProcess``), kept here so the settings builder stays readable.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitWritable:
    """What a linked worktree's agent may write to commit (``writable``) and what stays denied in it.

    ``objects`` is the private object store its commits go to; ``common`` the repository's
    shared git folder (where ``import_objects`` copies them after the run).
    """

    writable: tuple[str, ...]
    denied: tuple[str, ...]
    objects: Path
    common: Path


def git_writable(cwd: Path, rw: Path) -> GitWritable | None:
    """The paths a commit in the linked worktree ``cwd`` needs; None when ``cwd`` is not one.

    Writable: its own git folder (index, its reflog, lock files) and ``refs/heads/loop/``.
    Not the shared object store — as root, an agent could overwrite an existing object
    there and change history without moving a ref. New objects go to a private store
    (``<rw>/objects``: the git shim sets ``GIT_OBJECT_DIRECTORY`` for calls in the worktree,
    with the real store as an alternate; a git run past the shim cannot write objects) and are
    copied in by ``import_objects``, which names each by its verified hash and never
    overwrites. Denied inside the git folder: ``HEAD``, ``commondir`` and ``gitdir``
    (re-pointed, they would aim the runtime's own git calls at a config of the agent's).
    """
    try:
        out = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir"],
                             cwd=cwd, capture_output=True, text=True, timeout=30, check=True,
                             stdin=subprocess.DEVNULL).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    if len(out) != 2:
        return None
    git_dir, common = Path(out[0]), Path(out[1])
    if git_dir == common:
        return None  # not a linked worktree: no commits from inside the sandbox
    objects = rw / "objects"
    for sub in ("info", "pack"):
        (objects / sub).mkdir(parents=True, exist_ok=True)
    paths = [git_dir, common / "refs" / "heads" / "loop", common / "logs" / "refs" / "heads" / "loop"]
    for path in paths:
        with contextlib.suppress(OSError):
            path.mkdir(parents=True, exist_ok=True)
    denied = [str(git_dir / name) for name in ("HEAD", "commondir", "gitdir", "config.worktree")
              if (git_dir / name).exists()]
    denied += other_loop_refs(cwd, common)
    return GitWritable(tuple(str(p) for p in paths), tuple(denied), objects, common)


def other_loop_refs(cwd: Path, common: Path) -> list[str]:
    """Other attempts' branches (and reflogs) under the writable ``refs/heads/loop/``: never writable.

    Without this, a git run past the shim could move another attempt's branch — one held for a
    human's approval — to a commit of this agent's. (A ref that exists only in ``packed-refs`` has
    no file to protect; the runtime's own branches are created loose.)"""
    try:
        proc = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/heads/loop/"], cwd=cwd,
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        own = subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=30, stdin=subprocess.DEVNULL).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    out: list[str] = []
    for ref in proc.stdout.split():
        if ref == own or not ref.startswith("refs/heads/loop/"):
            continue
        for base in (common, common / "logs"):
            path = base / ref
            if path.is_file():
                out.append(str(path))
    return out


def import_objects(objects: Path, common_dir: Path) -> str | None:
    """Copy the objects the agent's commits made into the repository; an error text, or None."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    private = {**env, "GIT_OBJECT_DIRECTORY": str(objects)}
    try:
        ids = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch-check=%(objectname)"],
                             cwd=common_dir, env=private, capture_output=True, timeout=120,
                             stdin=subprocess.DEVNULL)
        if ids.returncode != 0 or not ids.stdout.strip():
            return None if ids.returncode == 0 else ids.stderr.decode(errors="replace")[-300:]
        pack = subprocess.run(["git", "pack-objects", "--stdout", "-q"], cwd=common_dir, env=private,
                              input=ids.stdout, capture_output=True, timeout=300)
        if pack.returncode != 0:
            return pack.stderr.decode(errors="replace")[-300:]
        unpacked = subprocess.run(["git", "unpack-objects", "-q"], cwd=common_dir, env=env,
                                  input=pack.stdout, capture_output=True, timeout=300)
        if unpacked.returncode != 0:
            return unpacked.stderr.decode(errors="replace")[-300:]
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None


def git_line(args: list[str], cwd: str) -> str | None:
    """``git <args>``'s stripped output in ``cwd``, or None when it fails or prints nothing."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def current_branch(cwd: str) -> str | None:
    """The branch checked out in ``cwd`` (short name), or None when detached or not a repository."""
    return git_line(["symbolic-ref", "-q", "--short", "HEAD"], cwd)


def fork_point(root: str, cwd: str) -> str | None:
    """Where ``cwd``'s branch forked from the branch checked out in ``root`` (None when unknown)."""
    base_branch = current_branch(root)
    return git_line(["merge-base", "HEAD", base_branch], cwd) if base_branch else None


__all__ = ["GitWritable", "current_branch", "fork_point", "git_line", "git_writable", "import_objects",
           "other_loop_refs"]
