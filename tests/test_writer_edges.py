"""Edges of the stream writer (app/realtime/writer.py): writes that return at once, fail at
once or fail after waiting, one writer task, a turn of the loop between batches and passes,
the tenant filter of stalled_writes, what close() and detach() leave behind (also in the turn
a write stalls), and the idle rule of the flush delay on a clock the test moves by hand."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable

import pytest

from app.realtime.client import Client, ClientKind, CloseReason
from app.realtime.events import Event, EventType
from app.realtime.writer import StreamWriter
from tests.wire import payload_text

TIMEOUT = 2.0


def make_client(number: int, tenant_id: int = 1) -> Client:
    return Client(
        user_id=number,
        tenant_id=tenant_id,
        channels=frozenset({f"user:{number}"}),
        types=None,
        kind=ClientKind.STREAM,
        max_queue=100,
    )


def event(n: int) -> Event:
    return Event(type=EventType.PING, data={"ts": str(n)})


def events_in(body: bytes) -> list[str]:
    return [
        payload_text(line[len("data: ") :])
        for line in body.decode().splitlines()
        if line.startswith("data: ")
    ]


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.001)


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class SyncPeer:
    """A server whose send takes the bytes at once (returns None, no awaitable)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def write(self, body: bytes) -> None:
        self.bodies.append(body)

    def events(self) -> list[str]:
        return [e for body in self.bodies for e in events_in(body)]


