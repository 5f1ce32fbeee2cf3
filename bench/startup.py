"""Start-up: `loop-runtime list` vs the reference `loop-cost --list` (Node), medians of N runs.

Prints both medians and the ratio ours/theirs (target ≤ 1.0). Both are measured in the
same run on the same machine; run with `python bench/startup.py [--runs 30]`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def median_wall(cmd: list[str], runs: int, cwd: str) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    from tests.support.npm_tools import bin_path

    loop_cost = str(bin_path("loop-cost"))
    ours = shutil.which("loop-runtime") or str(Path(sys.executable).parent / "loop-runtime")
    with tempfile.TemporaryDirectory() as tmp:
        for cmd in ([ours, "list"], [loop_cost, "--list"]):  # warm caches once
            subprocess.run(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        a = median_wall([ours, "list"], args.runs, tmp)
        b = median_wall([loop_cost, "--list"], args.runs, tmp)
    print(f"loop-runtime list     median {a * 1000:7.1f} ms  ({args.runs} runs)")
    print(f"loop-cost --list      median {b * 1000:7.1f} ms  ({args.runs} runs)")
    print(f"ratio ours/reference  {a / b:.2f}  (target ≤ 1.0)")


if __name__ == "__main__":
    main()
