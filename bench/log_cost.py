"""What the `event.publish` log line costs a publish, in-process (docs/OPERATIONS.md).

    python -m bench.log_cost                 # 50,000 publishes per setting
    python -m bench.log_cost --events 5000   # a quick look

One connection manager on the in-memory broker, one client that takes its events every
100 publishes, the app's logging configured as each LOG_FORMAT / LOG_LEVEL pair says and
written to /dev/null (the formatting and the write are what is measured, not a disk).
Prints microseconds per publish, the best of three rounds per pair.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import TextIO

from app import logs
from app.realtime.broker.memory import MemoryBroker
from app.realtime.events import Event, EventType
from app.realtime.manager import ConnectionManager

SETTINGS = (("json", "WARNING"), ("json", "INFO"), ("text", "INFO"))


async def microseconds_per_publish(log_format: str, level: str, events: int, sink: TextIO) -> float:
    logs.configure(log_format, level, sink)
    broker = MemoryBroker(replay_buffer_size=1000, replay_max_age_seconds=300.0)
    manager = ConnectionManager(
        broker, queue_size=events + 1, max_streams_per_user=1, heartbeat_seconds=0
    )
    await manager.start()
    try:
        client = (await manager.connect(user_id=1, tenant_id=1)).client
        started = time.perf_counter()
        for n in range(events):
            event = Event(
                type=EventType.NOTIFICATION_READ,
                data={"id": n, "all": False, "unreadCount": 0},
                channels=("user:1",),
                tenant_id=1,
            )
            await manager.publish(event)
            if n % 100 == 0:
                client.take_batch()
        return (time.perf_counter() - started) / events * 1e6
    finally:
        await manager.stop()


async def main(events: int, sink: TextIO) -> None:
    for log_format, level in SETTINGS:
        rounds = [await microseconds_per_publish(log_format, level, events, sink) for _ in range(3)]
        print(f"LOG_FORMAT={log_format} LOG_LEVEL={level}: {min(rounds):.1f} µs per publish")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.log_cost", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    with open(os.devnull, "w") as devnull:
        asyncio.run(main(parser.parse_args().events, devnull))