class StallingPeer:
    """A peer whose writes wait for `release`; records concurrency and cleanup."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.started = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.finalized = 0
        self.gate: asyncio.Future[None] | None = None
        self.fail_with: BaseException | None = None

    async def write(self, body: bytes) -> None:
        self.started += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.gate = asyncio.get_running_loop().create_future()
            await self.gate
            if self.fail_with is not None:
                raise self.fail_with
            self.bodies.append(body)
        finally:
            self.in_flight -= 1
            self.finalized += 1

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set_result(None)

    def events(self) -> list[str]:
        return [e for body in self.bodies for e in events_in(body)]


@pytest.fixture
async def writer() -> AsyncIterator[StreamWriter]:
    writer = StreamWriter(write_timeout=5.0)
    yield writer
    await writer.close()


def writer_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "sse-stream-writer" and not t.done()]


async def test_a_write_that_returns_none_is_done_and_two_events_make_one_body(
    writer: StreamWriter,
) -> None:
    peer, client = SyncPeer(), make_client(1)
    writer.attach(client, peer.write)
    client.offer(event(1))
    client.offer(event(2))
    await until(lambda: len(peer.events()) == 2)
    assert peer.events() == ['{"ts":"1"}', '{"ts":"2"}']
    assert len(peer.bodies) == 1
    client.offer(event(3))
    await until(lambda: len(peer.events()) == 3)
    assert not client.closed
    assert writer.stalled_writes() == 0


async def test_one_writer_task_for_many_streams_and_a_new_one_after_close() -> None:
    writer = StreamWriter(write_timeout=None)
    try:
        peers = [SyncPeer() for _ in range(3)]
        for n, peer in enumerate(peers):
            writer.attach(make_client(n), peer.write)
        assert len(writer_tasks()) == 1
        await writer.close()
        await turns()
        assert writer_tasks() == []
        assert writer.streams == 0
        peer, client = SyncPeer(), make_client(9)
        writer.attach(client, peer.write)
        client.offer(event(1))
        await until(lambda: len(peer.events()) == 1)
        assert len(writer_tasks()) == 1
    finally:
        await writer.close()


@pytest.mark.parametrize("error", [ConnectionResetError("gone"), ValueError("bug")])
async def test_a_send_that_raises_at_once_closes_only_its_stream(
    writer: StreamWriter, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    def broken(body: bytes) -> None:
        raise error

    peer = SyncPeer()
    gone, alive = make_client(1), make_client(2)
    writer.attach(gone, broken)
    writer.attach(alive, peer.write)
    with caplog.at_level(logging.ERROR, logger="app.realtime.writer"):
        gone.offer(event(1))  # first in the pass
        alive.offer(event(1))
        await until(lambda: len(peer.events()) == 1)
    assert gone.close_reason is CloseReason.DISCONNECTED
    assert not alive.closed
    logged = "stream write failed" in caplog.text
    assert logged is isinstance(error, ValueError)  # a gone peer is no bug


@pytest.mark.parametrize("error", [ConnectionResetError("gone"), ValueError("bug")])
async def test_an_async_write_that_raises_before_waiting_closes_only_its_stream(
    writer: StreamWriter, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    async def broken(body: bytes) -> None:
        raise error

    peer = SyncPeer()
    gone, alive = make_client(1), make_client(2)
    writer.attach(gone, broken)
    writer.attach(alive, peer.write)
    with caplog.at_level(logging.ERROR, logger="app.realtime.writer"):
        gone.offer(event(1))
        alive.offer(event(1))
        await until(lambda: len(peer.events()) == 1)
    assert gone.close_reason is CloseReason.DISCONNECTED
    assert not alive.closed
    assert ("stream write failed" in caplog.text) is isinstance(error, ValueError)
    assert writer.stalled_writes() == 0


@pytest.mark.parametrize("error", [ConnectionResetError("gone"), ValueError("bug")])
async def test_a_write_that_fails_after_waiting_closes_only_its_stream(
    writer: StreamWriter, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    stalling, peer = StallingPeer(), SyncPeer()
    gone, alive = make_client(1), make_client(2)
    writer.attach(gone, stalling.write)
    writer.attach(alive, peer.write)
    gone.offer(event(1))
    await until(lambda: writer.stalled_writes() == 1)
    stalling.fail_with = error
    with caplog.at_level(logging.ERROR, logger="app.realtime.writer"):
        stalling.release()
        await until(lambda: gone.closed)
    assert gone.close_reason is CloseReason.DISCONNECTED
    assert ("stream write failed" in caplog.text) is isinstance(error, ValueError)
    await until(lambda: writer.stalled_writes() == 0)
    alive.offer(event(2))
    await until(lambda: len(peer.events()) == 1)
    assert not alive.closed


async def test_a_stalled_stream_has_one_write_at_a_time_and_gets_the_rest_after_it(
    writer: StreamWriter,
) -> None:
    stalling, client = StallingPeer(), make_client(1)
    writer.attach(client, stalling.write)
    client.offer(event(1))
    await until(lambda: stalling.started == 1)
    other, other_client = SyncPeer(), make_client(2)
    writer.attach(other_client, other.write)
    for n in range(2, 5):  # each followed by a pass of the writer
        client.offer(event(n))
        other_client.offer(event(n))
        await until(lambda n=n: len(other.events()) == n - 1)  # type: ignore[misc] # bound loop var
    assert stalling.started == 1
    stalling.release()
    await until(lambda: stalling.started == 2)
    assert stalling.most_in_flight == 1
    stalling.release()
    await until(lambda: len(stalling.events()) == 4)
    assert stalling.events() == [f'{{"ts":"{n}"}}' for n in range(1, 5)]
    assert not client.closed


async def test_stalled_writes_counts_per_tenant(writer: StreamWriter) -> None:
    peers = [StallingPeer() for _ in range(3)]
    clients = [make_client(1, tenant_id=1), make_client(2, tenant_id=1), make_client(3, 2)]
    for client, peer in zip(clients, peers, strict=True):
        writer.attach(client, peer.write)
        client.offer(event(1))
    await until(lambda: writer.stalled_writes() == 3)
    assert writer.stalled_writes(1) == 2
    assert writer.stalled_writes(2) == 1
    assert writer.stalled_writes(3) == 0
    peers[0].release()
    await until(lambda: writer.stalled_writes() == 2)
    assert writer.stalled_writes(1) == 1


async def test_a_timed_out_write_is_abandoned_its_cleanup_runs() -> None:
    writer = StreamWriter(write_timeout=0.05)
    try:
        stalling, client = StallingPeer(), make_client(1)
        writer.attach(client, stalling.write)
        client.offer(event(1))
        await until(lambda: client.closed)
        assert client.close_reason is CloseReason.SLOW_CONSUMER
        await until(lambda: stalling.finalized == 1)
        assert stalling.gate is not None and stalling.gate.cancelled()
        await until(lambda: writer.stalled_writes() == 0)
    finally:
        await writer.close()


async def test_a_write_timeout_of_zero_means_no_deadline() -> None:
    writer = StreamWriter(write_timeout=0)
    try:
        stalling, client = StallingPeer(), make_client(1)
        writer.attach(client, stalling.write)
        client.offer(event(1))
        await until(lambda: writer.stalled_writes() == 1)
        await asyncio.sleep(0.05)  # a deadline of 0 would have struck by now
        assert not client.closed
        stalling.release()
        await until(lambda: len(stalling.events()) == 1)
        assert not client.closed
    finally:
        await writer.close()


async def test_detach_abandons_the_waiting_write(writer: StreamWriter) -> None:
    stalling, client = StallingPeer(), make_client(1)
    writer.attach(client, stalling.write)
    client.offer(event(1))
    await until(lambda: writer.stalled_writes() == 1)
    writer.detach(client)
    assert writer.stalled_writes() == 0
    await until(lambda: stalling.finalized == 1)
    assert stalling.gate is not None and stalling.gate.cancelled()
    assert stalling.bodies == []


async def test_close_cancels_waiting_writes_and_forgets_every_stream() -> None:
    writer = StreamWriter(write_timeout=None)
    stalling, client = StallingPeer(), make_client(1)
    writer.attach(client, stalling.write)
    writer.attach(make_client(2), SyncPeer().write)
    client.offer(event(1))
    await until(lambda: writer.stalled_writes() == 1)
    await writer.close()
    assert stalling.finalized == 1  # close waited for the write to be given up
    assert writer.stalled_writes() == 0
    assert writer.streams == 0
    assert writer_tasks() == []


async def test_a_detached_stream_with_an_event_is_left_alone(writer: StreamWriter) -> None:
    peer, client = SyncPeer(), make_client(1)
    writer.attach(client, peer.write)
    writer.detach(client)
    client.offer(event(1))  # it still signals the writer
    marker, marker_client = SyncPeer(), make_client(2)
    writer.attach(marker_client, marker.write)
    marker_client.offer(event(1))
    await until(lambda: len(marker.events()) == 1)
    assert peer.bodies == []
    assert not client.closed


async def test_a_stream_closed_before_its_turn_gets_no_empty_write(writer: StreamWriter) -> None:
    peer, client = SyncPeer(), make_client(1)
    writer.attach(client, peer.write)
    client.offer(event(1))
    client.close(CloseReason.DISCONNECTED)  # queue dropped; the writer still has it as ready
    marker, marker_client = SyncPeer(), make_client(2)
    writer.attach(marker_client, marker.write)
    marker_client.offer(event(1))
    await until(lambda: len(marker.events()) == 1)
    assert peer.bodies == []


class Ticker:
    """Counts turns of the event loop, so that a write can tell which turn it ran in."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


