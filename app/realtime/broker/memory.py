"""The embedded default: one process, events and history in memory."""

from __future__ import annotations

import time
from collections.abc import Iterable

from app.realtime.broker.base import Broker, EventListener
from app.realtime.events import Event
from app.realtime.ids import EventId
from app.realtime.replay import ReplayBuffer

_PRUNE_EVERY = 4096


class MemoryBroker(Broker):
    def __init__(self, *, replay_buffer_size: int, replay_max_age_seconds: float) -> None:
        # A new epoch per broker: ids of a previous run are recognised as foreign.
        self.epoch = time.time_ns() // 1_000_000
        self._seq = 0
        self._listeners: list[EventListener] = []
        self._buffers: dict[str, ReplayBuffer] = {}
        self._buffer_size = replay_buffer_size
        self._buffer_max_age = replay_max_age_seconds
        self._forgotten_upto: EventId | None = None

    def attach(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def detach(self, listener: EventListener) -> None:
        self._listeners.remove(listener)

    @property
    def latest_id(self) -> EventId:
        return EventId(self.epoch, self._seq)

    async def publish(self, event: Event) -> Event:
        if event.id is not None:
            raise ValueError("event was already published")
        self._seq += 1
        event.id = EventId(self.epoch, self._seq)
        for channel in event.channels:
            buffer = self._buffers.get(channel)
            if buffer is None:
                buffer = self._buffers[channel] = ReplayBuffer(
                    self._buffer_size, self._buffer_max_age
                )
            buffer.append(event)
        if self._seq % _PRUNE_EVERY == 0:
            self.prune_idle_channels()
        # Kept for replay before anyone sees it: a consumer that connects in between
        # finds it in history instead of missing it.
        for listener in self._listeners:
            listener(event)
        return event

    def stats(self) -> dict[str, object]:
        return {"broker": "memory", "retainedChannels": len(self._buffers)}

    async def history(
        self, channels: Iterable[str], after: EventId, tenant_id: int | None = None
    ) -> list[Event] | None:
        if after.epoch != self.epoch or after.seq > self._seq:
            return None
        found: dict[EventId, Event] = {}
        for channel in channels:
            buffer = self._buffers.get(channel)
            if buffer is None:
                if self._forgotten_upto is not None and after < self._forgotten_upto:
                    return None
                continue
            events = buffer.since(after)
            if events is None:
                return None
            for event in events:
                found[event.id] = event  # type: ignore[index]  # buffered events have ids
        return [found[event_id] for event_id in sorted(found)]

    def prune_idle_channels(self) -> int:
        """Drop buffers whose events have all expired, so dead channels cost no memory.

        What a dropped buffer had let go is remembered broker-wide (`_forgotten_upto`), so
        an id that old still gets a resync instead of a silently incomplete replay.
        """
        idle = [name for name, buffer in self._buffers.items() if buffer.is_empty_after_expiry()]
        for name in idle:
            evicted = self._buffers.pop(name).evicted_upto
            if evicted is not None and (
                self._forgotten_upto is None or evicted > self._forgotten_upto
            ):
                self._forgotten_upto = evicted
        return len(idle)
