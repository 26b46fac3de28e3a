"""The service decides each event's channels and tenant: checked for every emit method on a
real manager and memory broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.realtime.broker.base import BrokerUnavailable
from app.realtime.broker.memory import MemoryBroker
from app.realtime.events import (
    ChatConversationPayload,
    ChatMessageBody,
    ChatMessageDeletedPayload,
    ChatMessagePayload,
    ChatMessageUpdatedPayload,
    ChatTypingPayload,
    ChatUnreadCountPayload,
    ConversationBody,
    Event,
    EventType,
    NotificationNewPayload,
    NotificationReadPayload,
    PresenceUpdatePayload,
)
from app.realtime.manager import ConnectionManager
from app.realtime.service import RealtimeService


class Refusing(MemoryBroker):
    """A broker that cannot take events now (Redis down and its outbox full)."""

    @property
    def accepting(self) -> bool:
        return False


@pytest.fixture
async def manager() -> AsyncIterator[ConnectionManager]:
    manager = ConnectionManager(
        MemoryBroker(replay_buffer_size=10, replay_max_age_seconds=60),
        queue_size=10,
        max_streams_per_user=10,
        heartbeat_seconds=0,
    )
    await manager.start()
    try:
        yield manager
    finally:
        await manager.stop()


MESSAGE = ChatMessageBody(
    id=1, conversation_id=5, content="hi", sender_id=1, sender_name="A", created_at="t"
)


def where(event: Event | None) -> tuple[str, tuple[str, ...], int | None]:
    assert event is not None and event.id is not None
    return event.type, event.channels, event.tenant_id


async def test_conversation_events_go_to_each_participant_once(
    manager: ConnectionManager,
) -> None:
    service = RealtimeService(manager)
    users = ("user:1", "user:2")
    payload = ChatMessagePayload(conversation_id=5, message=MESSAGE)
    sent = await service.emit_chat_message(tenant_id=3, participant_ids=[1, 2, 1], payload=payload)
    assert where(sent) == (EventType.CHAT_MESSAGE, users, 3)
    assert sent is not None and sent.data == payload.to_data()
    updated = ChatMessageUpdatedPayload(conversation_id=5, message=MESSAGE)
    assert where(
        await service.emit_message_updated(tenant_id=3, participant_ids=[1, 2], payload=updated)
    ) == (EventType.CHAT_MESSAGE_UPDATED, users, 3)
    deleted = ChatMessageDeletedPayload(conversation_id=5, message_id=1)
    assert where(
        await service.emit_message_deleted(tenant_id=3, participant_ids=[1, 2], payload=deleted)
    ) == (EventType.CHAT_MESSAGE_DELETED, users, 3)
    conversation = ChatConversationPayload(
        conversation_id=5,
        action="created",
        conversation=ConversationBody(
            id=5, kind="group", title=None, participants=[], created_at="t"
        ),
    )
    assert where(
        await service.emit_conversation(tenant_id=3, participant_ids=[2, 1], payload=conversation)
    ) == (EventType.CHAT_CONVERSATION, ("user:2", "user:1"), 3)


async def test_typing_goes_to_the_others_and_nowhere_when_the_typist_is_alone(
    manager: ConnectionManager,
) -> None:
    service = RealtimeService(manager)
    payload = ChatTypingPayload(conversation_id=5, user_id=1, user_name="A", is_typing=True)
    sent = await service.emit_typing(tenant_id=3, recipient_ids=[1, 2, 3], payload=payload)
    assert where(sent) == (EventType.CHAT_TYPING, ("user:2", "user:3"), 3)
    assert await service.emit_typing(tenant_id=3, recipient_ids=[1], payload=payload) is None
    assert manager.diagnostics()["eventsPublished"] == 1


async def test_an_event_for_nobody_is_not_published(manager: ConnectionManager) -> None:
    service = RealtimeService(manager)
    payload = ChatMessagePayload(conversation_id=5, message=MESSAGE)
    assert await service.emit_chat_message(tenant_id=3, participant_ids=[], payload=payload) is None
    assert manager.diagnostics()["eventsPublished"] == 0


async def test_per_user_events_go_to_that_user_and_presence_to_the_tenant(
    manager: ConnectionManager,
) -> None:
    service = RealtimeService(manager)
    unread = ChatUnreadCountPayload(conversation_id=5, count=1, total=2)
    assert where(await service.emit_unread_count(tenant_id=3, user_id=7, payload=unread)) == (
        EventType.CHAT_UNREAD_COUNT,
        ("user:7",),
        3,
    )
    new = NotificationNewPayload(
        id=1, type="t", title="x", body="b", link=None, created_at="t", unread_count=1
    )
    assert where(await service.emit_notification(tenant_id=3, user_id=7, payload=new)) == (
        EventType.NOTIFICATION_NEW,
        ("user:7",),
        3,
    )
    read = NotificationReadPayload(id=None, all=True, unread_count=0)
    assert where(await service.emit_notification_read(tenant_id=3, user_id=7, payload=read)) == (
        EventType.NOTIFICATION_READ,
        ("user:7",),
        3,
    )
    presence = PresenceUpdatePayload(user_id=7, user_name="G", status="online", last_seen=None)
    assert where(await service.emit_presence(tenant_id=3, payload=presence)) == (
        EventType.PRESENCE_UPDATE,
        ("tenant:3",),
        3,
    )


async def test_ensure_accepting_refuses_while_the_broker_cannot_take_events() -> None:
    RealtimeService(
        ConnectionManager(
            MemoryBroker(replay_buffer_size=1, replay_max_age_seconds=1),
            queue_size=1,
            max_streams_per_user=1,
            heartbeat_seconds=0,
        )
    ).ensure_accepting()
    refusing = ConnectionManager(
        Refusing(replay_buffer_size=1, replay_max_age_seconds=1),
        queue_size=1,
        max_streams_per_user=1,
        heartbeat_seconds=0,
    )
    with pytest.raises(BrokerUnavailable, match="realtime delivery is unavailable"):
        RealtimeService(refusing).ensure_accepting()