async def test_a_long_pass_gives_the_loop_a_turn_every_256_streams(writer: StreamWriter) -> None:
    ticker = Ticker()
    seen: list[int] = []
    clients = [make_client(n) for n in range(300)]
    for client in clients:
        writer.attach(client, lambda body: seen.append(ticker.ticks))
    for client in clients:
        client.offer(event(1))
    await until(lambda: len(seen) == 300)
    await ticker.stop()
    assert len(set(seen[:256])) == 1
    assert len(set(seen[256:])) == 1
    assert 1 <= seen[256] - seen[255] <= 2  # one turn of the loop, not a pause


async def test_streams_made_ready_during_a_pass_wait_for_a_turn_of_the_loop(
    writer: StreamWriter,
) -> None:
    ticker = Ticker()
    second = make_client(2)
    seen: dict[str, int] = {}

    def first_write(body: bytes) -> None:
        seen["first"] = ticker.ticks
        second.offer(event(2))  # marked ready while the pass runs

    def second_write(body: bytes) -> None:
        seen["second"] = ticker.ticks

    first = make_client(1)
    writer.attach(first, first_write)
    writer.attach(second, second_write)
    await turns()  # the writer is waiting for work
    first.offer(event(1))
    await until(lambda: "second" in seen)
    await ticker.stop()
    assert seen["second"] > seen["first"]


