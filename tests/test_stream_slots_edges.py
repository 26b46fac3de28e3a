"""Stream slots on a real redis-server: the per-user limit across processes, leases,
release and renewal, and what the manager does when the slots are refused, released,
renewed, or their store is down."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.realtime.broker.memory import MemoryBroker
from app.realtime.client import Client, ClientKind
from app.realtime.events import Event, EventType
from app.realtime.manager import ConnectionManager, TooManyStreams
from app.realtime.stream_slots import RedisStreamSlots
from tests.backend import free_port

WAIT = 3.0
KEY = "chat:streams:{u1}"


class SlotsBroker(MemoryBroker):
    """The memory broker with the stream slots of a Redis deployment."""

    def __init__(self, slots: RedisStreamSlots) -> None:
        super().__init__(replay_buffer_size=10, replay_max_age_seconds=60)
        self._slots = slots

    def stream_slots(self) -> RedisStreamSlots:
        return self._slots


@pytest.fixture
async def managers() -> AsyncIterator[Callable[..., Awaitable[ConnectionManager]]]:
    started: list[ConnectionManager] = []

    async def make(
        slots: RedisStreamSlots, *, max_streams: int = 1, heartbeat: float = 0
    ) -> ConnectionManager:
        manager = ConnectionManager(
            SlotsBroker(slots),
            queue_size=10_000,  # unread pings must not cut a stream as slow
            max_streams_per_user=max_streams,
            heartbeat_seconds=heartbeat,
        )
        await manager.start()
        started.append(manager)
        return manager

    try:
        yield make
    finally:
        for manager in reversed(started):
            await manager.stop()
        await asyncio.sleep(0)  # let the release tasks of the last closes run


async def until(condition: Callable[[], object]) -> None:
    async with asyncio.timeout(WAIT):
        while not await condition():  # type: ignore[misc]
            await asyncio.sleep(0.01)


def now_ms() -> int:
    return int(time.time() * 1000)


# -- the slots alone --------------------------------------------------------------------


async def test_slots_are_granted_up_to_the_limit_then_refused(redis_db: aioredis.Redis) -> None:
    slots = RedisStreamSlots(redis_db, process="p", lease_seconds=60)
    assert await slots.acquire(1, "c1", 2) is True
    assert await slots.acquire(1, "c2", 2) is True
    assert await slots.acquire(1, "c3", 2) is False
    assert await slots.acquire(2, "c4", 2) is True  # another user's slots
    assert sorted(await redis_db.zrange(KEY, 0, -1)) == ["p:c1", "p:c2"]


async def test_a_slot_is_leased_until_now_plus_the_lease_and_so_is_its_key(
    redis_db: aioredis.Redis,
) -> None:
    slots = RedisStreamSlots(redis_db, process="p", lease_seconds=60)
    before = now_ms()
    await slots.acquire(1, "c1", 5)
    after = now_ms()
    score = await redis_db.zscore(KEY, "p:c1")
    assert before + 60_000 <= score <= after + 60_000
    assert 59_000 < await redis_db.pttl(KEY) <= 60_000


async def test_release_frees_the_slot_of_that_process_only(redis_db: aioredis.Redis) -> None:
    one = RedisStreamSlots(redis_db, process="one", lease_seconds=60)
    two = RedisStreamSlots(redis_db, process="two", lease_seconds=60)
    assert await one.acquire(1, "c1", 2)
    assert await two.acquire(1, "c1", 2)  # the same client id in another process
    assert not await one.acquire(1, "c9", 2)
    await two.release(1, "c1")
    assert await redis_db.zrange(KEY, 0, -1) == ["one:c1"]
    assert await one.acquire(1, "c9", 2)


async def test_an_expired_lease_frees_its_slot(redis_db: aioredis.Redis) -> None:
    crashed = RedisStreamSlots(redis_db, process="crashed", lease_seconds=0.2)
    alive = RedisStreamSlots(redis_db, process="alive", lease_seconds=60)
    assert await crashed.acquire(1, "c1", 1)
    assert not await alive.acquire(1, "c2", 1)
    ended = now_ms() + 200

    async def lease_over() -> bool:
        return now_ms() > ended + 20

    await until(lease_over)
    assert await alive.acquire(1, "c2", 1)
    assert await redis_db.zrange(KEY, 0, -1) == ["alive:c2"]


async def test_renew_moves_held_leases_on_and_never_brings_back_a_released_one(
    redis_db: aioredis.Redis,
) -> None:
    slots = RedisStreamSlots(redis_db, process="p", lease_seconds=60)
    await slots.acquire(1, "c1", 5)
    await slots.acquire(2, "c2", 5)
    await slots.acquire(1, "gone", 5)
    await slots.release(1, "gone")
    await redis_db.zadd(KEY, {"p:c1": 5})  # an old lease
    await redis_db.zadd("chat:streams:{u2}", {"p:c2": 5})
    before = now_ms()
    await slots.renew([(1, "c1"), (2, "c2"), (1, "gone")])
    after = now_ms()
    assert before + 60_000 <= await redis_db.zscore(KEY, "p:c1") <= after + 60_000
    assert before + 60_000 <= await redis_db.zscore("chat:streams:{u2}", "p:c2") <= after + 60_000
    assert await redis_db.zscore(KEY, "p:gone") is None
    await slots.renew([])  # nothing held: nothing to do, no error


# -- the manager with slots -------------------------------------------------------------


async def test_a_stream_refused_by_the_shared_count_is_not_registered(
    redis_db: aioredis.Redis,
    managers: Callable[..., Awaitable[ConnectionManager]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = await managers(RedisStreamSlots(redis_db, process="a", lease_seconds=60))
    second = await managers(RedisStreamSlots(redis_db, process="b", lease_seconds=60))
    held = (await first.connect(user_id=1, tenant_id=1)).client
    with caplog.at_level(logging.INFO, logger="app"), pytest.raises(TooManyStreams):
        await second.connect(user_id=1, tenant_id=1)
    assert second.clients() == []
    # Logged like a refusal by this process's own limit: the recipe reads one event name.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("app.")] == [
        "stream.refused"
    ]
    # A tab takes no slot.
    await second.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)
    first.disconnect(held)

    async def released() -> bool:
        return await redis_db.zcard(KEY) == 0

    await until(released)
    client = (await second.connect(user_id=1, tenant_id=1)).client
    assert await redis_db.zrange(KEY, 0, -1) == [f"b:{client.id}"]


async def test_closing_a_stream_releases_its_slot_and_a_tab_holds_none(
    redis_db: aioredis.Redis, managers: Callable[..., Awaitable[ConnectionManager]]
) -> None:
    manager = await managers(
        RedisStreamSlots(redis_db, process="a", lease_seconds=60), max_streams=2
    )
    stream = (await manager.connect(user_id=1, tenant_id=1)).client
    tab = (await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)).client
    assert await redis_db.zrange(KEY, 0, -1) == [f"a:{stream.id}"]
    manager.disconnect(tab)
    manager.disconnect(stream)

    async def released() -> bool:
        return await redis_db.zcard(KEY) == 0

    await until(released)


async def test_the_heartbeat_renews_the_leases_of_open_streams_only(
    redis_db: aioredis.Redis, managers: Callable[..., Awaitable[ConnectionManager]]
) -> None:
    manager = await managers(
        RedisStreamSlots(redis_db, process="a", lease_seconds=0.5), max_streams=2, heartbeat=0.05
    )
    stream = (await manager.connect(user_id=1, tenant_id=1)).client
    await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)
    first_lease = await redis_db.zscore(KEY, f"a:{stream.id}")

    async def renewed() -> bool:
        score = await redis_db.zscore(KEY, f"a:{stream.id}")
        return score is not None and score > first_lease + 100

    await until(renewed)
    # Still held well past the first lease's end: renewed, not re-acquired.
    ended = first_lease + 300

    async def past_first_lease() -> bool:
        return now_ms() > ended

    await until(past_first_lease)
    assert await redis_db.zrange(KEY, 0, -1) == [f"a:{stream.id}"]


async def test_when_the_slot_store_is_down_streams_open_close_and_the_heartbeat_beats(
    managers: Callable[..., Awaitable[ConnectionManager]], caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens there; no retries, so each call fails at once.
    down = aioredis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0), decode_responses=True)
    try:
        manager = await managers(
            RedisStreamSlots(down, process="a", lease_seconds=60), max_streams=1, heartbeat=0.05
        )
        with caplog.at_level(logging.WARNING, logger="app.realtime.manager"):
            client = (await manager.connect(user_id=1, tenant_id=1)).client
            assert "stream slots unavailable" in caplog.text
            # The per-process limit still holds.
            with pytest.raises(TooManyStreams):
                await manager.connect(user_id=1, tenant_id=1)

            async def pinged() -> bool:
                return "heartbeat failed" in caplog.text

            await until(pinged)
            batch: list[Event] = []
            async with asyncio.timeout(WAIT):
                while not batch:
                    batch = await client.next_batch()
            assert batch[0].type == EventType.PING
            manager.disconnect(client)

            async def release_logged() -> bool:
                return "could not release a stream slot" in caplog.text

            await until(release_logged)
        await manager.connect(user_id=1, tenant_id=1)
    finally:
        await down.aclose()


async def test_a_stream_opened_and_closed_at_once_leaves_no_slot(
    redis_db: aioredis.Redis, managers: Callable[..., Awaitable[ConnectionManager]]
) -> None:
    manager = await managers(
        RedisStreamSlots(redis_db, process="a", lease_seconds=60), max_streams=3
    )
    clients: list[Client] = [
        (await manager.connect(user_id=1, tenant_id=1)).client for _ in range(3)
    ]
    for client in clients:
        manager.disconnect(client)

    async def released() -> bool:
        return await redis_db.zcard(KEY) == 0

    await until(released)
