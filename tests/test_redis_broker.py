"""The Redis broker against a real redis-server: several "processes" (managers) on one Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from app.realtime.broker.redis import RedisBroker
from app.realtime.channels import tenant_channel, user_channel
from app.realtime.client import Client, ClientKind
from app.realtime.events import Event, EventType
from app.realtime.ids import EventId
from app.realtime.manager import ConnectionManager
from tests.realtime_helpers import collect
from tests.redis_server import RedisServer

TENANT = 7
WAIT = 5.0


@pytest.fixture
async def fresh_redis(redis_server: RedisServer) -> RedisServer:
    redis_server.flush()
    return redis_server


Factory = Callable[..., Awaitable[ConnectionManager]]


@pytest.fixture
async def processes(fresh_redis: RedisServer) -> AsyncIterator[Factory]:
    """Builds managers on their own RedisBroker each, as separate processes would."""
    started: list[ConnectionManager] = []
    clients: list[aioredis.Redis] = []

    async def make(log_max_events: int = 100_000, max_age: float = 300.0) -> ConnectionManager:
        client = aioredis.from_url(fresh_redis.url, decode_responses=True)
        clients.append(client)
        broker = RedisBroker(
            client,
            log_max_events=log_max_events,
            replay_max_age_seconds=max_age,
            reconnect_seconds=0.05,
        )
        manager = ConnectionManager(
            broker, queue_size=10_000, max_streams_per_user=100, heartbeat_seconds=0
        )
        await manager.start()
        started.append(manager)
        return manager

    yield make
    for manager in started:
        await manager.stop()
    for client in clients:  # the broker leaves its client to its owner
        await client.aclose()


def _event(n: int, user: int = 1) -> Event:
    return Event(
        type=EventType.NOTIFICATION_NEW,
        data={"n": n},
        channels=(user_channel(user),),
        tenant_id=TENANT,
    )


async def _connect(
    manager: ConnectionManager, user: int = 1, last: str | None = None
) -> tuple[Client, list[Event]]:
    connection = await manager.connect(
        user_id=user, tenant_id=TENANT, kind=ClientKind.STREAM, last_event_id=last
    )
    return connection.client, connection.backlog


async def test_events_published_in_any_process_reach_every_process_once_in_one_order(
    processes: Factory,
) -> None:
    a: ConnectionManager = await processes()
    b: ConnectionManager = await processes()
    on_a, _ = await _connect(a)
    on_b, _ = await _connect(b)
    await asyncio.gather(
        *(a.publish(_event(n)) for n in range(0, 300, 2)),
        *(b.publish(_event(n)) for n in range(1, 300, 2)),
    )
    seen_a = await collect(on_a, 300, WAIT)
    seen_b = await collect(on_b, 300, WAIT)
    assert [e.id for e in seen_a] == [e.id for e in seen_b]
    assert sorted(e.data["n"] for e in seen_a) == list(range(300))
    seqs = [e.id.seq for e in seen_a]  # type: ignore[union-attr]  # the broker set every id
    assert seqs == sorted(seqs) and len(set(seqs)) == 300


async def test_a_consumer_resumes_on_another_process_with_exactly_what_it_missed(
    processes: Factory,
) -> None:
    a: ConnectionManager = await processes()
    b: ConnectionManager = await processes()
    on_a, _ = await _connect(a)
    await a.publish(_event(1))
    (seen,) = await collect(on_a, 1, WAIT)
    a.disconnect(on_a)
    await a.publish(_event(2))
    await b.publish(_event(3))
    on_b, backlog = await _connect(b, last=str(seen.id))
    await b.publish(_event(4))
    live = await collect(on_b, 1, WAIT)
    assert [e.data["n"] for e in backlog] == [2, 3]
    assert [e.data["n"] for e in live] == [4]


@pytest.mark.parametrize(
    ("describe", "make_id"),
    [
        ("another epoch", lambda newest: EventId(newest.epoch + 1, 1)),
        ("a future id", lambda newest: EventId(newest.epoch, newest.seq + 5)),
    ],
)
async def test_unknown_ids_get_a_resync(
    processes: Factory, describe: str, make_id: Callable[[EventId], EventId]
) -> None:
    a: ConnectionManager = await processes()
    newest = (await a.publish(_event(1))).id
    assert newest is not None
    _, backlog = await _connect(a, last=str(make_id(newest)))
    assert [e.type for e in backlog] == [EventType.RESYNC], describe


async def test_an_id_trimmed_from_the_log_gets_a_resync(processes: Factory) -> None:
    a: ConnectionManager = await processes(log_max_events=10)
    first = await a.publish(_event(0))
    for n in range(1, 1000):
        await a.publish(_event(n))
    _, backlog = await _connect(a, last=str(first.id))
    assert [e.type for e in backlog] == [EventType.RESYNC]


async def test_replay_keeps_only_the_consumers_channels_and_tenant(
    processes: Factory,
) -> None:
    a: ConnectionManager = await processes()
    start = await a.publish(_event(0, user=1))
    await a.publish(_event(1, user=2))  # someone else's
    await a.publish(
        Event(
            type=EventType.PRESENCE_UPDATE,
            data={"n": 2},
            channels=(tenant_channel(TENANT),),
            tenant_id=TENANT,
        )
    )
    await a.publish(
        Event(
            type=EventType.NOTIFICATION_NEW,
            data={"n": 3},
            channels=(user_channel(1),),
            tenant_id=TENANT + 1,
        )
    )
    _, backlog = await _connect(a, last=str(start.id))
    assert [e.data["n"] for e in backlog] == [2]


async def test_a_lost_live_feed_is_filled_from_the_log_in_order(
    processes: Factory, fresh_redis: RedisServer
) -> None:
    a: ConnectionManager = await processes()
    b: ConnectionManager = await processes()
    on_b, _ = await _connect(b)
    await a.publish(_event(0))
    await collect(on_b, 1, WAIT)
    admin = aioredis.from_url(fresh_redis.url)
    try:
        await admin.client_kill_filter(_type="pubsub")  # every process loses its live feed
        for n in range(1, 50):
            await a.publish(_event(n))
    finally:
        await admin.aclose()
    received = await collect(on_b, 49, WAIT)
    assert [e.data["n"] for e in received] == list(range(1, 50))


async def test_redis_down_queues_events_and_delivers_them_when_it_returns(
    processes: Factory, fresh_redis: RedisServer
) -> None:
    a: ConnectionManager = await processes()
    b: ConnectionManager = await processes()
    on_b, _ = await _connect(b)
    fresh_redis.stop()
    try:
        for n in range(5):
            await a.publish(_event(n))  # no exception: waiting in the bounded outbox
        assert a.broker.accepting
        assert a.broker.stats()["outbox"] == 5
    finally:
        fresh_redis.start()
    received = await collect(on_b, 5, WAIT)
    assert [e.data["n"] for e in received] == list(range(5))
