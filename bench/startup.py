"""Start-up: `loop-runtime list` and `status` against node `loop-cost --list` and a bare interpreter.

Medians of N runs of each command, all measured in the same run on the same machine,
then the ratios. Targets (issue 11): `list` ≤ 0.5× `loop-cost --list`, `status` ≤ 100 ms
wall on a project with 8 loops and a month of history:

* 8 loops enabled the ways a project does it: four named in LOOP.md, four by their state files;
* `loop-run-log.md` with 30 days × 8 loops × 4 entries in the ecosystem's format (the text
  `formats.runlog.append_entry` leaves after a month of appends);
* `.loop-runtime/runtime.db` holding the same month through the store API (ticks,
  reservations settled, top-ups, escalations, next-due times) plus real mock ticks
  run today through the CLI.

Run with `python bench/startup.py [--runs 30] [--keep DIR] [--where]` (with PYTHONDONTWRITEBYTECODE
unset, so the measured commands use their .pyc files as an installed tool does). ``--where`` also
prints where `status` spends its time: the modules whose own import costs most (`-X importtime`,
minimum over the runs) and the frozen dataclasses built while importing (each costs a handful of
``exec`` calls in Python 3.11).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LOOP_MD_LOOPS = ("daily-triage", "pr-babysitter", "dependency-sweeper", "changelog-drafter")
STATE_FILE_LOOPS = {"issue-pr-repair": "repair-loop-state.md", "ci-sweeper": "ci-sweeper-state.md",
                    "post-merge-cleanup": "post-merge-state.md", "issue-triage": "issue-triage-state.md"}
DAYS, PER_DAY = 30, 4
OUTCOMES = ("no-op", "report-only", "fix-proposed", "escalated")


def make_project(root: Path, ours: str) -> None:
    """A project with 8 loops and a month of run log and run store (see the module docstring)."""
    from loop_runtime.adapters.store.sqlite import RunStore
    from loop_runtime.formats.runlog import TEMPLATE, RunLogEntry

    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    rows = "\n".join(f"| {pid} | 1d | L{1 + i % 2} | loop-runtime run {pid} |" for i, pid in enumerate(LOOP_MD_LOOPS))
    (root / "LOOP.md").write_text("# LOOP.md\n\n## Active Loops\n\n| Pattern | Cadence | Status | Command |\n"
                                  f"|---|---|---|---|\n{rows}\n", "utf-8")
    for state in STATE_FILE_LOOPS.values():
        (root / state).write_text(f"# {state}\n\n## Notes\n\n- set up for the start-up bench\n", "utf-8")
    loops = (*LOOP_MD_LOOPS, *STATE_FILE_LOOPS)
    now = datetime.now(UTC).replace(microsecond=0)
    lines: list[str] = []
    store = RunStore.open(root)
    try:
        n = 0
        for day in range(DAYS - 1, -1, -1):
            for k in range(PER_DAY):
                at = now - timedelta(days=day, hours=k * 5 + 1)
                for pid in loops:
                    n += 1
                    run_id = at.strftime("%Y-%m-%dT%H:%M:%SZ")
                    outcome = OUTCOMES[n % len(OUTCOMES)]
                    tokens = 2_000 + (n * 137) % 9_000
                    entry = RunLogEntry(run_id, pid, 30 + n % 60, n % 5, n % 2, int(outcome == "escalated"), tokens,
                                        outcome)
                    lines.append(entry.to_json())
                    if n % 3 == 0:  # a third of the log comes from other tools: no tick in the store
                        continue
                    tick = f"t{n:05d}"
                    store.begin_tick(tick_id=tick, run_id=run_id, pattern=pid, level="L1", backend="mock",
                                     started_at=at, owner="bench")
                    res = store.reserve(pattern=pid, day=at.date(), amount=tokens, cap=10**9, tick_id=tick, now=at)
                    store.record_phase(tick, "triage", {"tokens": tokens}, at)
                    if res is not None:
                        store.settle(res.id, tokens, at)
                    store.finish_tick(tick, outcome=outcome, tokens=tokens, summary={"items": n % 5},
                                      finished_at=at + timedelta(seconds=40))
                    if outcome == "escalated":
                        esc = store.add_escalation(pattern=pid, item_id=f"I-{n}", title=f"bench item {n}",
                                                   tick_id=tick, run_id=run_id, diff="--- a/x\n+++ b/x\n",
                                                   context={"reason": "bench"}, created_at=at)
                        if day > 2:  # older ones were decided; the last days' are still open
                            store.resolve_escalation(esc, status="rejected", decided_by="bench", reason="old",
                                                     at=at + timedelta(hours=1))
            for pid in loops[:2]:
                store.add_topup(pid, (now - timedelta(days=day)).date(), 5_000, "bench", now)
        store.set_next_dues({pid: now + timedelta(hours=6) for pid in loops})
    finally:
        store.close()
    # what append_entry leaves after a month of appends (built at once: appending one by one is quadratic)
    (root / "loop-run-log.md").write_text(TEMPLATE.format(project="bench") + "\n\n" + "\n".join(lines) + "\n", "utf-8")
    for pid in ("ci-sweeper", "daily-triage"):  # real ticks too, through the real CLI
        subprocess.run([ours, "run", pid, "--scenario", "noop", "--log-format", "none"], cwd=root, check=True,
                       stdout=subprocess.DEVNULL)


def medians(cmd: list[str], runs: int, cwd: str) -> tuple[float, float]:
    """Median wall time and median CPU time (user + sys of the child; steadier on a busy machine)."""
    walls, cpus = [], []
    env = {k: v for k, v in os.environ.items() if k != "LOOP_PROJECT_ROOT"}
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


DATACLASS_PROBE = """
import dataclasses, sys, time
made, spent, build = [], [0.0], dataclasses._process_class
def timed(cls, *a, **k):
    t = time.process_time()
    try:
        return build(cls, *a, **k)
    finally:
        spent[0] += time.process_time() - t
        made.append(cls.__module__)
