"""Replay buffer edges: an event exactly as old as the age limit is still retained."""

from __future__ import annotations

from app.realtime.events import Event, EventType
from app.realtime.ids import EventId
from app.realtime.replay import ReplayBuffer


def test_an_event_exactly_max_age_old_is_kept_and_one_just_older_is_evicted() -> None:
    now = [1000.0]
    buffer = ReplayBuffer(10, 30.0, clock=lambda: now[0])
    event = Event(type=EventType.CHAT_MESSAGE, data={}, id=EventId(1, 1), published_at=1000.0)
    buffer.append(event)
    now[0] = 1030.0
    assert buffer.since(EventId(1, 0)) == [event]
    now[0] = 1030.001
    assert buffer.since(EventId(1, 0)) is None
    assert buffer.evicted_upto == EventId(1, 1)
