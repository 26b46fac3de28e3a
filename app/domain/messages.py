"""Sending, editing and deleting messages, paging history, and the per-user read cursor
(unread counts). Whom a message notifies: app/domain/message_notifications.py."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from app.db import Database
from app.domain.conversations import (
    message_body,
    participant_ids,
    require_participant,
    unread_totals,
)
from app.domain.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound, RateLimited
from app.domain.message_notifications import MessageNotifications
from app.domain.principal import Principal
from app.domain.typing import TypingTracker
from app.models import ConversationKind, ConversationMember, Message, User
from app.realtime.events import (
    ChatMessageBody,
    ChatMessageDeletedPayload,
    ChatMessagePayload,
    ChatMessageUpdatedPayload,
    ChatUnreadCountPayload,
    Event,
    MessageOrder,
)
from app.realtime.service import RealtimeService
from app.security.rate_limit import RateLimiter
from app.settings import Settings
from app.timeutil import utcnow


@dataclass(frozen=True, slots=True)
class UnreadChange:
    user_id: int
    count: int
    total: int


@dataclass(frozen=True, slots=True)
class SentMessage:
    message: ChatMessageBody
    participants: list[int]
    unread: list[UnreadChange]
    # The other person of a 1:1; None in a group.
    direct_recipient: int | None = None
    # The conversation's message stored just before this one (None for its first).
    previous_id: int | None = None


@dataclass(frozen=True, slots=True)
class ChangedMessage:
    message: ChatMessageBody
    participants: list[int]
    # False when there was nothing to store or announce (the same content, a second delete).
    changed: bool
    previous_content: str = ""


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: list[ChatMessageBody]
    has_more: bool


# A gap longer than this (an outbox holds at most 10 000 events) is filled only in part.
_MAX_REFILL = 1000


class Messages:
    def __init__(
        self,
        db: Database,
        service: RealtimeService,
        settings: Settings,
        limiter: RateLimiter,
        typing: TypingTracker,
        notifier: MessageNotifications | None = None,
    ) -> None:
        self._typing = typing
        self._notifier = notifier
        self._db = db
        self._service = service
        self._settings = settings
        self._limiter = limiter
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def _in_order(self, conversation_id: int) -> AsyncIterator[None]:
        """Commit and publish one message of a conversation at a time, so every stream sees
        its messages in the order of their ids (the order of the history endpoint)."""
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = self._locks[conversation_id] = asyncio.Lock()
        async with lock:
            yield

    def clean_content(self, content: str) -> str:
        content = content.strip()
        if not content:
            raise InvalidInput("A message must not be empty.")
        if len(content) > self._settings.message_max_chars:
            raise InvalidInput(
                f"A message is at most {self._settings.message_max_chars} characters."
            )
        return content

    async def send(self, principal: Principal, conversation_id: int, content: str) -> SentMessage:
        content = self.clean_content(content)
        retry_after = await self._limiter.take(f"message:{principal.user_id}")
        if retry_after is not None:
            raise RateLimited("You are sending messages too fast.", retry_after)
        self._service.ensure_accepting()
        async with self._in_order(conversation_id):
            sent = await self._db.run(lambda s: self._store(s, principal, conversation_id, content))
            await self._service.emit_chat_message(
                tenant_id=principal.tenant_id,
                participant_ids=sent.participants,
                payload=ChatMessagePayload(conversation_id=conversation_id, message=sent.message),
                order=MessageOrder(conversation_id, sent.message.id, sent.previous_id),
            )
            await self._emit_unread(principal.tenant_id, conversation_id, sent.unread)
        # A sent message ends the sender's typing there (the stop follows the message).
        await self._typing.stop((principal.tenant_id, conversation_id, principal.user_id))
        if self._notifier is not None:
            await self._notifier.sent(
                principal, conversation_id, sent.message.id, content, sent.direct_recipient
            )
        return sent

    def _store(
        self, session: Session, principal: Principal, conversation_id: int, content: str
    ) -> SentMessage:
        conversation = require_participant(session, principal, conversation_id, lock=True)
        # Every participant's row, locked in user order before any is written: a batch of
        # read marks (mark_read_many) locks them in the same order, so neither waits for
        # the other in a circle (PostgreSQL would abort one as a deadlock).
        session.exec(
            select(ConversationMember.user_id)
            .where(ConversationMember.conversation_id == conversation_id)
            .order_by(col(ConversationMember.user_id))
            .with_for_update(key_share=True)
        ).all()
        message = Message(
            conversation_id=conversation_id,
            tenant_id=principal.tenant_id,
            sender_id=principal.user_id,
            content=content,
        )
        session.add(message)
        session.flush()
        # Ours is the newest: the conversation's lock orders the sends' ids and commits.
        previous_id = conversation.last_message_id
        conversation.last_message_id = message.id
        session.add(conversation)
        session.exec(
            update(ConversationMember)
            .where(col(ConversationMember.conversation_id) == conversation_id)
            .where(col(ConversationMember.user_id) != principal.user_id)
            .values(unread_count=col(ConversationMember.unread_count) + 1)
        )
        # Sending marks the sender's own conversation read.
        own = session.get(ConversationMember, (conversation_id, principal.user_id))
        assert own is not None  # require_participant checked it
        sender_had_unread = own.unread_count > 0
        own.last_read_message_id = message.id  # type: ignore[assignment]  # SQLModel types ids int | None; stored rows have one
        own.unread_count = 0
        session.add(own)
        session.commit()

        counts = dict(
            session.exec(
                select(ConversationMember.user_id, ConversationMember.unread_count).where(
                    ConversationMember.conversation_id == conversation_id
                )
            ).all()
        )
        changed = [uid for uid in counts if uid != principal.user_id or sender_had_unread]
        totals = unread_totals(session, principal.tenant_id, changed)
        others = [uid for uid in counts if uid != principal.user_id]
        direct = conversation.kind == ConversationKind.DIRECT.value and len(others) == 1
        return SentMessage(
            message=message_body(message, principal.display_name),
            participants=sorted(counts),
            unread=[UnreadChange(uid, counts[uid], totals[uid]) for uid in changed],
            direct_recipient=others[0] if direct else None,
            previous_id=previous_id,
        )

    async def missed_events(
        self, tenant_id: int, conversation_id: int, after_id: int, before_id: int
    ) -> list[Event]:
        """The chat:message events of the conversation's messages stored between two ids,
        oldest first, as they are now, for the participants as they are now: what a broker
        shared by several processes publishes to fill a gap in the conversation's order
        (their own process has not published them yet). At most _MAX_REFILL."""

        def load(session: Session) -> list[Event]:
            rows = session.exec(
                select(Message, User)
                .join(User, col(User.id) == col(Message.sender_id))
                .where(Message.tenant_id == tenant_id)
                .where(Message.conversation_id == conversation_id)
                .where(col(Message.id) > after_id, col(Message.id) < before_id)
                .order_by(col(Message.id))
                .limit(_MAX_REFILL)
            ).all()
            if not rows:
                return []
            participants = participant_ids(session, conversation_id)
            return [
                self._service.chat_message_event(
                    tenant_id=tenant_id,
                    participant_ids=participants,
                    payload=ChatMessagePayload(
                        conversation_id=conversation_id,
                        message=message_body(message, sender.display_name),
                    ),
                    order=MessageOrder(conversation_id, message.id),  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
                )
                for message, sender in rows
            ]

        return await self._db.run(load)

    async def edit(
        self, principal: Principal, conversation_id: int, message_id: int, content: str
    ) -> ChatMessageBody:
        """The sender's new content, cleaned as a sent message is; every participant hears
        of it. The same content again is accepted and announces nothing."""
        content = self.clean_content(content)
        # The sends' bucket: an edit is as much a write as a send, and unlike a delete it
        # can be repeated without end.
        retry_after = await self._limiter.take(f"message:{principal.user_id}")
        if retry_after is not None:
            raise RateLimited("You are changing messages too fast.", retry_after)
        self._service.ensure_accepting()
        async with self._in_order(conversation_id):
            edited = await self._db.run(
                lambda s: _store_edit(s, principal, conversation_id, message_id, content)
            )
            if edited.changed:
                await self._service.emit_message_updated(
                    tenant_id=principal.tenant_id,
                    participant_ids=edited.participants,
                    payload=ChatMessageUpdatedPayload(
                        conversation_id=conversation_id, message=edited.message
                    ),
                )
        if edited.changed and self._notifier is not None:
            await self._notifier.edited(
                principal, conversation_id, message_id, edited.previous_content, content
            )
        return edited.message

    async def delete(self, principal: Principal, conversation_id: int, message_id: int) -> None:
        """Blank the sender's message for good, keeping its place in history; every
        participant hears of it once, however often it is deleted."""
        self._service.ensure_accepting()
        async with self._in_order(conversation_id):
            deleted = await self._db.run(
                lambda s: _store_delete(s, principal, conversation_id, message_id)
            )
            if deleted.changed:
                await self._service.emit_message_deleted(
                    tenant_id=principal.tenant_id,
                    participant_ids=deleted.participants,
                    payload=ChatMessageDeletedPayload(
                        conversation_id=conversation_id, message_id=message_id
                    ),
                )

    async def _emit_unread(
        self, tenant_id: int, conversation_id: int, changes: list[UnreadChange]
    ) -> None:
        for change in changes:
            await self._service.emit_unread_count(
                tenant_id=tenant_id,
                user_id=change.user_id,
                payload=ChatUnreadCountPayload(
                    conversation_id=conversation_id, count=change.count, total=change.total
                ),
            )

    async def history(
        self, principal: Principal, conversation_id: int, *, before: int | None, limit: int
    ) -> HistoryPage:
        """Newest first. `before` is the id of the oldest message the caller already has."""

        def load(session: Session) -> HistoryPage:
            require_participant(session, principal, conversation_id)
            query = (
                select(Message, User)
                .join(User, col(User.id) == col(Message.sender_id))
                .where(Message.conversation_id == conversation_id)
            )
            if before is not None:
                anchor = session.get(Message, before)
                if anchor is None or anchor.conversation_id != conversation_id:
                    raise NotFound("No such message in this conversation.")
                query = query.where(col(Message.id) < before)
            rows = session.exec(query.order_by(col(Message.id).desc()).limit(limit + 1)).all()
            return HistoryPage(
                items=[message_body(m, u.display_name) for m, u in rows[:limit]],
                has_more=len(rows) > limit,
            )

        return await self._db.run(load)

    async def mark_read(
        self, principal: Principal, conversation_id: int, message_id: int | None = None
    ) -> UnreadChange:
        """Move the caller's read cursor forward (to `message_id`, or to the newest message);
        the caller's other clients hear of it."""

        def store(session: Session) -> tuple[UnreadChange, bool]:
            conversation = require_participant(session, principal, conversation_id)
            target = conversation.last_message_id or 0
            if message_id is not None:
                message = session.get(Message, message_id)
                if message is None or message.conversation_id != conversation_id:
                    raise NotFound("No such message in this conversation.")
                target = message_id
            changed = _move_read_cursor(session, principal.user_id, conversation_id, target)
            session.commit()
            count = _unread_count(session, principal.user_id, conversation_id)
            total = unread_totals(session, principal.tenant_id, [principal.user_id])
            return UnreadChange(principal.user_id, count, total[principal.user_id]), changed

        change, changed = await self._db.run(store)
        if changed:
            await self._emit_unread(principal.tenant_id, conversation_id, [change])
        return change

    async def mark_read_many(self, marks: list[tuple[Principal, int, int]]) -> None:
        """Move many callers' cursors, each to a message of a conversation they are in, in one
        transaction (app/domain/read_receipts.py); the changed counts are announced. A mark
        for a conversation its caller has left, or a message not in it, is skipped."""

        def store(session: Session) -> list[tuple[Principal, int]]:
            moved = []
            # Row locks in one order (conversation, user): see Messages._store.
            for principal, conversation_id, message_id in sorted(
                marks, key=lambda mark: (mark[1], mark[0].user_id)
            ):
                try:
                    require_participant(session, principal, conversation_id)
                except DomainError:
                    continue
                message = session.get(Message, message_id)
                if message is None or message.conversation_id != conversation_id:
                    continue
                if _move_read_cursor(session, principal.user_id, conversation_id, message_id):
                    moved.append((principal, conversation_id))
            session.commit()
            return moved

        def counts(
            session: Session, moved: list[tuple[Principal, int]]
        ) -> list[tuple[Principal, int, UnreadChange]]:
            by_tenant: dict[int, set[int]] = {}
            for principal, _ in moved:
                by_tenant.setdefault(principal.tenant_id, set()).add(principal.user_id)
            totals = {
                tenant: unread_totals(session, tenant, sorted(users))
                for tenant, users in by_tenant.items()
            }
            return [
                (
                    principal,
                    conversation_id,
                    UnreadChange(
                        principal.user_id,
                        _unread_count(session, principal.user_id, conversation_id),
                        totals[principal.tenant_id][principal.user_id],
                    ),
                )
                for principal, conversation_id in moved
            ]

        moved = await self._db.run(store)
        if not moved:
            return
        changes = await self._db.run(lambda session: counts(session, moved))
        for principal, conversation_id, change in changes:
            await self._emit_unread(principal.tenant_id, conversation_id, [change])