async def test_an_event_to_an_idle_writer_skips_the_flush_delay() -> None:
    writer = StreamWriter(write_timeout=None, flush_delay=30.0)
    try:
        peer, client = SyncPeer(), make_client(1)
        writer.attach(client, peer.write)
        await turns()  # the writer has started and waits for work: the check applies
        client.offer(event(1))
        await until(lambda: len(peer.events()) == 1)
    finally:
        await writer.close()


@pytest.mark.parametrize("stop", ["close", "detach"])
async def test_a_write_stopped_in_the_turn_it_stalls_is_still_given_up(stop: str) -> None:
    """The write's own task has not run its first step yet when it is cancelled: its
    coroutine never starts, so the cleanup must not live only inside it."""
    writer = StreamWriter(write_timeout=None)
    stalling, client = StallingPeer(), make_client(1)
    stalled: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def write(body: bytes) -> None:
        stalled.set_result(None)  # the test resumes before the write's task first runs
        await stalling.write(body)

    try:
        writer.attach(client, write)
        client.offer(event(1))
        async with asyncio.timeout(TIMEOUT):
            await stalled
        assert writer.stalled_writes() == 1
        if stop == "close":
            await writer.close()
        else:
            writer.detach(client)
            await until(lambda: stalling.finalized == 1)
        assert writer.stalled_writes() == 0
        assert stalling.finalized == 1
        assert stalling.gate is not None and stalling.gate.cancelled()
        assert stalling.bodies == []
    finally:
        await writer.close()


class HandClock:
    """The running loop's clock, frozen at a whole second and moved only by the test (so
    that an elapsed time can equal a multiple of the flush delay exactly). Timers wait for
    it: a test on this clock waits by turns of the loop, never by sleeping."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        loop = asyncio.get_running_loop()
        self.now = float(math.floor(loop.time()))
        monkeypatch.setattr(loop, "time", lambda: self.now)


async def within_turns(condition: Callable[[], bool], n: int = 20) -> bool:
    for _ in range(n):
        if condition():
            return True
        await asyncio.sleep(0)
    return condition()


async def written_after(offer: Callable[[], object], done: Callable[[], bool]) -> bool:
    """True if `offer()` is written within some turns of the loop, the clock standing. The
    writer first gets turns to finish its pass and wait for work: the idle rule applies to
    a writer woken from waiting, not to events that come during a pass."""
    await turns()
    offer()
    return await within_turns(done)


async def test_an_idle_spell_of_exactly_five_flush_delays_counts_as_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = HandClock(monkeypatch)
    writer = StreamWriter(write_timeout=None, flush_delay=1.0)
    try:
        peer, client = SyncPeer(), make_client(1)
        writer.attach(client, peer.write)
        assert await written_after(lambda: client.offer(event(1)), lambda: len(peer.events()) == 1)
        clock.now += 4.0  # four delays since that pass: not idle, the event waits a delay
        assert not await written_after(
            lambda: client.offer(event(2)), lambda: len(peer.events()) == 2
        )
        clock.now += 1.0
        assert await within_turns(lambda: len(peer.events()) == 2)
        clock.now += 5.0  # exactly five delays since that pass: idle, written at once
        assert await written_after(lambda: client.offer(event(3)), lambda: len(peer.events()) == 3)
    finally:
        await writer.close()


async def test_a_stalled_write_ending_with_nothing_queued_makes_no_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pass would move the writer's last pass on, and the next event after a long idle
    spell would then wait a flush delay for nothing."""
    clock = HandClock(monkeypatch)
    writer = StreamWriter(write_timeout=None, flush_delay=1.0)
    try:
        stalling, slow = StallingPeer(), make_client(1)
        peer, other = SyncPeer(), make_client(2)
        writer.attach(slow, stalling.write)
        writer.attach(other, peer.write)
        slow.offer(event(1))
        assert await within_turns(lambda: writer.stalled_writes() == 1)
        clock.now += 6.0
        stalling.release()
        assert await within_turns(lambda: writer.stalled_writes() == 0)
        assert stalling.events() == ['{"ts":"1"}']
        assert await written_after(lambda: other.offer(event(2)), lambda: len(peer.events()) == 1)
    finally:
        await writer.close()
