"""Memory broker edges: detaching, publishing an event twice, and the periodic pruning of
channels whose history has all expired."""

from __future__ import annotations

import time

import pytest

from app.realtime.broker.memory import MemoryBroker
from app.realtime.events import Event, EventType


def chat(channel: str, published_at: float | None = None) -> Event:
    event = Event(type=EventType.CHAT_MESSAGE, data={}, channels=(channel,))
    if published_at is not None:
        event.published_at = published_at
    return event


async def test_a_detached_listener_hears_nothing_more() -> None:
    broker = MemoryBroker(replay_buffer_size=10, replay_max_age_seconds=60)
    heard: list[Event] = []
    broker.attach(heard.append)
    first = await broker.publish(chat("x"))
    broker.detach(heard.append)
    await broker.publish(chat("x"))
    assert heard == [first]


async def test_an_event_is_published_once() -> None:
    broker = MemoryBroker(replay_buffer_size=10, replay_max_age_seconds=60)
    event = await broker.publish(chat("x"))
    with pytest.raises(ValueError, match="already published"):
        await broker.publish(event)
    assert broker.latest_id.seq == 1


async def test_idle_channels_are_pruned_every_4096_events() -> None:
    broker = MemoryBroker(replay_buffer_size=10, replay_max_age_seconds=60)
    await broker.publish(chat("old", published_at=0.0))  # expired at once: an idle channel
    for _ in range(4094):
        await broker.publish(chat("live"))
    assert broker.stats() == {"broker": "memory", "retainedChannels": 2}
    await broker.publish(chat("live"))  # the 4096th event
    assert broker.stats() == {"broker": "memory", "retainedChannels": 1}


async def test_pruning_says_how_many_channels_it_dropped() -> None:
    broker = MemoryBroker(replay_buffer_size=10, replay_max_age_seconds=60)
    await broker.publish(chat("a", published_at=0.0))
    await broker.publish(chat("b", published_at=0.0))
    await broker.publish(chat("live"))
    assert broker.prune_idle_channels() == 2
    assert broker.prune_idle_channels() == 0
    assert broker.stats()["retainedChannels"] == 1


async def test_a_pruned_channel_still_refuses_ids_older_than_what_it_let_go() -> None:
    broker = MemoryBroker(replay_buffer_size=10, replay_max_age_seconds=60)
    start = broker.latest_id
    await broker.publish(chat("a", published_at=0.0))  # let go at once
    seen = broker.latest_id
    assert broker.prune_idle_channels() == 1
    assert await broker.history(["a"], start) is None  # a gap: resync
    assert await broker.history(["a"], seen) == []  # nothing missed since


async def test_pruning_remembers_the_newest_id_any_pruned_channel_let_go() -> None:
    broker = MemoryBroker(replay_buffer_size=10, replay_max_age_seconds=60)
    await broker.publish(chat("a", published_at=0.0))
    await broker.publish(chat("b", published_at=0.0))
    middle = broker.latest_id  # what b let go
    await broker.publish(chat("a", published_at=0.0))  # a lets go of a newer one
    assert broker.prune_idle_channels() == 2  # a first, then b, the older
    assert await broker.history(["a"], middle) is None
    assert await broker.history(["b"], middle) is None
    assert await broker.history(["a", "b"], broker.latest_id) == []


def test_the_epoch_is_the_brokers_start_time_in_milliseconds() -> None:
    before = time.time() * 1000
    broker = MemoryBroker(replay_buffer_size=1, replay_max_age_seconds=1)
    after = time.time() * 1000
    assert before - 1 <= broker.epoch <= after + 1