def _own_message(
    session: Session, principal: Principal, conversation_id: int, message_id: int
) -> Message:
    """The caller's own message. NotFound for whatever the caller cannot see (the answer
    for a missing id, so another tenant's ids are never confirmed); Forbidden for another
    participant's message, which the caller does see."""
    require_participant(session, principal, conversation_id)
    message = session.get(Message, message_id)
    if message is None or message.conversation_id != conversation_id:
        raise NotFound("No such message in this conversation.")
    if message.sender_id != principal.user_id:
        raise Forbidden("Only its sender may change a message.")
    return message


def _store_edit(
    session: Session, principal: Principal, conversation_id: int, message_id: int, content: str
) -> ChangedMessage:
    message = _own_message(session, principal, conversation_id, message_id)
    if message.deleted_at is not None:
        raise Conflict("A deleted message cannot be edited.")
    previous_content = message.content
    changed = previous_content != content
    if changed:
        message.content = content
        message.edited_at = utcnow()
        session.add(message)
        session.commit()
    return ChangedMessage(
        message=message_body(message, principal.display_name),
        participants=participant_ids(session, conversation_id),
        changed=changed,
        previous_content=previous_content,
    )


def _store_delete(
    session: Session, principal: Principal, conversation_id: int, message_id: int
) -> ChangedMessage:
    message = _own_message(session, principal, conversation_id, message_id)
    changed = message.deleted_at is None
    if changed:
        message.content = ""  # never kept: a deleted message's words are gone
        message.deleted_at = utcnow()
        session.add(message)
        session.commit()
    return ChangedMessage(
        message=message_body(message, principal.display_name),
        participants=participant_ids(session, conversation_id),
        changed=changed,
    )


