"""What the benchmark measures on a running `Server`: deliveries and latency at rising
publish rates over N open streams (with the memory they hold), and the cost of one publish
while unrelated streams are open."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from rich.progress import Progress

from bench.loadgen import Sink, Stream, close_all, open_many, open_stream, publish_at
from bench.servers import Server


@dataclass
class Step:
    server: str
    scenario: str
    streams: int
    rate: float
    target_deliveries: float
    deliveries_per_s: float
    delivered_share: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_percent: float
    rss_mb: float
    publish_errors: int = 0


@dataclass
class Held:
    server: str
    scenario: str
    streams: int
    connect_seconds: float
    bytes_per_stream: float
    rss_mb: float


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_rates(
    server: Server,
    scenario: str,
    streams_count: int,
    rates: Sequence[float],
    seconds: float,
    progress: Progress,
) -> tuple[list[Step], Held]:
    sink = Sink()
    task = progress.add_task(f"{server.name}: {scenario} connect", total=streams_count)
    before = server.rss()
    started = time.perf_counter()
    streams = await open_many(
        streams_count,
        lambda sink: open_stream(
            "127.0.0.1", server.port, server.stream_path, server.stream_headers, sink
        ),
        sink,
        progress=lambda n: progress.advance(task, n),
    )
    connect_seconds = time.perf_counter() - started
    await asyncio.sleep(2)  # let the server settle before measuring memory
    held = Held(
        server.name,
        scenario,
        streams_count,
        connect_seconds,
        (server.rss() - before) / streams_count,
        server.rss() / 2**20,
    )
    progress.remove_task(task)
    steps: list[Step] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for rate in rates:
            task = progress.add_task(f"{server.name}: {scenario} {rate:g} ev/s", total=None)
            sink.take()
            sink.recording = True
            errors = 0
            seq = 0

            async def publish() -> None:
                nonlocal errors, seq
                seq += 1
                try:
                    await server.publisher()(client, seq)
                except httpx.HTTPError:
                    errors += 1

            cpu_before, t0 = server.cpu_seconds(), time.perf_counter()
            published = await publish_at(rate, seconds, publish)
            elapsed = time.perf_counter() - t0
            cpu = (server.cpu_seconds() - cpu_before) / elapsed * 100
            expected = (published - errors) * streams_count
            deadline = time.perf_counter() + 5
            while len(sink.latencies) < expected and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            sink.recording = False
            latencies = sink.take()
            steps.append(
                Step(
                    server=server.name,
                    scenario=scenario,
                    streams=streams_count,
                    rate=rate,
                    target_deliveries=rate * streams_count,
                    deliveries_per_s=len(latencies) / elapsed,
                    delivered_share=len(latencies) / max(1, published * streams_count),
                    p50_ms=percentile(latencies, 0.5) * 1000,
                    p99_ms=percentile(latencies, 0.99) * 1000,
                    max_ms=max(latencies, default=float("nan")) * 1000,
                    cpu_percent=cpu,
                    rss_mb=server.rss() / 2**20,
                    publish_errors=errors,
                )
            )
            progress.remove_task(task)
    await close_all(streams)
    return steps, held


async def publish_cost(server: Server, unrelated: int, samples: int, progress: Progress) -> float:
    """Median time of one publish (HTTP round trip) with `unrelated` other streams open."""
    sink = Sink()
    streams: list[Stream] = []
    if unrelated:
        task = progress.add_task(f"{server.name}: {unrelated} unrelated streams", total=unrelated)
        streams = await open_many(
            unrelated,
            lambda sink: open_stream(
                "127.0.0.1", server.port, server.stream_path, server.stream_headers, sink
            ),
            sink,
            progress=lambda n: progress.advance(task, n),
        )
        progress.remove_task(task)
    times = []
    publish = server.publish_elsewhere or server.publisher()
    async with httpx.AsyncClient(timeout=30) as client:
        for seq in range(samples):
            t0 = time.perf_counter()
            await publish(client, seq)
            times.append(time.perf_counter() - t0)
    await close_all(streams)
    return statistics.median(times) * 1000
