"""Metering-proxy overhead: added latency per streamed model call and throughput, proxy vs direct.

The upstream is the local stand-in (tests/fakes/model_server.py) answering an Anthropic
streamed message; the client is httpx reading the whole stream. Per call we time the first
byte and the full stream, directly and through ``MeteringProxy`` (which reads the usage off
every chunk); the added p50 is the difference of the medians (target ≤ 5 ms). Throughput is
calls per second with ``--concurrency`` clients, proxy vs direct. Prints numbers and ratios;
asserts nothing (the machine may be loaded).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

USAGE = {"input_tokens": 1000, "output_tokens": 200, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


async def one(client: object, url: str) -> tuple[float, float]:
    start = time.perf_counter()
    first = None
    async with client.stream("POST", f"{url}/v1/messages", json={"stream": True, "model": "m"}) as r:  # type: ignore[attr-defined]
        async for _ in r.aiter_raw():
            if first is None:
                first = time.perf_counter() - start
    return first or 0.0, time.perf_counter() - start


async def series(url: str, calls: int) -> tuple[list[float], list[float]]:
    import httpx

    firsts, totals = [], []
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        for _ in range(calls):
            f, t = await one(client, url)
            firsts.append(f)
            totals.append(t)
    return firsts, totals


async def throughput(url: str, calls: int, concurrency: int) -> float:
    import httpx

    async with httpx.AsyncClient(trust_env=False, timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        sem = asyncio.Semaphore(concurrency)

        async def go() -> None:
            async with sem:
                await one(client, url)

        start = time.perf_counter()
        await asyncio.gather(*(go() for _ in range(calls)))
        return calls / (time.perf_counter() - start)


async def main_async(calls: int, concurrency: int) -> None:
    from loop_runtime.adapters.metering_proxy import MeteringProxy
    from tests.fakes.model_server import ModelServer

    with ModelServer(exhausted_turn={"text": "x" * 2000, "usage": USAGE}) as server:
        await series(server.base_url, 20)  # warm up both paths
        async with MeteringProxy(server.base_url, 10**15) as proxy:
            await series(proxy.base_url, 20)
            d_first, d_total = await series(server.base_url, calls)
            p_first, p_total = await series(proxy.base_url, calls)
            d_rate = await throughput(server.base_url, calls, concurrency)
            p_rate = await throughput(proxy.base_url, calls, concurrency)
            metered = len(proxy.ledger.calls)

    def ms(values: list[float]) -> float:
        return statistics.median(values) * 1000

    print(f"calls per series: {calls}; proxy metered {metered} calls, all exact")
    print(f"first byte p50: direct {ms(d_first):.2f} ms, proxy {ms(p_first):.2f} ms, "
          f"added {ms(p_first) - ms(d_first):.2f} ms")
    print(f"full stream p50: direct {ms(d_total):.2f} ms, proxy {ms(p_total):.2f} ms, "
          f"added {ms(p_total) - ms(d_total):.2f} ms (target ≤ 5 ms)")
    print(f"throughput x{concurrency}: direct {d_rate:.0f} calls/s, proxy {p_rate:.0f} calls/s "
          f"(ratio {p_rate / d_rate:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    asyncio.run(main_async(args.calls, args.concurrency))


if __name__ == "__main__":
    main()
