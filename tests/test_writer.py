"""The process's stream writer: one pass over the ready streams, a stalled peer set aside
with a deadline, nothing lost, repeated or reordered."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from app.realtime.client import Client, ClientKind, CloseReason
from app.realtime.events import Event, EventType
from app.realtime.writer import StreamWriter
from tests.wire import payload_text

TIMEOUT = 2.0


class Peer:
    """What one stream's server would receive; `stall()` makes its writes wait."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.writes = 0
        self.called = asyncio.Event()  # a write has started (it may be waiting)
        self._open = asyncio.Event()
        self._open.set()

    def stall(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    async def write(self, body: bytes) -> None:
        self.called.set()
        if not self._open.is_set():
            await self._open.wait()
        self.received += body
        self.writes += 1

    def events(self) -> list[str]:
        return [
            payload_text(line[len("data: ") :])
            for line in self.received.decode().splitlines()
            if line.startswith("data: ")
        ]

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            while len(self.events()) < count:
                await asyncio.sleep(0.001)


def make_client(number: int) -> Client:
    return Client(
        user_id=number,
        tenant_id=1,
        channels=frozenset({f"user:{number}"}),
        types=None,
        kind=ClientKind.STREAM,
        max_queue=100,
    )


def event(n: int) -> Event:
    return Event(type=EventType.PING, data={"ts": str(n)})


def stalled_stream(writer: StreamWriter) -> tuple[Client, Peer]:
    """One attached stream whose peer has stopped taking bytes, with an event on its way."""
    peer, client = Peer(), make_client(1)
    writer.attach(client, peer.write)
    peer.stall()
    client.offer(event(1))
    return client, peer


@pytest.fixture
async def writer() -> AsyncIterator[StreamWriter]:
    writer = StreamWriter(write_timeout=0.3)
    yield writer
    await writer.close()


async def test_every_stream_gets_its_events_once_in_order_and_batched(writer: StreamWriter) -> None:
    peers = [Peer() for _ in range(50)]
    clients = [make_client(i) for i in range(50)]
    for client, peer in zip(clients, peers, strict=True):
        writer.attach(client, peer.write)
    for n in range(5):  # offered in one go: the writer has not run yet
        for client in clients:
            assert client.offer(event(n))
    for peer in peers:
        await peer.wait_for(5)
        assert peer.events() == [f'{{"ts":"{n}"}}' for n in range(5)]
        assert peer.writes == 1  # five events, one write
    for client in clients:
        client.offer(event(5))
    for peer in peers:
        await peer.wait_for(6)
        assert peer.events()[-1] == '{"ts":"5"}'


async def test_a_stalled_peer_does_not_hold_back_the_others_and_catches_up_in_order(
    writer: StreamWriter,
) -> None:
    slow, fast = Peer(), Peer()
    slow_client, fast_client = make_client(1), make_client(2)
    writer.attach(slow_client, slow.write)
    writer.attach(fast_client, fast.write)
    slow.stall()
    for n in range(3):
        slow_client.offer(event(n))
        fast_client.offer(event(n))
        await fast.wait_for(n + 1)
    assert slow.events() == []
    slow.resume()
    await slow.wait_for(3)
    assert slow.events() == fast.events()
    assert not slow_client.closed


async def test_a_write_stalled_past_the_deadline_cuts_the_stream_as_a_slow_consumer(
    writer: StreamWriter,
) -> None:
    client, _ = stalled_stream(writer)
    async with asyncio.timeout(TIMEOUT):
        while not client.closed:
            await asyncio.sleep(0.01)
    assert client.close_reason is CloseReason.SLOW_CONSUMER


async def test_a_write_that_fails_closes_only_that_stream(writer: StreamWriter) -> None:
    async def broken(body: bytes) -> None:
        raise ConnectionResetError("peer went away")

    peer = Peer()
    gone, alive = make_client(1), make_client(2)
    writer.attach(gone, broken)
    writer.attach(alive, peer.write)
    gone.offer(event(1))
    alive.offer(event(1))
    await peer.wait_for(1)
    assert gone.close_reason is CloseReason.DISCONNECTED
    assert not alive.closed


async def test_detaching_drops_a_pending_write_and_later_events(writer: StreamWriter) -> None:
    client, peer = stalled_stream(writer)
    async with asyncio.timeout(TIMEOUT):
        await peer.called.wait()  # the write is under way, waiting for the peer
    writer.detach(client)
    peer.resume()
    client.offer(event(2))
    other = Peer()
    other_client = make_client(2)
    writer.attach(other_client, other.write)
    other_client.offer(event(3))
    await other.wait_for(1)  # the writer has run a pass since
    assert peer.events() == []
    assert writer.streams == 1


@contextlib.asynccontextmanager
async def one_stream(flush_delay: float) -> AsyncIterator[tuple[Client, Peer]]:
    """A writer with `flush_delay` and one attached stream."""
    writer = StreamWriter(write_timeout=None, flush_delay=flush_delay)
    peer, client = Peer(), make_client(1)
    writer.attach(client, peer.write)
    try:
        yield client, peer
    finally:
        await writer.close()


async def test_an_event_after_an_idle_spell_is_written_without_the_flush_delay() -> None:
    # A delay far longer than the wait below: the event can only arrive if it is not applied.
    async with one_stream(flush_delay=30.0) as (client, peer):
        client.offer(event(1))
        await peer.wait_for(1)
        assert peer.writes == 1


async def test_events_right_after_a_write_are_gathered_for_the_flush_delay() -> None:
    async with one_stream(flush_delay=0.2) as (client, peer):
        client.offer(event(0))
        await peer.wait_for(1)  # written at once: the writer was idle
        for n in range(1, 4):  # a stream of events, well inside the delay
            client.offer(event(n))
            await asyncio.sleep(0)
        await peer.wait_for(4)
        assert peer.events() == [f'{{"ts":"{n}"}}' for n in range(4)]
        assert peer.writes == 2  # the three that followed went out together
