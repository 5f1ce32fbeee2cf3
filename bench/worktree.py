"""Benchmark: attempt setup on a repeat attempt vs a fresh ``git worktree add``.

A loop retries (up to 3 attempts per item, many items per day). A fresh worktree writes
every file of the repository; ``GitWorkspace`` recycles a rejected attempt's worktree
into a pool and hands it to the next attempt with a rename, ``checkout -f -b`` and
``clean -ffdx``. This script builds a 10,000-file repository, measures both in the same
run and prints the ratio (target ≤ 0.2).

    /work/venv/bin/python bench/worktree.py [--files 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loop_runtime.adapters.git_workspace import GitWorkspace


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def build_repo(path: Path, files: int) -> Path:
    """A repository with ``files`` small source files spread over 100 folders, one commit on main."""
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.name", "bench")
    _git(path, "config", "user.email", "bench@example.com")
    _git(path, "config", "commit.gpgsign", "false")
    for i in range(files):
        folder = path / "src" / f"pkg{i % 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"mod{i:05d}.py").write_text(f"# module {i}\nVALUE = {i}\n\ndef f():\n    return VALUE * 2\n")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "bench repo")
    return path


def time_fresh(repo: Path, repeats: int) -> list[float]:
    """``git worktree add -b`` of a new branch, as loop-worktree ``create`` does, then removed untimed."""
    times = []
    for i in range(repeats):
        rel = f".bench-fresh/wt{i}"
        start = time.perf_counter()
        _git(repo, "worktree", "add", "-q", "-b", f"bench/fresh-{i}", rel, "main")
        times.append(time.perf_counter() - start)
        _git(repo, "worktree", "remove", "--force", rel)
        _git(repo, "branch", "-D", f"bench/fresh-{i}")
    return times


def time_repeat(repo: Path, repeats: int) -> list[float]:
    """``GitWorkspace.prepare`` for attempts 2..n, each after the previous attempt was rejected."""
    ws = GitWorkspace(repo, pool_size=1)
    handle = ws.prepare("bench-a0", "bench")
    (Path(handle.path) / "scratch.txt").write_text("left by attempt 0\n")  # leftovers must go
    ws.finish(handle, "rejected")
    times = []
    for i in range(1, repeats + 1):
        start = time.perf_counter()
        handle = ws.prepare(f"bench-a{i}", "bench")
        times.append(time.perf_counter() - start)
        assert not (Path(handle.path) / "scratch.txt").exists()
        (Path(handle.path) / "scratch.txt").write_text(f"left by attempt {i}\n")
        ws.finish(handle, "rejected")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="loop-bench-"))
    try:
        t0 = time.perf_counter()
        repo = build_repo(tmp / "repo", args.files)
        print(f"built {args.files}-file repo in {time.perf_counter() - t0:.1f}s ({os.cpu_count()} cpus)")
        fresh = time_fresh(repo, args.repeats)
        ours = time_repeat(repo, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    f_med, o_med = statistics.median(fresh), statistics.median(ours)
    print(f"fresh `git worktree add`        median {f_med * 1000:8.1f} ms  ({', '.join(f'{t*1000:.0f}' for t in fresh)})")
    print(f"GitWorkspace.prepare (repeat)   median {o_med * 1000:8.1f} ms  ({', '.join(f'{t*1000:.0f}' for t in ours)})")
    ratio = o_med / f_med
    print(f"ratio repeat/fresh = {ratio:.3f} (target <= 0.2): {'OK' if ratio <= 0.2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
