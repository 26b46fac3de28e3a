"""What one pass of the stream writer costs per stream, in-process, with a write that only
takes the bytes: the writer's own work (taking each client's batch, encoding once, counting
the latency), without the kernel's.

    python -m bench.writer_pass                 # 5,000 streams, 200 events
    python -m bench.writer_pass --streams 1000

Prints nanoseconds per stream per event, the best of five rounds. Run it at two commits to
see what a change to the hot loop costs (docs/OPERATIONS.md, "Latency", does for the
latency histogram).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from app.realtime.client import Client, ClientKind
from app.realtime.events import Event, EventType
from app.realtime.writer import StreamWriter


async def nanoseconds_per_delivery(streams: int, events: int) -> float:
    writer = StreamWriter(write_timeout=10.0)
    written = 0

    def write(body: bytes) -> None:
        nonlocal written
        written += 1

    clients = [
        Client(
            user_id=n,
            tenant_id=1,
            channels=frozenset({"tenant:1"}),
            types=None,
            kind=ClientKind.STREAM,
            max_queue=10,
        )
        for n in range(streams)
    ]
    for client in clients:
        writer.attach(client, write)
    started = time.perf_counter()
    for n in range(events):
        event = Event(type=EventType.NOTIFICATION_READ, data={"id": n}, channels=("tenant:1",))
        for client in clients:
            client.offer(event)
        target = (n + 1) * streams
        while written < target:
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    await writer.close()
    return elapsed / (events * streams) * 1e9


async def main(streams: int, events: int) -> None:
    rounds = [await nanoseconds_per_delivery(streams, events) for _ in range(5)]
    print(f"{streams} streams: {min(rounds):.0f} ns per stream per event (best of 5)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.writer_pass", description=__doc__)
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--events", type=int, default=200)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.streams, arguments.events))
