"""Benchmark: GitHub discovery over an unchanged repository — requests, rate-limit cost, latency.

Runs the connector's real discovery (``adapters.github.discovery.discover`` through
``GithubSession``, githubkit, the ETag cache persisted under ``.loop-runtime/``) against the
local GitHub stand-in (tests/fakes/github_server.py on 127.0.0.1) for N ticks of one
pattern. The repository never changes, so the target is: every request after the first
tick is answered ``304 Not Modified`` (rate-limit cost 0). Latency is reported per tick
(median and p95 of the warm ticks against the cold first tick) — ratios, no asserts.

    python bench/github_discovery.py                        # 100 ticks of daily-triage
    python bench/github_discovery.py --ticks 50 --pattern pr-babysitter --issues 300
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loop_runtime.adapters.github import GithubSession  # noqa: E402
from loop_runtime.adapters.github.config import GithubSettings  # noqa: E402
from tests.fakes.github_server import TOKEN, GithubStandIn  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=100)
    ap.add_argument("--pattern", default="daily-triage")
    ap.add_argument("--issues", type=int, default=120, help="open issues in the stand-in (paginated)")
    ap.add_argument("--page-size", type=int, default=50)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp, GithubStandIn(page_size=args.page_size) as gh:
        for n in range(1, args.issues + 1):
            gh.issue(n, f"issue {n}", ("bug",) if n % 3 == 0 else ())
        for n in range(5):
            gh.failing_run(100 + n, workflow_id=n + 1)
        s = GithubSettings(repository=gh.repo.full_name, api_url=gh.url, token=TOKEN, token_source="GITHUB_TOKEN",
                           max_pages=10)
        per_tick: list[tuple[int, int, float]] = []
        texts = set()
        for _ in range(args.ticks):
            before = len(gh.requests)
            session = GithubSession(Path(tmp), s, args.pattern)
            t0 = time.perf_counter()
            texts.add(session.observe())
            elapsed = time.perf_counter() - t0
            reqs = gh.requests[before:]
            per_tick.append((len(reqs), sum(1 for r in reqs if r["status"] != 304), elapsed))
        first, rest = per_tick[0], per_tick[1:]
        warm_requests = sum(r for r, _, _ in rest)
        warm_cost = sum(c for _, c, _ in rest)
        warm_lat = sorted(t for _, _, t in rest) or [first[2]]
        p95 = warm_lat[min(len(warm_lat) - 1, int(len(warm_lat) * 0.95))]
        print(f"pattern {args.pattern}: {args.ticks} ticks over an unchanged repository "
              f"({args.issues} issues, {args.page_size}/page)")
        print(f"  first tick : {first[0]} requests, rate-limit cost {first[1]}, {first[2] * 1000:.1f} ms")
        print(f"  ticks 2..{args.ticks}: {warm_requests} requests, rate-limit cost {warm_cost} "
              f"({warm_requests - warm_cost} answered 304 = "
              f"{100 * (warm_requests - warm_cost) / max(1, warm_requests):.1f}%)")
        print(f"  latency    : median {statistics.median(warm_lat) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms "
              f"(cold/warm ratio {first[2] / max(1e-9, statistics.median(warm_lat)):.2f})")
        print(f"  observation text identical on every tick: {len(texts) == 1} (same fingerprint → 0-token no-op)")
        print(f"  target met (every request after the first tick answered 304): {warm_cost == 0}")


if __name__ == "__main__":
    main()
