"""Publish-to-write latency, `chat_event_delivery_seconds{transport, type}` on /metrics: known
delays (a busy event loop, a consumer that stops reading) show in it. In-process (the
mutation tool's fast tests of app/realtime/latency.py); a real backend timing a stream and a
tab is tests/test_delivery_latency_e2e.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.api.uvicorn_transport import chunk_writer
from app.metrics import Metrics
from app.realtime.broker.memory import MemoryBroker
from app.realtime.client import Client, ClientKind
from app.realtime.events import Event, EventType
from app.realtime.latency import DeliveryLatency
from app.realtime.manager import ConnectionManager
from app.realtime.writer import StreamWriter
from tests.asgi_server import serving
from tests.latency_metrics import at_most, histogram

TIMEOUT = 10.0
BUSY_SECONDS = 0.3
STALL_SECONDS = 0.5


def message(text: str) -> Event:
    """A chat:message as the use case publishes it: published now."""
    return Event(type=EventType.CHAT_MESSAGE, data={"content": text}, channels=("user:1",))


def stream_client(max_queue: int = 100) -> Client:
    return Client(
        user_id=1,
        tenant_id=1,
        channels=frozenset({"user:1"}),
        types=None,
        kind=ClientKind.STREAM,
        max_queue=max_queue,
    )


async def until(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


@pytest.fixture
async def metrics() -> AsyncIterator[tuple[StreamWriter, Metrics]]:
    """A stream writer and the /metrics of a process it writes for."""
    broker = MemoryBroker(replay_buffer_size=10, replay_max_age_seconds=60)
    manager = ConnectionManager(
        broker, queue_size=100, max_streams_per_user=10, heartbeat_seconds=0
    )
    latency = DeliveryLatency()
    writer = StreamWriter(write_timeout=30.0, latency=latency)
    figures = Metrics(manager, broker, writer)
    try:
        yield writer, figures
    finally:
        figures.close()
        await writer.close()


# -- known delays --------------------------------------------------------------------------


async def test_a_busy_event_loop_between_publish_and_write_shows_in_the_histogram(
    metrics: tuple[StreamWriter, Metrics],
) -> None:
    writer, figures = metrics
    client, received = stream_client(), bytearray()

    def write(body: bytes) -> None:
        received.extend(body)

    writer.attach(client, write)
    client.offer(message("prompt"))
    await until(lambda: b"prompt" in received, "the prompt event written")
    client.offer(message("late"))
    # The delay under test: the loop is busy, the writer cannot run.
    time.sleep(BUSY_SECONDS)  # noqa: ASYNC251
    await until(lambda: b"late" in received, "the late event written")

    series = histogram(figures.render().decode(), "stream", "chat:message")
    assert series["count"] == 2
    assert at_most(series, 0.25) == 1  # the prompt one; the late one waited for the loop
    assert at_most(series, 10.0) == 2
    assert series["sum"] >= BUSY_SECONDS


async def test_a_write_through_an_asgi_send_that_needs_no_wait_is_counted(
    metrics: tuple[StreamWriter, Metrics],
) -> None:
    """The other usual case (a server whose send is a coroutine that completes at once)."""
    writer, figures = metrics
    client, received = stream_client(), bytearray()

    async def send(body: bytes) -> None:
        received.extend(body)

    writer.attach(client, send)
    client.offer(message("through send"))
    await until(lambda: b"through send" in received, "the event written")

    series = histogram(figures.render().decode(), "stream", "chat:message")
    assert series["count"] == 1
    assert at_most(series, 0.25) == 1


async def test_a_consumer_that_stops_reading_shows_its_wait_in_the_histogram(
    metrics: tuple[StreamWriter, Metrics],
) -> None:
    """Over a real uvicorn and TCP: the write that waits for the peer, and the events queued
    behind it, are timed when their bytes are finally taken."""
    writer, figures = metrics
    client = stream_client(max_queue=10_000)
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        write = chunk_writer(send)
        assert write is not None
        writer.attach(client, write)
        await done.wait()
        writer.detach(client)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    big = "x" * 256 * 1024
    async with serving(app) as url:
        port = int(url.rsplit(":", 1)[1])
        reader, connection = await asyncio.open_connection("127.0.0.1", port)
        connection.write(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        try:
            await until(lambda: writer.streams == 1, "the stream attached")
            sent = 0
            while writer.stalled_writes() == 0:  # we read nothing: the buffers fill up
                assert sent < 512, "128 MB written and the peer's window never closed"
                client.offer(message(big))
                sent += 1
                await asyncio.sleep(0)
            behind = 3
            for n in range(behind):
                client.offer(message(f"behind {n}"))
            await asyncio.sleep(STALL_SECONDS)  # the delay under test: the peer reads nothing
            received = bytearray()
            async with asyncio.timeout(TIMEOUT):
                while b"behind 2" not in received:
                    received += await reader.read(1024 * 1024)
            await until(lambda: writer.stalled_writes() == 0, "the stalled write finished")
        finally:
            done.set()
            connection.close()
            await connection.wait_closed()

    series = histogram(figures.render().decode(), "stream", "chat:message")
    assert series["count"] == sent + behind
    waited = series["count"] - at_most(series, 0.25)
    # The write that stalled and the events queued behind it, at least.
    assert waited >= 1 + behind, series
    assert series["sum"] >= (1 + behind) * STALL_SECONDS


async def test_every_stream_counts_once_per_event_whatever_a_pass_mixes(
    metrics: tuple[StreamWriter, Metrics],
) -> None:
    """One pass over streams that took one event, another, or both in one batch."""
    writer, figures = metrics
    clients = [stream_client() for _ in range(5)]
    written: list[bytes] = []
    for client in clients:
        writer.attach(client, written.append)
    chat = message("hello")
    typing = Event(type=EventType.CHAT_TYPING, data={}, channels=("user:1",))
    for client, events in zip(
        clients, [[chat], [chat], [typing], [chat, typing], [chat]], strict=True
    ):
        for event in events:
            client.offer(event)
    await until(lambda: len(written) == 5, "every stream written")

    text = figures.render().decode()
    assert histogram(text, "stream", "chat:message")["count"] == 4
    assert histogram(text, "stream", "chat:typing")["count"] == 2
    assert histogram(text, "tab", "chat:message") == {}


def test_the_histogram_exports_cumulative_buckets_and_clamps_a_clock_behind() -> None:
    latency = DeliveryLatency()
    now = 1000.0
    for seconds in (0.0001, 0.003, 0.003, 2.0, 60.0, -5.0):
        event = Event(type=EventType.PING, data={}, published_at=now - seconds)
        latency.observe("stream", [event], now)
    (series,) = list(latency.series())
    buckets = dict(series.cumulative)
    assert (series.transport, series.type) == ("stream", "ping")
    assert buckets["0.0005"] == 2  # 0.0001 and the negative one, counted as 0
    assert buckets["0.005"] == 4
    assert buckets["2.5"] == 5
    assert buckets["10.0"] == 5
    assert buckets["+Inf"] == 6
    assert series.sum == pytest.approx(0.0001 + 0.003 + 0.003 + 2.0 + 60.0)
