"""Each worker's own clone of each repository, and pushing the spine files back to it.

The ecosystem's scheduled loops (GitHub Actions) commit the state file, run log and
ledger and push them, retrying on a non-fast-forward; a worker does the same. A push is
made idempotent by a ``Loop-Run:`` trailer: a retried push (say the worker died right
after ``git push``) finds its commit on the remote and does nothing. A concurrent change
to the same file is merged three-way (the run log as a union: both entries are kept).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import LoopError

GIT_TIMEOUT_S = 120.0
#: files whose concurrent changes are unions of appended entries
UNION_FILES = ("loop-run-log.md",)


class GitFailed(LoopError):
    """A git command failed in a worker clone (retryable: the network, a concurrent push)."""


class PushConflict(LoopError):
    """Two changes to one spine file could not be merged: a human must look (not retried)."""


def repo_name(repo_url: str) -> str:
    """``https://host/acme/web.git`` → ``web`` (what ``git clone`` names the folder)."""
    text = repo_url.rstrip("/")
    name = re.sub(r"\.git$", "", text.rsplit("/", 1)[-1].rsplit(":", 1)[-1])
    return name if name and name not in (".", "..") else "repo"


def project_key(repo_url: str) -> str:
    """A short stable name for a repository: ``<basename>-<hash>`` (Temporal ids, clone folders)."""
    text = repo_url.rstrip("/")
    base = re.sub(r"\.git$", "", text.rsplit("/", 1)[-1].rsplit(":", 1)[-1]) or "repo"
    base = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:32] or "repo"
    return f"{base}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def git(root: Path | str, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    full.update({"GIT_TERMINAL_PROMPT": "0", **(env or {})})
    proc = subprocess.run(["git", *args], cwd=str(root), capture_output=True, text=True, env=full,
                          timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise GitFailed(f"git {' '.join(args[:3])} failed in {root}: {(proc.stderr or proc.stdout).strip()[:300]}")
    return proc.stdout.strip() if check else f"{proc.returncode}\n{proc.stdout}{proc.stderr}"


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def clone_lock(key: str) -> threading.Lock:
    """One activity at a time per clone in this worker (a clone has one checkout)."""
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def sync_clone(work_dir: Path, repo_url: str, key: str, branch: str) -> Path:
    """The worker's clone of ``repo_url`` at the remote's ``branch`` (cloned on first use).

    Anything a crashed tick left in the checkout is reset: the remote is the truth, and a
    tick's durable record is in Temporal (its activity results), not in this folder.
    Untracked runtime folders (``.loop-runtime``, ``.loop-worktrees``) are kept.
    """
    root = work_dir / key / repo_name(repo_url)  # named as a user's checkout is: the project's name
    if not (root / ".git").exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.parent / f".cloning-{os.getpid()}"
        git(root.parent, "clone", "-q", "--no-tags", repo_url, str(tmp))
        os.replace(tmp, root)
        for k, v in (("user.name", "loop-runtime worker"), ("user.email", "loop-runtime@localhost"),
                     ("commit.gpgsign", "false"), ("core.autocrlf", "false")):
            git(root, "config", "--local", k, v)
        info = root / ".git" / "info"
        info.mkdir(parents=True, exist_ok=True)
        with open(info / "exclude", "a", encoding="utf-8") as f:
            f.write("\n.loop-runtime/\n.loop-worktrees/\n.loop-context/\n")
    git(root, "fetch", "-q", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
    git(root, "checkout", "-q", "-f", "-B", branch, f"origin/{branch}")  # -f: over a crashed tick's leftovers
    git(root, "reset", "-q", "--hard", f"origin/{branch}")
    git(root, "clean", "-q", "-f", "-d")  # untracked files a crashed tick wrote (runtime folders are excluded)
    return root


def read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel).read_text("utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return None


def _write(root: Path, rel: str, text: str | None) -> None:
    path = root / rel
    if text is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def merge3(root: Path, rel: str, base: str | None, ours: str | None, theirs: str | None) -> str | None:
    """Three-way merge of one spine file; the run log as a union. Raises ``PushConflict``."""
    if theirs == base or theirs == ours:
        return ours
    if ours == base:
        return theirs
    if ours is None or theirs is None:
        raise PushConflict(f"{rel}: deleted on one side and changed on the other; resolve it by hand")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="loop-merge-") as d:
        paths = []
        for name, text in (("ours", ours), ("base", base or ""), ("theirs", theirs)):
            p = Path(d) / name
            p.write_text(text, "utf-8")
            paths.append(str(p))
        union = ["--union"] if rel in UNION_FILES else []
        proc = subprocess.run(["git", "merge-file", "-p", *union, *paths], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S)
    if proc.returncode != 0:
        raise PushConflict(f"{rel}: this tick's change conflicts with a concurrent one on the remote; "
                           "resolve it by hand")
    return proc.stdout


def pushed(root: Path, marker: str) -> str | None:
    """The commit on ``HEAD``'s history carrying ``marker`` (a previous attempt's push), if any."""
    out = git(root, "log", "-n", "1", "--format=%H", "-F", f"--grep={marker}", "HEAD")
    return out or None


def push_files(work_dir: Path, repo_url: str, key: str, branch: str, files: Sequence[object], message: str,
               marker: str, *, attempts: int = 10, beat: Callable[[], None] | None = None
               ) -> tuple[str | None, int, bool, list[str]]:
    """Apply the spine ``files`` onto the remote's branch, commit and push; retried on a non-fast-forward.

    Returns ``(commit, attempts, already, merged)``.
    """
    last = ""
    for n in range(1, attempts + 1):
        if beat is not None:
            beat()  # a worker that dies mid-push is noticed within a heartbeat timeout, not the activity's
        root = sync_clone(work_dir, repo_url, key, branch)
        done = pushed(root, marker)
        if done:
            return done, n, True, []
        merged: list[str] = []
        paths: list[str] = []
        for f in files:
            rel, base, ours = getattr(f, "path"), getattr(f, "base"), getattr(f, "ours")
            if ours == base:
                continue
            theirs = read(root, rel)
            new = merge3(root, rel, base, ours, theirs)
            if theirs not in (base, ours):
                merged.append(rel)
            if new != theirs:
                _write(root, rel, new)
                paths.append(rel)
        if not paths:
            return None, n, False, merged
        git(root, "add", "-A", "--", *paths)
        git(root, "commit", "-q", "-m", f"{message}\n\n{marker}")
        commit = git(root, "rev-parse", "HEAD")
        out = git(root, "push", "-q", "origin", f"HEAD:refs/heads/{branch}", check=False)
        if out.startswith("0\n"):
            _fault("temporal:pushed")
            return commit, n, False, merged
        last = out.split("\n", 1)[1].strip()[:300]
    raise GitFailed(f"push to {branch} of {repo_url} failed {attempts} times (non-fast-forward?): {last}")


def push_branch(root: Path, branch: str) -> None:
    """Publish a loop branch (``loop/<id>``): ours alone, so a retried tick may overwrite it."""
    git(root, "push", "-q", "--force", "origin", f"refs/heads/{branch}:refs/heads/{branch}")


def push_head(root: Path, branch: str, *, attempts: int = 10) -> str:
    """Push the clone's ``branch`` (an approved merge), rebasing onto concurrent pushes."""
    last = ""
    for _ in range(attempts):
        out = git(root, "push", "-q", "origin", f"HEAD:refs/heads/{branch}", check=False)
        if out.startswith("0\n"):
            return git(root, "rev-parse", "HEAD")
        last = out.split("\n", 1)[1].strip()[:300]
        git(root, "fetch", "-q", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
        git(root, "rebase", "-q", f"origin/{branch}")
    raise GitFailed(f"push of {branch} failed {attempts} times: {last}")


def _fault(point: str) -> None:
    """Fault injection for crash tests (as ``LOOP_RUNTIME_FAULT_AT`` in the runner): die like ``kill -9``."""
    if os.environ.get("LOOP_RUNTIME_FAULT_AT") == point:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
