"""What a consumer sees: typed events and status changes, and the duplicate filter."""

from __future__ import annotations

import json
import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class EventType(StrEnum):
    """The server's event types (app/realtime/events.py; the kit keeps its own copy to stay
    standalone, and tests/test_client_python.py checks that the two agree)."""

    CHAT_MESSAGE = "chat:message"
    CHAT_MESSAGE_UPDATED = "chat:message-updated"
    CHAT_MESSAGE_DELETED = "chat:message-deleted"
    CHAT_CONVERSATION = "chat:conversation"
    CHAT_TYPING = "chat:typing"
    CHAT_UNREAD_COUNT = "chat:unread-count"
    NOTIFICATION_NEW = "notification:new"
    NOTIFICATION_READ = "notification:read"
    PRESENCE_UPDATE = "presence:update"
    PING = "ping"
    RESYNC = "resync"


# Events that carry no id and are never filtered by `?events=` on the server.
CONTROL_TYPES = frozenset({EventType.PING, EventType.RESYNC})

_EVENT_ID = re.compile(r"([0-9]{1,19})-([0-9]{1,19})")


@dataclass(frozen=True)
class ClientEvent:
    """One server-sent event. `id` is None for `ping` and `resync`, which carry none.
    `received_at`: when the client read it (seconds since the epoch)."""

    type: str
    id: str | None
    data: dict[str, Any] = field(default_factory=dict)
    received_at: float | None = field(default=None, compare=False)

    @property
    def sent_at(self) -> float | None:
        """When the server published it (seconds since the epoch), from its `sentAt`."""
        value = self.data.get("sentAt")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return value / 1000

    @property
    def latency(self) -> float | None:
        """Seconds from the server's publish to this client's read (app/client/latency.py)."""
        sent_at = self.sent_at
        if sent_at is None or self.received_at is None:
            return None
        return max(self.received_at - sent_at, 0.0)

    @property
    def conversation_id(self) -> int | None:
        """The conversation a chat event is about, if any."""
        value = self.data.get("conversationId")
        return value if isinstance(value, int) else None

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "type": self.type, "data": self.data}, ensure_ascii=False)


StatusState = Literal["connecting", "connected", "disconnected", "closed"]


@dataclass(frozen=True)
class ClientStatus:
    """A change of the connection. `disconnected` comes with the reason and the `delay`
    before the next attempt; `attempt` counts failures since the last good connection."""

    state: StatusState
    attempt: int = 0
    delay: float | None = None
    reason: str | None = None
    status_code: int | None = None


def parse_event_id(raw: str) -> tuple[int, int] | None:
    """`"1795720366114-42"` -> (1795720366114, 42); None for any other shape."""
    match = _EVENT_ID.fullmatch(raw)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


class SeenEvents:
    """Remembers what was delivered, so a replay that overlaps it is not delivered twice.

    Ids are `<epoch>-<seq>`; within one epoch a stream's sequence only grows, so one
    high-water mark per epoch is exact and small. Comparing across epochs would be wrong:
    a restarted server (new epoch) or a second id space (Redis: one per tenant) may sort
    either way. Ids of another shape fall back to a bounded set of recent ids."""

    MAX_EPOCHS = 32
    MAX_OTHER_IDS = 10_000

    def __init__(self) -> None:
        self._high_water: OrderedDict[int, int] = OrderedDict()
        self._other_ids: set[str] = set()
        self._other_order: deque[str] = deque()

    def first_time(self, event_id: str | None) -> bool:
        """True (and remembered) unless this id was delivered before. No id: always True."""
        if event_id is None:
            return True
        parsed = parse_event_id(event_id)
        if parsed is None:
            return self._first_time_other(event_id)
        epoch, seq = parsed
        if epoch in self._high_water and seq <= self._high_water[epoch]:
            return False
        self._high_water[epoch] = seq
        self._high_water.move_to_end(epoch)
        while len(self._high_water) > self.MAX_EPOCHS:
            self._high_water.popitem(last=False)
        return True

    def _first_time_other(self, event_id: str) -> bool:
        if event_id in self._other_ids:
            return False
        self._other_ids.add(event_id)
        self._other_order.append(event_id)
        if len(self._other_order) > self.MAX_OTHER_IDS:
            self._other_ids.discard(self._other_order.popleft())
        return True
