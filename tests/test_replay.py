"""Replay on reconnect: what a consumer resuming with Last-Event-ID receives.

The table follows Centrifugo's recovery tests: each row publishes some history, resumes
from one id, and states the backlog (the events after that id, in order) or a resync.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest

from app.realtime.broker.memory import MemoryBroker
from app.realtime.channels import GLOBAL, tenant_channel, user_channel
from app.realtime.client import Client
from app.realtime.events import Event, EventType
from app.realtime.ids import EventId
from app.realtime.manager import Connection, ConnectionManager
from app.realtime.replay import ReplayBuffer
from tests.realtime_helpers import ManagerFactory

USER = 1
TENANT = 1
WAIT = 1.0  # seconds any single wait for an event may take


# -- helpers ---------------------------------------------------------------------------


def make_event(
    n: int = 0,
    *,
    channels: tuple[str, ...] = (user_channel(USER),),
    tenant_id: int | None = TENANT,
    type: str = EventType.CHAT_MESSAGE,
    published_at: float | None = None,
) -> Event:
    event = Event(type=type, data={"n": n}, channels=channels, tenant_id=tenant_id)
    if published_at is not None:
        event.published_at = published_at
    return event


def ids_of(events: Iterable[Event]) -> list[EventId | None]:
    return [event.id for event in events]


def assert_single_resync(backlog: list[Event], reason: str) -> None:
    assert len(backlog) == 1, f"expected one resync event, got {[e.as_dict() for e in backlog]}"
    (resync,) = backlog
    assert resync.type == EventType.RESYNC
    assert resync.id is None
    assert resync.data == {"reason": reason}


async def receive(client: Client) -> list[Event]:
    """One `next_batch()`, awaited inline as the SSE transport does, with a timeout."""
    async with asyncio.timeout(WAIT):
        return await client.next_batch()


class SlowHistoryBroker(MemoryBroker):
    """A broker whose history lookup yields to the loop first, as a networked one would.

    Events published while it yields land both in the new client's queue and in the
    history it then returns.
    """

    def __init__(
        self, *, yields: int, replay_buffer_size: int, replay_max_age_seconds: float
    ) -> None:
        super().__init__(
            replay_buffer_size=replay_buffer_size, replay_max_age_seconds=replay_max_age_seconds
        )
        self.yields = yields

    async def history(
        self, channels: Iterable[str], after: EventId, tenant_id: int | None = None
    ) -> list[Event] | None:
        for _ in range(self.yields):
            await asyncio.sleep(0)
        return await super().history(channels, after, tenant_id)


def memory_broker(manager: ConnectionManager) -> MemoryBroker:
    assert isinstance(manager.broker, MemoryBroker)
    return manager.broker


# -- the replay table ------------------------------------------------------------------

ResumeFrom = Callable[[MemoryBroker, list[EventId]], str]


@dataclass(frozen=True)
class ReplayCase:
    id: str
    published: int  # events published on the consumer's user channel before it reconnects
    resume_from: ResumeFrom
    expected: list[int] | None  # indexes of the published events in the backlog; None: resync
    buffer_size: int = 10
    expired: int = 0  # how many of the first published events are already past max age
    resync_reason: str = "history_unavailable"


def seq_zero(broker: MemoryBroker, ids: list[EventId]) -> str:
    return f"{broker.epoch}-0"


def latest(broker: MemoryBroker, ids: list[EventId]) -> str:
    return str(broker.latest_id)


def published_id(index: int) -> ResumeFrom:
    def resume_from(broker: MemoryBroker, ids: list[EventId]) -> str:
        return str(ids[index])

    return resume_from


def literal(raw: str) -> ResumeFrom:
    def resume_from(broker: MemoryBroker, ids: list[EventId]) -> str:
        return raw

    return resume_from


def other_epoch(broker: MemoryBroker, ids: list[EventId]) -> str:
    return f"{broker.epoch - 1}-{ids[0].seq}"


def future(broker: MemoryBroker, ids: list[EventId]) -> str:
    return f"{broker.epoch}-{broker.latest_id.seq + 1}"


REPLAY_CASES = [
    ReplayCase("empty_buffer_seq_zero", 0, seq_zero, []),
    ReplayCase("empty_buffer_latest_id", 0, latest, []),
    ReplayCase("seq_zero_replays_everything_kept", 5, seq_zero, [0, 1, 2, 3, 4]),
    ReplayCase("resume_mid_stream", 5, published_id(1), [2, 3, 4]),
    ReplayCase("resume_from_first", 5, published_id(0), [1, 2, 3, 4]),
    ReplayCase("resume_at_newest", 5, published_id(-1), []),
    ReplayCase("resume_at_latest_id", 5, latest, []),
    ReplayCase("evicted_by_count", 5, published_id(0), None, buffer_size=3),
    ReplayCase("seq_zero_after_eviction_by_count", 5, seq_zero, None, buffer_size=3),
    ReplayCase("resume_at_last_evicted_by_count", 5, published_id(1), [2, 3, 4], buffer_size=3),
    ReplayCase("expired_by_age", 4, published_id(0), None, expired=2),
    ReplayCase("seq_zero_after_expiry", 4, seq_zero, None, expired=2),
    ReplayCase("resume_at_last_expired", 4, published_id(1), [2, 3], expired=2),
    ReplayCase("unknown_garbage_string", 3, literal("not-an-id"), None, resync_reason="unknown_id"),
    ReplayCase("unknown_empty_string", 3, literal(""), None, resync_reason="unknown_id"),
    ReplayCase("unknown_other_epoch", 3, other_epoch, None),
    ReplayCase("future_id", 3, future, None),
]


@pytest.mark.parametrize("case", REPLAY_CASES, ids=[case.id for case in REPLAY_CASES])
async def test_replay_table(managers: ManagerFactory, case: ReplayCase) -> None:
    manager = await managers(buffer_size=case.buffer_size, max_age_seconds=60.0)
    broker = memory_broker(manager)
    long_ago = time.time() - 3600
    published = [
        await manager.publish(make_event(n, published_at=long_ago if n < case.expired else None))
        for n in range(case.published)
    ]
    ids = [event.id for event in published if event.id is not None]

    connection = await manager.connect(
        user_id=USER, tenant_id=TENANT, last_event_id=case.resume_from(broker, ids)
    )

    if case.expected is None:
        assert_single_resync(connection.backlog, case.resync_reason)
    else:
        assert ids_of(connection.backlog) == [ids[i] for i in case.expected]
    assert connection.client.queued == 0


HISTORY_NONE_CASES = [
    pytest.param(lambda b: EventId(b.epoch - 1, 1), id="other_epoch"),
    pytest.param(lambda b: EventId(b.epoch + 1, 0), id="later_epoch"),
    pytest.param(lambda b: EventId(b.epoch, b.latest_id.seq + 1), id="future_seq"),
    pytest.param(lambda b: EventId(b.epoch, 0), id="evicted"),
]


@pytest.mark.parametrize("after", HISTORY_NONE_CASES)
async def test_broker_history_is_none_when_the_id_cannot_be_resumed(
    after: Callable[[MemoryBroker], EventId],
) -> None:
    broker = MemoryBroker(replay_buffer_size=2, replay_max_age_seconds=60.0)
    for n in range(4):
        await broker.publish(make_event(n))

    assert await broker.history([user_channel(USER)], after(broker)) is None


async def test_broker_history_of_channels_never_published_to_is_empty() -> None:
    broker = MemoryBroker(replay_buffer_size=2, replay_max_age_seconds=60.0)
    await broker.publish(make_event(channels=(user_channel(2),)))

    assert await broker.history([user_channel(USER)], EventId(broker.epoch, 0)) == []


# -- merging the consumer's channels ---------------------------------------------------


async def test_events_of_all_the_consumers_channels_merge_in_id_order_each_once(
    managers: ManagerFactory,
) -> None:
    manager = await managers()
    broker = memory_broker(manager)
    start = broker.latest_id
    mine = [
        await manager.publish(make_event(1, channels=(user_channel(USER),))),
        await manager.publish(make_event(2, channels=(tenant_channel(TENANT),))),
        await manager.publish(make_event(3, channels=(GLOBAL,), tenant_id=None)),
        # One event on two of the consumer's channels: kept in both buffers, replayed once.
        await manager.publish(make_event(4, channels=(user_channel(USER), tenant_channel(TENANT)))),
        await manager.publish(make_event(5, channels=(tenant_channel(TENANT), GLOBAL))),
        await manager.publish(make_event(6, channels=(user_channel(USER),))),
    ]
    await manager.publish(make_event(7, channels=(user_channel(2),)))  # not a channel of USER
    await manager.publish(make_event(8, channels=(tenant_channel(2),), tenant_id=2))

    connection = await manager.connect(user_id=USER, tenant_id=TENANT, last_event_id=str(start))
    history = await broker.history(connection.client.channels, start)

    assert ids_of(connection.backlog) == ids_of(mine)
    assert history is not None
    assert ids_of(history) == ids_of(mine)


async def test_resuming_between_events_of_different_channels_replays_only_later_ones(
    managers: ManagerFactory,
) -> None:
    manager = await managers()
    first = await manager.publish(make_event(1, channels=(user_channel(USER),)))
    second = await manager.publish(make_event(2, channels=(tenant_channel(TENANT),)))
    third = await manager.publish(make_event(3, channels=(GLOBAL,), tenant_id=None))
    fourth = await manager.publish(make_event(4, channels=(user_channel(USER),)))

    connection = await manager.connect(user_id=USER, tenant_id=TENANT, last_event_id=str(second.id))

    assert first.id is not None and second.id is not None
    assert ids_of(connection.backlog) == [third.id, fourth.id]


# -- visibility in replay --------------------------------------------------------------


async def test_replay_honours_the_type_filter(managers: ManagerFactory) -> None:
    manager = await managers()
    start = memory_broker(manager).latest_id
    message = await manager.publish(make_event(1, type=EventType.CHAT_MESSAGE))
    await manager.publish(make_event(2, type=EventType.CHAT_TYPING))
    await manager.publish(make_event(3, type=EventType.NOTIFICATION_NEW))
    later_message = await manager.publish(make_event(4, type=EventType.CHAT_MESSAGE))

    connection = await manager.connect(
        user_id=USER,
        tenant_id=TENANT,
        types=frozenset({EventType.CHAT_MESSAGE.value}),
        last_event_id=str(start),
    )

    assert ids_of(connection.backlog) == [message.id, later_message.id]


async def test_replay_never_sends_another_tenants_event_on_the_shared_user_channel(
    managers: ManagerFactory,
) -> None:
    manager = await managers()
    start = memory_broker(manager).latest_id
    own = await manager.publish(make_event(1, tenant_id=TENANT))
    await manager.publish(make_event(2, tenant_id=2))  # same user, their other membership
    untenanted = await manager.publish(make_event(3, tenant_id=None))

    connection = await manager.connect(user_id=USER, tenant_id=TENANT, last_event_id=str(start))

    assert ids_of(connection.backlog) == [own.id, untenanted.id]
    assert all(event.tenant_id in (TENANT, None) for event in connection.backlog)


async def test_a_resync_reaches_a_consumer_whatever_its_type_filter(
    managers: ManagerFactory,
) -> None:
    manager = await managers()

    connection = await manager.connect(
        user_id=USER,
        tenant_id=TENANT,
        types=frozenset({EventType.CHAT_MESSAGE.value}),
        last_event_id="garbage",
    )

    assert_single_resync(connection.backlog, "unknown_id")


# -- the history-to-live boundary ------------------------------------------------------


async def drain_until(connection: Connection, last: EventId) -> list[EventId]:
    """Ids of the backlog, then of live batches, until `last` has been received."""
    received = [event.id for event in connection.backlog if event.id is not None]
    while last not in received:
        batch = await receive(connection.client)
        assert batch, (
            f"next_batch() returned [] on a client that is not closed "
            f"(close_reason={connection.client.close_reason}) after {len(received)} ids"
        )
        received.extend(event.id for event in batch if event.id is not None)
    return received


async def resume_while_publishing(
    manager: ConnectionManager, *, total: int, connect_after: int, resume_index: int
) -> tuple[list[EventId], list[EventId]]:
    """Publish `total` events, resuming a consumer mid-way; (published ids, ids it got)."""
    broker = memory_broker(manager)
    published: list[EventId] = []
    halfway = asyncio.Event()

    async def publisher() -> None:
        for n in range(total):
            event = await manager.publish(make_event(n))
            assert event.id is not None
            published.append(event.id)
            if n + 1 == connect_after:
                halfway.set()
            await asyncio.sleep(0)

    async def consumer() -> list[EventId]:
        await asyncio.wait_for(halfway.wait(), WAIT)
        connection = await manager.connect(
            user_id=USER, tenant_id=TENANT, last_event_id=str(published[resume_index])
        )
        try:
            # The broker is fresh and only the publisher publishes: ids are 1..total.
            return await drain_until(connection, EventId(broker.epoch, total))
        finally:
            manager.disconnect(connection.client)

    _, received = await asyncio.gather(publisher(), consumer())
    return published, received


def assert_exact_continuation(
    published: list[EventId], received: list[EventId], resume_index: int
) -> None:
    expected = published[resume_index + 1 :]
    duplicates = sorted({i for i in received if received.count(i) > 1})
    missing = sorted(set(expected) - set(received))
    assert not duplicates, f"delivered twice: {[str(i) for i in duplicates]}"
    assert not missing, f"never delivered: {[str(i) for i in missing]}"
    assert all(a < b for a, b in itertools.pairwise(received)), "ids not strictly increasing"
    assert received == expected


async def test_when_a_consumer_resumes_during_publishing_then_it_gets_every_later_id_once_in_order(
    managers: ManagerFactory,
) -> None:
    manager = await managers(buffer_size=1000, queue_size=1000)

    published, received = await resume_while_publishing(
        manager, total=500, connect_after=250, resume_index=20
    )

    assert_exact_continuation(published, received, resume_index=20)


async def test_when_history_is_slow_and_events_land_in_queue_and_history_then_none_is_duplicated(
    managers: ManagerFactory,
) -> None:
    broker = SlowHistoryBroker(yields=5, replay_buffer_size=1000, replay_max_age_seconds=300.0)
    manager = await managers(broker=broker, queue_size=1000)

    published, received = await resume_while_publishing(
        manager, total=500, connect_after=250, resume_index=20
    )

    assert_exact_continuation(published, received, resume_index=20)


async def test_when_every_queued_event_was_already_replayed_then_next_batch_waits_for_a_live_one(
    managers: ManagerFactory,
) -> None:
    broker = SlowHistoryBroker(yields=3, replay_buffer_size=100, replay_max_age_seconds=300.0)
    manager = await managers(broker=broker)
    start = broker.latest_id
    # Runs while connect() waits for the slow history: queued live *and* found in history.
    publishing_overlap = asyncio.create_task(manager.publish(make_event(1)))
    connection = await manager.connect(user_id=USER, tenant_id=TENANT, last_event_id=str(start))
    overlap = await asyncio.wait_for(publishing_overlap, WAIT)
    assert ids_of(connection.backlog) == [overlap.id]
    assert connection.client.queued == 1

    # Runs only once next_batch() suspends, i.e. once it waits for something new.
    publishing_live = asyncio.create_task(manager.publish(make_event(2)))
    batch = await receive(connection.client)
    live = await asyncio.wait_for(publishing_live, WAIT)

    assert not connection.client.closed
    assert ids_of(batch) == [live.id]


# -- ReplayBuffer ----------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


EPOCH = 7


def stamped(seq: int, published_at: float = 1_000.0) -> Event:
    event = make_event(seq, published_at=published_at)
    event.id = EventId(EPOCH, seq)
    return event


def seqs(events: list[Event] | None) -> list[int] | None:
    return None if events is None else [event.id.seq for event in events if event.id is not None]


def test_replay_buffer_keeps_at_most_max_events_and_remembers_the_newest_evicted() -> None:
    buffer = ReplayBuffer(3, 60.0, clock=FakeClock())
    for seq in range(1, 6):
        buffer.append(stamped(seq))

    assert len(buffer) == 3
    assert buffer.evicted_upto == EventId(EPOCH, 2)
    assert seqs(buffer.since(EventId(EPOCH, 0))) is None
    assert seqs(buffer.since(EventId(EPOCH, 1))) is None
    assert seqs(buffer.since(EventId(EPOCH, 2))) == [3, 4, 5]
    assert seqs(buffer.since(EventId(EPOCH, 4))) == [5]
    assert seqs(buffer.since(EventId(EPOCH, 5))) == []


def test_replay_buffer_evicts_events_older_than_max_age() -> None:
    clock = FakeClock(1_000.0)
    buffer = ReplayBuffer(10, 60.0, clock=clock)
    buffer.append(stamped(1, published_at=1_000.0))
    buffer.append(stamped(2, published_at=1_030.0))
    buffer.append(stamped(3, published_at=1_050.0))

    clock.now = 1_070.0  # event 1 is 70 s old, event 2 40 s
    assert seqs(buffer.since(EventId(EPOCH, 1))) == [2, 3]
    assert buffer.evicted_upto == EventId(EPOCH, 1)
    assert seqs(buffer.since(EventId(EPOCH, 0))) is None

    clock.now = 1_200.0  # everything expired
    assert buffer.is_empty_after_expiry()
    assert buffer.evicted_upto == EventId(EPOCH, 3)
    assert seqs(buffer.since(EventId(EPOCH, 2))) is None
    assert seqs(buffer.since(EventId(EPOCH, 3))) == []


def test_replay_buffer_evicts_expired_events_on_append() -> None:
    clock = FakeClock(1_000.0)
    buffer = ReplayBuffer(10, 60.0, clock=clock)
    buffer.append(stamped(1, published_at=1_000.0))
    clock.now = 1_100.0

    buffer.append(stamped(2, published_at=1_100.0))

    assert len(buffer) == 1
    assert buffer.evicted_upto == EventId(EPOCH, 1)


def test_replay_buffer_evicted_upto_is_none_until_something_is_evicted() -> None:
    buffer = ReplayBuffer(2, 60.0, clock=FakeClock())
    assert buffer.evicted_upto is None
    assert seqs(buffer.since(EventId(EPOCH, 0))) == []

    buffer.append(stamped(1))
    buffer.append(stamped(2))

    assert buffer.evicted_upto is None
    assert seqs(buffer.since(EventId(EPOCH, 0))) == [1, 2]


def test_replay_buffer_since_an_id_between_retained_events_returns_the_later_ones() -> None:
    buffer = ReplayBuffer(10, 60.0, clock=FakeClock())
    for seq in (2, 4, 6, 8):  # the odd ids went to other channels
        buffer.append(stamped(seq))

    assert seqs(buffer.since(EventId(EPOCH, 1))) == [2, 4, 6, 8]
    assert seqs(buffer.since(EventId(EPOCH, 5))) == [6, 8]
    assert seqs(buffer.since(EventId(EPOCH, 7))) == [8]
    assert seqs(buffer.since(EventId(EPOCH, 9))) == []


def test_replay_buffer_refuses_events_without_an_id_and_a_zero_size() -> None:
    buffer = ReplayBuffer(1, 60.0, clock=FakeClock())
    with pytest.raises(ValueError, match="with an id"):
        buffer.append(make_event())
    with pytest.raises(ValueError, match="at least one"):
        ReplayBuffer(0, 60.0)
