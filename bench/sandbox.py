"""Benchmark: what the OS sandbox (srt) costs per agent call and per test run.

1. Start-up: ``/bin/true`` run 20 times bare and 20 times through ``SrtSandbox`` (the same
   path an agent CLI takes: a private settings file, the shims, ``srt_run.mjs`` → bubblewrap
   → ``sandbox_exec``); medians compared.
2. A test run: a small pytest suite (20 tests in a git worktree) run by ``run_tests`` bare and
   sandboxed, 5 times each; medians compared.

srt comes from ``$LOOP_RUNTIME_SRT``, ``srt`` on PATH, or the tests' npm cache.

    python bench/sandbox.py
    python bench/sandbox.py --runs 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loop_runtime.adapters.sandbox import SrtSandbox, find_srt, make_sandbox
from loop_runtime.adapters.test_runner import run_tests
from loop_runtime.ports import SandboxScope


def locate_srt() -> str:
    found = find_srt()
    if found:
        return found
    cached = Path.home() / ".cache" / "loop-runtime-tests" / "npm" / "node_modules" / ".bin" / "srt"
    if cached.exists():
        return str(cached)
    sys.exit("srt not found: npm install -g @anthropic-ai/sandbox-runtime (or set LOOP_RUNTIME_SRT)")


def project(root: Path) -> Path:
    """A git repo with a 20-test pytest suite and a loop worktree to run it in."""
    repo = root / "proj"
    (repo / "tests").mkdir(parents=True)
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "conftest.py").write_text("")
    tests = "".join(f"def test_{i}():\n    assert add({i}, 1) == {i + 1}\n\n\n" for i in range(20))
    (repo / "tests" / "test_calc.py").write_text("from calc import add\n\n\n" + tests)
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"],
                 ["worktree", "add", "-q", "-b", "loop/bench", ".loop-worktrees/bench"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    return repo


def time_process(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return time.perf_counter() - started


def startup(box: SrtSandbox, wt: Path, runs: int) -> tuple[float, float]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    bare = [time_process(["/bin/true"], env, wt) for _ in range(runs)]
    boxed_times = []
    for _ in range(runs):
        started = time.perf_counter()
        boxed = box.prepare(SandboxScope(cwd=str(wt), writable=True))
        argv, child = boxed.wrap(["/bin/true"], env)
        subprocess.run(argv, cwd=wt, env=child, check=True, stdin=subprocess.DEVNULL, capture_output=True)
        boxed.close()
        boxed_times.append(time.perf_counter() - started)
    return statistics.median(bare), statistics.median(boxed_times)


def test_runs(box: SrtSandbox, wt: Path, runs: int) -> tuple[float, float]:
    command = f"{sys.executable} -m pytest -q -p no:cacheprovider"
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    bare, boxed = [], []
    for _ in range(runs):
        run = run_tests(wt, command, timeout_s=300, env=env)
        assert run.passed, run.output
        bare.append(run.duration_s)
        started = time.perf_counter()
        run = run_tests(wt, command, timeout_s=300, env=env, sandbox=box)
        assert run.passed, run.output
        boxed.append(time.perf_counter() - started)
    return statistics.median(bare), statistics.median(boxed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="start-up samples per side (default 20)")
    parser.add_argument("--test-runs", type=int, default=5, help="pytest samples per side (default 5)")
    args = parser.parse_args()
    srt = locate_srt()
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        repo = project(Path(tmp))
        wt = repo / ".loop-worktrees" / "bench"
        box = make_sandbox("srt", root=repo, level="L2", env={**os.environ, "LOOP_RUNTIME_SRT": srt})
        assert isinstance(box, SrtSandbox)
        bare, boxed = startup(box, wt, args.runs)
        print(f"start-up, /bin/true (median of {args.runs}): bare {bare * 1000:.1f} ms, "
              f"sandboxed {boxed * 1000:.0f} ms; overhead {(boxed - bare) * 1000:.0f} ms; ratio {boxed / bare:.1f}x")
        tbare, tboxed = test_runs(box, wt, args.test_runs)
        print(f"pytest, 20 tests (median of {args.test_runs}): bare {tbare:.2f} s, sandboxed {tboxed:.2f} s; "
              f"overhead {tboxed - tbare:.2f} s; ratio {tboxed / tbare:.2f}x")


if __name__ == "__main__":
    main()