def _move_read_cursor(session: Session, user_id: int, conversation_id: int, target: int) -> bool:
    """Forward only; True if it moved. The count and the cursor are written in one statement,
    so a message stored meanwhile is either counted here or added by its sender after:
    reading the row first and writing it back would lose it.

    On PostgreSQL the row is locked first, by a statement of its own: under READ COMMITTED
    a statement sees what was committed when it began, so an UPDATE that waited for a
    send's lock on the row would then count without the message that send committed, and
    overwrite the send's +1 with that count. Once the lock is ours, the UPDATE's count
    sees every message committed before it (and the sends after it add their own)."""
    session.exec(
        select(ConversationMember.user_id)
        .where(col(ConversationMember.conversation_id) == conversation_id)
        .where(col(ConversationMember.user_id) == user_id)
        .with_for_update(key_share=True)
    ).all()
    unread_after_target = (
        select(func.count())
        .select_from(Message)
        .where(Message.conversation_id == conversation_id)
        .where(col(Message.id) > target)
        .where(Message.sender_id != user_id)
        .scalar_subquery()
    )
    moved = session.exec(
        update(ConversationMember)
        .where(col(ConversationMember.conversation_id) == conversation_id)
        .where(col(ConversationMember.user_id) == user_id)
        .where(col(ConversationMember.last_read_message_id) < target)
        .values(last_read_message_id=target, unread_count=unread_after_target)
    )
    return bool(moved.rowcount > 0)


def _unread_count(session: Session, user_id: int, conversation_id: int) -> int:
    return session.exec(
        select(ConversationMember.unread_count)
        .where(ConversationMember.conversation_id == conversation_id)
        .where(ConversationMember.user_id == user_id)
    ).one()
