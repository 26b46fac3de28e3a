"""Typed emit methods: the only way domain code publishes events.

Each method decides the channels and the owning tenant of its event type, so a use case
cannot send a tenant's event to the wrong audience by picking a channel by hand. Callers
commit their database changes before calling these (an event never announces something
that is not stored).
"""

from __future__ import annotations

from collections.abc import Iterable

from app.realtime.broker.base import BrokerUnavailable
from app.realtime.channels import tenant_channel, user_channel
from app.realtime.events import (
    ChatConversationPayload,
    ChatMessageDeletedPayload,
    ChatMessagePayload,
    ChatMessageUpdatedPayload,
    ChatTypingPayload,
    ChatUnreadCountPayload,
    Event,
    EventType,
    MessageOrder,
    NotificationNewPayload,
    NotificationReadPayload,
    Payload,
    PresenceUpdatePayload,
)
from app.realtime.manager import ConnectionManager


def _users(user_ids: Iterable[int]) -> tuple[str, ...]:
    return tuple(user_channel(user_id) for user_id in dict.fromkeys(user_ids))


class RealtimeService:
    def __init__(self, manager: ConnectionManager) -> None:
        self._manager = manager

    def ensure_accepting(self) -> None:
        """Call before storing anything that will be announced: refuses (BrokerUnavailable,
        a 503) while events could not go out, so nothing is left half-done."""
        if not self._manager.broker.accepting:
            raise BrokerUnavailable("realtime delivery is unavailable; try again shortly")

    async def _emit(
        self, event_type: EventType, payload: Payload, channels: tuple[str, ...], tenant_id: int
    ) -> Event | None:
        return await self._publish(
            Event(type=event_type, data=payload.to_data(), channels=channels, tenant_id=tenant_id)
        )

    async def _publish(self, event: Event) -> Event | None:
        if not event.channels:
            return None
        return await self._manager.publish(event)

    @staticmethod
    def chat_message_event(
        *,
        tenant_id: int,
        participant_ids: Iterable[int],
        payload: ChatMessagePayload,
        order: MessageOrder | None = None,
    ) -> Event:
        """A `chat:message` for every participant, the sender's other tabs included: made
        here for a send and for the broker's refill of a conversation's gap alike."""
        return Event(
            type=EventType.CHAT_MESSAGE,
            data=payload.to_data(),
            channels=_users(participant_ids),
            tenant_id=tenant_id,
            order=order,
        )

    async def emit_chat_message(
        self,
        *,
        tenant_id: int,
        participant_ids: Iterable[int],
        payload: ChatMessagePayload,
        order: MessageOrder | None = None,
    ) -> Event | None:
        """To every participant, the sender's other tabs included. `order` lets a broker
        shared by several processes keep the conversation's order (app/realtime/broker)."""
        return await self._publish(
            self.chat_message_event(
                tenant_id=tenant_id, participant_ids=participant_ids, payload=payload, order=order
            )
        )

    async def emit_message_updated(
        self, *, tenant_id: int, participant_ids: Iterable[int], payload: ChatMessageUpdatedPayload
    ) -> Event | None:
        """To the audience of the message itself: every participant."""
        return await self._emit(
            EventType.CHAT_MESSAGE_UPDATED, payload, _users(participant_ids), tenant_id
        )

    async def emit_message_deleted(
        self, *, tenant_id: int, participant_ids: Iterable[int], payload: ChatMessageDeletedPayload
    ) -> Event | None:
        """To the audience of the message itself: every participant."""
        return await self._emit(
            EventType.CHAT_MESSAGE_DELETED, payload, _users(participant_ids), tenant_id
        )

    async def emit_conversation(
        self, *, tenant_id: int, participant_ids: Iterable[int], payload: ChatConversationPayload
    ) -> Event | None:
        """To the users given: the participants (the actor's other tabs included), the
        people added, or the one who left or was removed, one audience per action."""
        return await self._emit(
            EventType.CHAT_CONVERSATION, payload, _users(participant_ids), tenant_id
        )

    async def emit_typing(
        self, *, tenant_id: int, recipient_ids: Iterable[int], payload: ChatTypingPayload
    ) -> Event | None:
        """To the other participants (the caller leaves the typist out)."""
        recipients = (uid for uid in recipient_ids if uid != payload.user_id)
        return await self._emit(EventType.CHAT_TYPING, payload, _users(recipients), tenant_id)

    async def emit_unread_count(
        self, *, tenant_id: int, user_id: int, payload: ChatUnreadCountPayload
    ) -> Event | None:
        return await self._emit(
            EventType.CHAT_UNREAD_COUNT, payload, (user_channel(user_id),), tenant_id
        )

    async def emit_notification(
        self, *, tenant_id: int, user_id: int, payload: NotificationNewPayload
    ) -> Event | None:
        return await self._emit(
            EventType.NOTIFICATION_NEW, payload, (user_channel(user_id),), tenant_id
        )

    async def emit_notification_read(
        self, *, tenant_id: int, user_id: int, payload: NotificationReadPayload
    ) -> Event | None:
        return await self._emit(
            EventType.NOTIFICATION_READ, payload, (user_channel(user_id),), tenant_id
        )

    async def emit_presence(
        self, *, tenant_id: int, payload: PresenceUpdatePayload
    ) -> Event | None:
        return await self._emit(
            EventType.PRESENCE_UPDATE, payload, (tenant_channel(tenant_id),), tenant_id
        )
