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


def fresh_add(repo: Path, i: int) -> float:
    """``git worktree add -b`` of a new branch, as loop-worktree ``create`` does; removed untimed."""
    rel = f".bench-fresh/wt{i}"
    os.sync()  # earlier removals' writeback must not be billed to this measurement
    start = time.perf_counter()
    _git(repo, "worktree", "add", "-q", "-b", f"bench/fresh-{i}", rel, "main")
    elapsed = time.perf_counter() - start
    _git(repo, "worktree", "remove", "--force", rel)
    _git(repo, "branch", "-D", f"bench/fresh-{i}")
    return elapsed


def repeat_attempt(ws: GitWorkspace, i: int) -> float:
    """``GitWorkspace.prepare`` for attempt ``i`` after attempt ``i - 1`` was rejected; rejected untimed."""
    os.sync()
    start = time.perf_counter()
    handle = ws.prepare(f"bench-a{i}", "bench")
    elapsed = time.perf_counter() - start
    wt = Path(handle.path)
    assert not (wt / "scratch.txt").exists() and not (wt / "build").exists(), "leftovers from an earlier attempt"
    (wt / "scratch.txt").write_text(f"left by attempt {i}\n")
    (wt / "build").mkdir()
    (wt / "build" / "out.bin").write_bytes(b"ignored or not, it must go")
    (wt / "src" / "pkg000" / "mod00000.py").write_text("edited by the attempt\n")
    ws.finish(handle, "rejected")
    return elapsed


def measure(repo: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Interleave the two so that file-system noise (writeback after removals) hits both alike."""
    ws = GitWorkspace(repo, pool_size=1)
    ws.finish(ws.prepare("bench-a0", "bench"), "rejected")  # attempt 1 fills the pool
    fresh, ours = [], []
    for i in range(1, repeats + 1):
        fresh.append(fresh_add(repo, i))
        ours.append(repeat_attempt(ws, i))
    return fresh, ours


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
        fresh, ours = measure(repo, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    f_med, o_med = statistics.median(fresh), statistics.median(ours)
    rows = (("fresh `git worktree add`", fresh, f_med), ("GitWorkspace.prepare (repeat)", ours, o_med))
    for label, times, med in rows:
        print(f"{label:<31} median {med * 1000:8.1f} ms  ({', '.join(f'{t * 1000:.0f}' for t in times)})")
    ratio = o_med / f_med
    vs_best = o_med / min(fresh)  # against the fastest fresh add: robust to a noisy, write-bound machine
    print(f"ratio repeat/fresh = {ratio:.3f} (target <= 0.2): {'OK' if ratio <= 0.2 else 'MISSED'}; "
          f"against the fastest fresh add: {vs_best:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
