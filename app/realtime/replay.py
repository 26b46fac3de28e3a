"""A bounded history of one channel, so reconnecting consumers get what they missed."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from app.realtime.events import Event
from app.realtime.ids import EventId


class ReplayBuffer:
    """Keeps at most `max_events` events, none older than `max_age_seconds`.

    It remembers the newest id it has let go (`evicted_upto`): an id older than that cannot
    be resumed from without a gap, and the caller must tell the consumer to resync.
    """

    __slots__ = ("_clock", "_events", "_max_age", "_max_events", "evicted_upto")

    def __init__(
        self,
        max_events: int,
        max_age_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_events < 1:
            raise ValueError("a replay buffer holds at least one event")
        self._events: deque[Event] = deque()
        self._max_events = max_events
        self._max_age = max_age_seconds
        self._clock = clock
        self.evicted_upto: EventId | None = None

    def __len__(self) -> int:
        return len(self._events)

    def is_empty_after_expiry(self) -> bool:
        self._evict_expired()
        return not self._events

    def append(self, event: Event) -> None:
        if event.id is None:
            raise ValueError("only events with an id can be replayed")
        self._events.append(event)
        if len(self._events) > self._max_events:
            self._evict_oldest()
        self._evict_expired()

    def since(self, after: EventId) -> list[Event] | None:
        """Events newer than `after`, oldest first; None when some of them were evicted."""
        self._evict_expired()
        if self.evicted_upto is not None and after < self.evicted_upto:
            return None
        events = self._events
        # Resuming near the live edge is the common case: walk back from the newest.
        start = len(events)
        while start > 0 and events[start - 1].id > after:  # type: ignore[operator]  # append() keeps only events with an id
            start -= 1
        return [events[i] for i in range(start, len(events))]

    def _evict_oldest(self) -> None:
        self.evicted_upto = self._events.popleft().id

    def _evict_expired(self) -> None:
        oldest_allowed = self._clock() - self._max_age
        while self._events and self._events[0].published_at < oldest_allowed:
            self._evict_oldest()
