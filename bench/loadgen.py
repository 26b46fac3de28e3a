"""Many real SSE streams on raw asyncio sockets, and a publisher at a steady rate.

Raw sockets keep the load generator cheap: a protocol callback per arrival (no task per
stream), one regular-expression scan per read for the publish timestamps
(`"body":"ts:<epoch seconds>"`) in the payload. With uvloop when installed.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

TIMESTAMP = re.compile(rb"ts:([0-9.]+)")


@dataclass
class Sink:
    """Latencies (seconds) of what arrived, counted from when `recording` was set."""

    recording: bool = False
    latencies: list[float] = field(default_factory=list)
    closed_streams: int = 0

    def take(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken


class SseProtocol(asyncio.Protocol):
    """One stream, read by callbacks: no future, task or wake-up per arrival, so a single
    core can read far more deliveries per second than the server under test can write."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.transport: asyncio.Transport | None = None
        self.head: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP connection comes on a socket transport, which reads and writes.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, chunk: bytes) -> None:
        now = time.time()
        data = self._buffer + chunk
        if not self.head.done():
            head_end = data.find(b"\r\n\r\n")
            if head_end < 0:
                self._buffer = data
                return
            self.head.set_result(data[:head_end])
            data = data[head_end + 4 :]
        # An event ends at a blank line: LF LF (ours) or CRLF CRLF (sse-starlette).
        end = max(data.rfind(b"\n\n") + 2, data.rfind(b"\r\n\r\n") + 4)
        if end < 4:
            self._buffer = data
            return
        complete, self._buffer = data[:end], data[end:]
        if self.sink.recording:
            latencies = self.sink.latencies
            for match in TIMESTAMP.finditer(complete):
                latencies.append(now - float(match.group(1)))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(ConnectionError("closed before the response"))
        self.sink.closed_streams += 1


@dataclass
class Stream:
    transport: asyncio.Transport
    protocol: SseProtocol


async def open_stream(
    host: str, port: int, path: str, headers: dict[str, str], sink: Sink
) -> Stream:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(lambda: SseProtocol(sink), host, port)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await protocol.head
    if not head.startswith(b"HTTP/1.1 200"):
        transport.close()
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    return Stream(transport, protocol)


async def open_many(
    count: int,
    opener: Callable[[Sink], Awaitable[Stream]],
    sink: Sink,
    *,
    batch: int = 250,
    progress: Callable[[int], None] | None = None,
) -> list[Stream]:
    streams: list[Stream] = []
    while len(streams) < count:
        size = min(batch, count - len(streams))
        streams.extend(await asyncio.gather(*(opener(sink) for _ in range(size))))
        if progress is not None:
            progress(size)
    return streams


async def close_all(streams: list[Stream]) -> None:
    for stream in streams:
        stream.transport.close()
    await asyncio.sleep(0)  # let the transports run their connection_lost


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
