"""Many real SSE streams on raw asyncio sockets, and a publisher at a steady rate.

Raw sockets keep the load generator cheap: one read per arrival, one regular-expression
scan per read for the publish timestamps (`"body":"ts:<epoch seconds>"`) in the payload.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

TIMESTAMP = re.compile(rb'"body":"ts:([0-9.]+)"|ts:([0-9.]+)')


@dataclass
class Sink:
    """Latencies (seconds) of what arrived, counted from when `recording` was set."""

    recording: bool = False
    latencies: list[float] = field(default_factory=list)
    closed_streams: int = 0

    def take(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken


@dataclass
class Stream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None = None


async def open_stream(host: str, port: int, path: str, headers: dict[str, str]) -> Stream:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        writer.close()
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    return Stream(reader, writer)


async def consume(stream: Stream, sink: Sink) -> None:
    leftover = b""
    try:
        while True:
            chunk = await stream.reader.read(1 << 16)
            if not chunk:
                break
            now = time.time()
            data = leftover + chunk
            # An event ends at a blank line: LF LF (ours) or CRLF CRLF (sse-starlette).
            end = max(data.rfind(b"\n\n") + 2, data.rfind(b"\r\n\r\n") + 4)
            if end < 4:
                leftover = data
                continue
            complete, leftover = data[:end], data[end:]
            if sink.recording:
                for match in TIMESTAMP.finditer(complete):
                    sent = match.group(1) or match.group(2)
                    sink.latencies.append(now - float(sent))
    except (ConnectionError, OSError):
        pass
    finally:
        sink.closed_streams += 1


async def open_many(
    count: int,
    opener: Callable[[], Awaitable[Stream]],
    sink: Sink,
    *,
    batch: int = 250,
    progress: Callable[[int], None] | None = None,
) -> list[Stream]:
    streams: list[Stream] = []
    while len(streams) < count:
        size = min(batch, count - len(streams))
        opened = await asyncio.gather(*(opener() for _ in range(size)))
        for stream in opened:
            stream.task = asyncio.create_task(consume(stream, sink))
        streams.extend(opened)
        if progress is not None:
            progress(size)
    return streams


async def close_all(streams: list[Stream]) -> None:
    for stream in streams:
        stream.writer.close()
    for stream in streams:
        if stream.task is not None:
            stream.task.cancel()
    await asyncio.gather(*(s.task for s in streams if s.task), return_exceptions=True)


async def publish_at(
    rate: float, seconds: float, publish: Callable[[], Awaitable[None]], *, in_flight: int = 64
) -> int:
    """Call `publish` `rate` times a second for `seconds`, on a fixed schedule."""
    limit = asyncio.Semaphore(in_flight)
    tasks: list[asyncio.Task[None]] = []

    async def one() -> None:
        async with limit:
            await publish()

    start = time.perf_counter()
    total = int(rate * seconds)
    for n in range(total):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return total
