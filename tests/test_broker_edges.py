"""Picking a broker from the settings (the runtime's flavours), and the base broker's
defaults."""

from __future__ import annotations

from dataclasses import replace

from app.realtime.broker import MemoryBroker
from app.realtime.broker.redis import RedisBroker
from app.realtime.events import Event, EventType
from app.runtime import InMemory, InRedis
from app.settings import Settings


def in_memory(**changes: object) -> MemoryBroker:
    broker = InMemory(replace(Settings(), **changes)).broker()  # type: ignore[arg-type]  # test settings by name
    assert isinstance(broker, MemoryBroker)
    return broker


async def redis_broker(**changes: object) -> RedisBroker:
    """The Redis flavour's broker; its client never connects (nothing is sent)."""
    flavour = InRedis(replace(Settings(), redis_url="redis://127.0.0.1:1/0", **changes))  # type: ignore[arg-type]  # test settings by name
    broker = flavour.broker()
    await flavour.redis.aclose()
    assert isinstance(broker, RedisBroker)
    return broker


async def test_no_redis_url_means_the_memory_broker_with_the_replay_settings() -> None:
    broker = in_memory(sse_replay_buffer_size=2, sse_replay_max_age_seconds=9.0)
    start = broker.latest_id
    for _ in range(2):
        await broker.publish(Event(type=EventType.CHAT_MESSAGE, data={}, channels=("x",)))
    assert len(await broker.history(["x"], start) or []) == 2
    old = Event(type=EventType.CHAT_MESSAGE, data={}, channels=("x",), published_at=0.0)
    await broker.publish(old)  # older than 9 s: gone at once, and the buffer holds two
    assert await broker.history(["x"], start) is None
    # The base broker's defaults: per-process stream limits, always accepting, no stats.
    assert broker.stream_slots() is None
    assert broker.accepting is True


async def test_the_base_broker_follows_any_tenant_without_doing_anything() -> None:
    broker = in_memory(sse_replay_buffer_size=1, sse_replay_max_age_seconds=1.0)
    await broker.connect()
    await broker.follow(3)
    await broker.disconnect()


async def test_a_redis_url_means_the_redis_broker_with_leases_of_three_heartbeats() -> None:
    broker = await redis_broker(
        sse_replay_buffer_size=7,
        sse_replay_max_age_seconds=9.0,
        redis_log_max_events=11,
        sse_heartbeat_seconds=20.0,
    )
    assert broker._log_max_events == 11 and broker._max_age == 9.0
    assert broker._slot_lease_seconds == 60.0


async def test_a_lease_is_at_least_one_second_even_without_heartbeat() -> None:
    broker = await redis_broker(
        sse_replay_buffer_size=1, sse_replay_max_age_seconds=1.0, sse_heartbeat_seconds=0.1
    )
    assert broker._slot_lease_seconds == 1.0
