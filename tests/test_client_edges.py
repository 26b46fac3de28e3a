"""Client edges: the bounded queue's limit, push delivery, the duplicate filter after replay,
and what close() does to a reader, a stuck transport and the close callback."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

from app.realtime.client import Client, ClientKind, CloseReason
from app.realtime.events import Event, EventType
from app.realtime.ids import EventId

WAIT = 1.0


def make_client(max_queue: int = 10, **kwargs: object) -> Client:
    return Client(
        user_id=7,
        tenant_id=1,
        channels=frozenset({"user:7"}),
        types=None,
        kind=ClientKind.STREAM,
        max_queue=max_queue,
        **kwargs,  # type: ignore[arg-type]
    )


def event(seq: int | None) -> Event:
    return Event(
        type=EventType.CHAT_MESSAGE if seq is not None else EventType.PING,
        data={"n": seq},
        id=None if seq is None else EventId(1, seq),
    )


def seqs(events: list[Event]) -> list[int | None]:
    return [None if e.id is None else e.id.seq for e in events]


def test_a_new_client_is_open_empty_and_numbered() -> None:
    before = time.time()
    first, second = make_client(), make_client()
    assert first.id.startswith("c") and first.id != second.id
    assert before <= first.connected_at <= time.time()
    assert not first.closed and first.close_reason is None
    assert first.queued == 0 and first.delivered == 0


def test_the_queue_takes_exactly_max_queue_events_then_the_next_closes_it_as_slow() -> None:
    client = make_client(max_queue=2)
    assert client.offer(event(1)) is True
    assert client.offer(event(2)) is True
    assert client.queued == 2 and not client.closed
    assert client.offer(event(3)) is False
    assert client.close_reason is CloseReason.SLOW_CONSUMER
    assert client.queued == 0


def test_a_closed_client_refuses_events_and_has_nothing_to_take() -> None:
    client = make_client()
    client.offer(event(1))
    client.close(CloseReason.DISCONNECTED)
    assert client.offer(event(2)) is False
    assert client.queued == 0
    assert client.take_batch() == []


def test_take_batch_returns_every_queued_event_once_and_counts_them() -> None:
    client = make_client()
    for seq in (1, 2, 3):
        client.offer(event(seq))
    assert seqs(client.take_batch()) == [1, 2, 3]
    assert client.delivered == 3
    assert client.take_batch() == []
    assert client.delivered == 3


async def test_next_batch_waits_for_an_event_and_returns_it() -> None:
    client = make_client()
    reader = asyncio.create_task(client.next_batch())
    await asyncio.sleep(0)
    assert not reader.done()
    client.offer(event(1))
    async with asyncio.timeout(WAIT):
        assert seqs(await reader) == [1]


async def test_next_batch_returns_what_is_queued_without_waiting() -> None:
    client = make_client()
    client.offer(event(1))
    client.offer(event(2))
    async with asyncio.timeout(WAIT):
        assert seqs(await client.next_batch()) == [1, 2]


async def test_closing_wakes_a_waiting_reader_with_nothing_and_does_not_cut_its_transport() -> None:
    client = make_client()
    cuts: list[str] = []
    client.bind_transport(lambda: cuts.append("cut"))
    reader = asyncio.create_task(client.next_batch())
    await asyncio.sleep(0)
    client.close(CloseReason.SESSION_ENDED)
    async with asyncio.timeout(WAIT):
        assert await reader == []
    assert cuts == []  # the reader was waiting, so the transport was not stuck


async def test_next_batch_of_a_closed_client_returns_nothing_at_once() -> None:
    client = make_client()
    client.close(CloseReason.SHUTDOWN)
    async with asyncio.timeout(WAIT):
        assert await client.next_batch() == []


def test_closing_a_client_whose_reader_is_not_waiting_cuts_its_transport_once() -> None:
    client = make_client()
    cuts: list[str] = []
    client.bind_transport(lambda: cuts.append("cut"))
    client.offer(event(1))  # the writer is busy with earlier events: not awaiting
    client.close(CloseReason.SLOW_CONSUMER)
    client.close(CloseReason.DISCONNECTED)
    assert cuts == ["cut"]
    assert client.close_reason is CloseReason.SLOW_CONSUMER


def test_an_unbound_transport_is_not_cut() -> None:
    client = make_client()
    cuts: list[str] = []
    client.bind_transport(lambda: cuts.append("cut"))
    client.bind_transport(None)
    client.close(CloseReason.DISCONNECTED)
    assert cuts == []


def test_the_close_callback_runs_once_with_the_closed_client() -> None:
    client = make_client()
    seen: list[tuple[Client, CloseReason | None]] = []
    client.on_close(lambda c: seen.append((c, c.close_reason)))
    client.close(CloseReason.SESSION_ENDED)
    client.close(CloseReason.DISCONNECTED)
    assert seen == [(client, CloseReason.SESSION_ENDED)]


def test_transport_alive_asks_the_check_until_the_client_closes() -> None:
    assert make_client().transport_alive() is True
    answers = [False]
    client = make_client(transport_alive=lambda: answers[0])
    assert client.transport_alive() is False
    answers[0] = True
    assert client.transport_alive() is True
    answers[0] = False
    client.close(CloseReason.DISCONNECTED)
    assert client.transport_alive() is True  # nothing left to ask


def test_push_to_signals_a_batch_queued_before_the_writer_attached() -> None:
    client = make_client()
    client.offer(event(1))
    client.offer(event(2))
    ready: list[Client] = []
    client.push_to(ready.append)
    assert ready == [client]
    assert seqs(client.take_batch()) == [1, 2]


def test_push_to_on_an_empty_queue_signals_nothing_until_an_event_arrives() -> None:
    client = make_client()
    ready: list[Client] = []
    client.push_to(ready.append)
    assert ready == []
    client.offer(event(1))
    assert ready == [client]


def test_push_signals_once_per_batch_and_again_after_the_batch_is_taken() -> None:
    client = make_client()
    ready: list[Client] = []
    client.push_to(ready.append)
    client.offer(event(1))
    client.offer(event(2))
    assert ready == [client]
    assert seqs(client.take_batch()) == [1, 2]
    client.offer(event(3))
    assert ready == [client, client]


def test_push_to_after_a_signal_does_not_signal_the_same_batch_twice() -> None:
    client = make_client()
    first: list[Client] = []
    client.push_to(first.append)
    client.offer(event(1))
    second: list[Client] = []
    client.push_to(second.append)
    assert first == [client] and second == []
    assert seqs(client.take_batch()) == [1]


def test_a_reader_waiting_is_woken_instead_of_the_push_transport() -> None:
    async def scenario() -> None:
        client = make_client()
        ready: list[Client] = []
        client.push_to(ready.append)
        reader = asyncio.create_task(client.next_batch())
        await asyncio.sleep(0)
        client.offer(event(1))
        async with asyncio.timeout(WAIT):
            assert seqs(await reader) == [1]
        assert ready == []

    asyncio.run(scenario())


def test_events_up_to_the_replayed_id_are_not_delivered_twice() -> None:
    client = make_client()
    client.skip_through(EventId(1, 5))
    for seq in (4, 5, 6, 7):
        client.offer(event(seq))
    assert seqs(client.take_batch()) == [6, 7]
    assert client.delivered == 2


def test_control_events_pass_the_duplicate_filter_and_do_not_end_it() -> None:
    client = make_client()
    client.skip_through(EventId(1, 5))
    client.offer(event(None))
    client.offer(event(3))
    assert seqs(client.take_batch()) == [None]
    client.offer(event(5))
    client.offer(event(6))
    assert seqs(client.take_batch()) == [6]


def test_the_duplicate_filter_ends_at_the_first_live_event() -> None:
    client = make_client()
    client.skip_through(EventId(1, 5))
    client.offer(event(6))
    assert seqs(client.take_batch()) == [6]
    # Past the replayed ids, nothing is checked any more (ids only grow).
    client.offer(event(2))
    assert seqs(client.take_batch()) == [2]


async def test_next_batch_waits_on_when_every_queued_event_was_replayed() -> None:
    client = make_client()
    client.skip_through(EventId(1, 5))
    client.offer(event(4))
    client.offer(event(5))
    reader = asyncio.create_task(client.next_batch())
    await asyncio.sleep(0.01)
    assert not reader.done()
    client.offer(event(6))
    async with asyncio.timeout(WAIT):
        assert seqs(await reader) == [6]


def test_closing_lets_go_of_the_transport_and_its_check() -> None:
    class Transport:
        def cut(self) -> None:
            return None

        def alive(self) -> bool:
            return True

    transport = Transport()
    gone = weakref.ref(transport)
    client = make_client(transport_alive=transport.alive)
    client.bind_transport(transport.cut)
    del transport
    client.close(CloseReason.DISCONNECTED)
    gc.collect()
    assert gone() is None


def test_a_batch_signalled_by_push_to_is_not_signalled_again_by_the_next_event() -> None:
    client = make_client()
    client.offer(event(1))
    ready: list[Client] = []
    client.push_to(ready.append)
    client.offer(event(2))
    assert ready == [client]
    assert seqs(client.take_batch()) == [1, 2]
