"""What normal looks like for `chat_event_delivery_seconds` (docs/OPERATIONS.md, "Latency").

    python -m bench.delivery_latency                       # 1,000 and 5,000 streams
    python -m bench.delivery_latency --streams 1000 --rates 10 40 --seconds 10

Our server (`scripts/serve`, as bench/run starts it, pinned to CPU 0) with N real SSE streams
on raw sockets (the load generator on CPU 1); admin notifications at each rate through
`POST /api/notifications`. For each step it prints two figures side by side:

- the server's own publish-to-write latency, p50 and p99 of the histogram's growth during
  the step (read from GET /metrics before and after, interpolated within a bucket the way
  Prometheus's histogram_quantile does);
- the load generator's publish-to-receive latency, from the timestamp in each payload: what
  a consumer on the same machine sees, the server's figure plus the socket and the reading.

The server's figure is what the ChatSlowDelivery alert reads; the ratio between the two says
how much of a consumer's wait is spent inside the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.progress import Progress

from bench.measure import run_rates
from bench.servers import LOADGEN_CPU, Server, start_ours

HISTOGRAM = "chat_event_delivery_seconds"
SERIES = ("stream", "notification:new")

Buckets = dict[float, float]  # upper bound -> cumulative count


def buckets(server: Server, series: tuple[str, str] = SERIES) -> Buckets:
    """One (transport, type) series of the histogram, cumulative, by bound."""
    text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).text
    found: Buckets = {}
    for family in text_string_to_metric_families(text):
        if family.name != HISTOGRAM:
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_bucket") and (labels["transport"], labels["type"]) == series:
                found[float(labels["le"])] = sample.value
    return found


def quantile(q: float, before: Buckets, after: Buckets) -> float:
    """histogram_quantile(q) of what was observed between the two scrapes, in seconds."""
    grown = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = grown[-1][1] if grown else 0.0
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in grown:
        if count >= rank:
            if bound == float("inf"):
                return lower  # past the last bound: Prometheus answers the last bound too
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


async def main(args: argparse.Namespace) -> None:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(LOADGEN_CPU)})
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    print("| streams | events/s | server p50 | server p99 | consumer p50 | consumer p99 |")
    print("|---:|---:|---:|---:|---:|---:|")
    with Progress(transient=True) as progress:
        for streams in args.streams:
            folder = work / f"ours-{streams}"
            folder.mkdir()
            server = start_ours(folder)
            try:
                for rate in args.rates:
                    before = buckets(server)
                    steps, _ = await run_rates(
                        server, f"N={streams}", streams, [rate], args.seconds, progress
                    )
                    after = buckets(server)
                    (step,) = steps
                    p50, p99 = (quantile(q, before, after) * 1000 for q in (0.5, 0.99))
                    print(
                        f"| {streams:,} | {rate:g} | {p50:.1f} ms | {p99:.1f} ms "
                        f"| {step.p50_ms:.1f} ms | {step.p99_ms:.1f} ms |",
                        flush=True,
                    )
            finally:
                server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.delivery_latency", description=__doc__)
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rates", type=float, nargs="+", default=[2, 10, 40])
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
