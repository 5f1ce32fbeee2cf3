"""Tick overhead: mean wall time of a real (not dry-run) mock tick in a temp git repo.

Real files: the state file, the run log and the SQLite store are written every tick;
the mock backend costs no tokens and no time, so what is measured is the runtime's own
overhead (target ≤ 50 ms). The baseline printed beside it is the cost of one
`git rev-parse HEAD` subprocess measured in the same run, for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=50)
    ap.add_argument("--scenario", default=None, help="mock scenario (default: a 100-token report)")
    args = ap.parse_args()
    from loop_runtime.app.runner import LoopRunner, RunOptions
    from loop_runtime.app.runtime import load_project

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
        (root / "README.md").write_text("bench\n")
        # a cheap report (100 tokens) so that no tick of the run meets the daily cap and halts early
        scenario = Path(tmp) / ".bench-scenario.yaml"
        scenario.write_text("triage: {decision: report, tokens: 100, summary: bench, items: [{id: B-1, title: b}]}\n")
        subprocess.run(["git", "-c", "user.email=b@x", "-c", "user.name=b", "commit", "-qam", "init", "--allow-empty"],
                       cwd=root, check=True)
        project = load_project(root)
        plan = project.plan("issue-triage", "L1")
        runner = LoopRunner(project, plan, RunOptions(scenario=args.scenario or str(scenario)))
        times = []
        for _ in range(args.ticks):
            t0 = time.perf_counter()
            result = asyncio.run(runner.tick())
            times.append(time.perf_counter() - t0)
            assert result.outcome == "report-only", result.outcome  # the full report path, every tick
        runner.store.close()
        git_times = []
        for _ in range(20):
            t0 = time.perf_counter()
            subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True)
            git_times.append(time.perf_counter() - t0)
    mean = statistics.mean(times)
    print(f"mock tick (L1, report, real files + store): mean {mean * 1000:.1f} ms, "
          f"p50 {statistics.median(times) * 1000:.1f} ms over {args.ticks} ticks (target ≤ 50 ms)")
    print(f"baseline: one git subprocess {statistics.mean(git_times) * 1000:.1f} ms → tick = "
          f"{mean / statistics.mean(git_times):.1f}× a git call")


if __name__ == "__main__":
    main()