dataclasses._process_class = timed
sys.argv = ["loop-runtime", "status"]
from loop_runtime.quick import main
try:
    main()
except SystemExit:
    pass
print(f"DATACLASSES {len(made)} {spent[0] * 1000:.1f}", file=sys.stderr)
"""


def where_status_goes(ours: str, root: Path, runs: int) -> list[str]:
    """`status` broken down: the costliest imports (own time, best of ``runs``) and the dataclasses it builds."""
    env = {k: v for k, v in os.environ.items() if k != "LOOP_PROJECT_ROOT"}
    python = Path(ours).with_name("python")
    python_cmd = str(python) if python.exists() else sys.executable
    best: dict[str, int] = {}
    for _ in range(runs):
        proc = subprocess.run([python_cmd, "-X", "importtime", "-c", "from loop_runtime.quick import main; main()",
                               "status"], cwd=root, env=env, capture_output=True, text=True, check=True)
        for line in proc.stderr.splitlines():
            parts = line.removeprefix("import time:").split("|")
            if len(parts) == 3 and parts[0].strip().isdigit():
                name = parts[2].strip()
                best[name] = min(best.get(name, 1 << 62), int(parts[0]))
    ours_us = sum(us for name, us in best.items() if name.startswith("loop_runtime"))
    out = [f"status imports (own time, best of {runs}): {sum(best.values()) / 1000:.1f} ms, of which loop_runtime "
           f"{ours_us / 1000:.1f} ms"]
    out += [f"  {us / 1000:6.1f} ms  {name}" for name, us in sorted(best.items(), key=lambda kv: -kv[1])[:15]]
    proc = subprocess.run([python_cmd, "-c", DATACLASS_PROBE], cwd=root, env=env, capture_output=True, text=True,
                          check=True)
    count, ms = next(line.split()[1:] for line in proc.stderr.splitlines() if line.startswith("DATACLASSES"))
    return [*out, f"dataclasses built by status: {count}, {ms} ms CPU"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--keep", type=Path, default=None,
                    help="Build the project here and keep it (reused when it is already there).")
    ap.add_argument("--where", action="store_true", help="Also break `status` down: imports and dataclasses.")
    args = ap.parse_args()
    from tests.support.npm_tools import bin_path

    loop_cost = str(bin_path("loop-cost"))
    bindir = Path(sys.executable).parent
    ours = str(bindir / "loop-runtime") if (bindir / "loop-runtime").exists() else "loop-runtime"
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "LOOP.md").exists():
            make_project(root, ours)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "loop-cost --list (node)": [loop_cost, "--list"],
            "loop-runtime list": [ours, "list"],
            "loop-runtime status (8 loops)": [ours, "status"],
        }
        for cmd in commands.values():  # warm caches once
            subprocess.run(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        # interleaved rounds, so a burst of load elsewhere hits every command alike
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                samples[name].append(medians(cmd, 1, str(root)))
        where = where_status_goes(ours, root, max(3, args.runs // 3)) if args.where else []
    wall = {n: statistics.median(w for w, _ in s) for n, s in samples.items()}
    cpu = {n: statistics.median(c for _, c in s) for n, s in samples.items()}
    print(f"{'':32s} {'wall':>9s} {'cpu':>9s}   (medians of {args.runs} runs)")
    for name in commands:
        print(f"{name:32s} {wall[name] * 1000:6.1f} ms {cpu[name] * 1000:6.1f} ms")
    node, bare = "loop-cost --list (node)", "python -c pass"
    lst, status = "loop-runtime list", "loop-runtime status (8 loops)"
    print(f"list / loop-cost --list          {wall[lst] / wall[node]:5.2f}     {cpu[lst] / cpu[node]:5.2f}   "
          "(target ≤ 0.5)")
    print(f"list / bare python               {wall[lst] / wall[bare]:5.2f}     {cpu[lst] / cpu[bare]:5.2f}")
    print(f"status / bare python             {wall[status] / wall[bare]:5.2f}     {cpu[status] / cpu[bare]:5.2f}")
    print(f"status                          {wall[status] * 1000:6.1f} ms  (target ≤ 100 ms wall)")
    if where:
        print()
        print("\n".join(where))


if __name__ == "__main__":
    main()
