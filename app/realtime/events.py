"""Event names, payload models and the Event object that both transports carry.

One Event object, one id, two transports: the HTTP stream writes `event.wire()` (encoded
once, whatever the number of receivers) and a Reflex tab applies `event.data`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from app.realtime.encoding import encode_sse
from app.realtime.ids import EventId


class EventType(StrEnum):
    CHAT_MESSAGE = "chat:message"
    CHAT_MESSAGE_UPDATED = "chat:message-updated"
    CHAT_MESSAGE_DELETED = "chat:message-deleted"
    CHAT_TYPING = "chat:typing"
    CHAT_UNREAD_COUNT = "chat:unread-count"
    CHAT_CONVERSATION = "chat:conversation"
    NOTIFICATION_NEW = "notification:new"
    NOTIFICATION_READ = "notification:read"
    PRESENCE_UPDATE = "presence:update"
    PING = "ping"
    RESYNC = "resync"


# The key every event's wire payload gets beside its type's fields (Event.wire_data).
SENT_AT = "sentAt"

# Control events are always sent, whatever the consumer's filter, and are never replayed.
CONTROL_TYPES: frozenset[str] = frozenset({EventType.PING, EventType.RESYNC})
FILTERABLE_TYPES: frozenset[str] = frozenset(t.value for t in EventType) - CONTROL_TYPES


class Payload(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


class ChatMessageBody(Payload):
    id: int
    conversation_id: int
    content: str
    sender_id: int
    sender_name: str
    created_at: str
    edited_at: str | None = None
    # A deleted message keeps its place in history, with content "".
    deleted: bool = False


class ChatMessagePayload(Payload):
    conversation_id: int
    message: ChatMessageBody


class ChatMessageUpdatedPayload(Payload):
    """An edit: the whole message as it is now, so a consumer replaces it by id."""

    conversation_id: int
    message: ChatMessageBody


class ChatMessageDeletedPayload(Payload):
    conversation_id: int
    message_id: int


class ChatTypingPayload(Payload):
    conversation_id: int
    user_id: int
    user_name: str
    is_typing: bool


class ChatUnreadCountPayload(Payload):
    conversation_id: int
    count: int
    total: int


class ConversationParticipantBody(Payload):
    id: int
    username: str
    display_name: str


class ConversationBody(Payload):
    """A conversation as every participant sees it (no per-reader unread count)."""

    id: int
    kind: str
    title: str | None
    participants: list[ConversationParticipantBody]
    created_at: str


# What happened to a conversation, as the reader of the event sees it: "created" (someone
# started it with them, or they did in another tab), "added" (they were added to it),
# "updated" (its title or people changed), "removed" (they left it or were removed: drop it).
ConversationAction = Literal["created", "added", "updated", "removed"]


class ChatConversationPayload(Payload):
    """A conversation the reader's list must show, change or drop, without a reload;
    `conversation` is always the conversation as it now is."""

    conversation_id: int
    action: ConversationAction
    conversation: ConversationBody


class NotificationNewPayload(Payload):
    id: int
    type: str
    title: str
    body: str
    link: str | None
    created_at: str
    unread_count: int


class NotificationReadPayload(Payload):
    """`id` is the notification read, or None with `all` true after "mark all read"."""

    id: int | None
    all: bool
    unread_count: int


class PresenceUpdatePayload(Payload):
    user_id: int
    user_name: str
    status: str
    last_seen: str | None


class PingPayload(Payload):
    ts: str


class ResyncPayload(Payload):
    reason: str


def _dump_json(data: dict[str, Any]) -> str:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form; \u-escaping keeps the payload exact.
        return json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    return text


@dataclass(frozen=True, slots=True)
class MessageOrder:
    """Where a `chat:message` stands in its conversation, for a broker that must keep the
    conversation's order across processes (app/realtime/broker/redis.py).

    `previous_id` is the message stored just before it in the conversation (None for the
    first, and on copies read back from the broker, which need only the position).
    """

    conversation_id: int
    message_id: int
    previous_id: int | None = None


@dataclass(slots=True, eq=False)
class Event:
    """One event on its way to clients.

    `channels` says where it goes; `tenant_id` says whose it is (None for events that belong
    to no tenant, such as announcements on `global`). `id` is set by the broker on publish;
    control events (ping, resync) have none, so they never move a consumer's Last-Event-ID.
    """

    type: str
    data: dict[str, Any]
    channels: tuple[str, ...] = ()
    tenant_id: int | None = None
    id: EventId | None = None
    published_at: float = field(default_factory=time.time)
    # Set on chat:message only; never on the wire to clients.
    order: MessageOrder | None = None
    _wire: bytes | None = None

    def wire(self) -> bytes:
        """The SSE bytes of this event, encoded once and shared by every receiver."""
        if self._wire is None:
            self._wire = encode_sse(
                id=None if self.id is None else str(self.id),
                event=self.type,
                data=_dump_json(self.wire_data()),
            )
        return self._wire

    def wire_data(self) -> dict[str, Any]:
        """The payload as consumers get it: `data` and the moment it was published
        (`sentAt`, milliseconds since the epoch), against which the client kits measure
        how long the event took to reach them."""
        return {**self.data, SENT_AT: int(self.published_at * 1000)}

    def as_dict(self) -> dict[str, Any]:
        """What a consumer sees: the same id, type and payload whatever the transport."""
        return {
            "id": None if self.id is None else str(self.id),
            "type": self.type,
            "data": self.wire_data(),
        }
