"""Conversations: 1:1 and group, between members of the caller's active tenant."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from app.db import Database
from app.domain.errors import InvalidInput, NotFound
from app.domain.principal import Principal
from app.models import Conversation, ConversationKind, ConversationMember, Membership, Message, User
from app.realtime.events import ChatMessageBody
from app.settings import Settings
from app.timeutil import iso


@dataclass(frozen=True, slots=True)
class Participant:
    id: int
    username: str
    display_name: str


@dataclass(frozen=True, slots=True)
class ConversationView:
    id: int
    kind: str
    title: str | None
    participants: list[Participant]
    last_message: ChatMessageBody | None
    unread_count: int
    created_at: str


def message_body(message: Message, sender_name: str) -> ChatMessageBody:
    return ChatMessageBody(
        id=message.id,  # type: ignore[arg-type]
        conversation_id=message.conversation_id,
        content=message.content,
        sender_id=message.sender_id,
        sender_name=sender_name,
        created_at=iso(message.created_at),  # type: ignore[arg-type]
    )


def require_participant(session: Session, principal: Principal, conversation_id: int) -> Conversation:
    """The conversation if the caller takes part in it in their active tenant; else NotFound.

    One answer for "does not exist", "another tenant's" and "not yours": ids never leak.
    """
    row = session.exec(
        select(Conversation)
        .join(ConversationMember, col(ConversationMember.conversation_id) == col(Conversation.id))
        .where(Conversation.id == conversation_id)
        .where(Conversation.tenant_id == principal.tenant_id)
        .where(ConversationMember.user_id == principal.user_id)
    ).first()
    if row is None:
        raise NotFound("No such conversation.")
    return row


def participant_ids(session: Session, conversation_id: int) -> list[int]:
    return list(
        session.exec(
            select(ConversationMember.user_id)
            .where(ConversationMember.conversation_id == conversation_id)
            .order_by(col(ConversationMember.user_id))
        ).all()
    )


def unread_totals(session: Session, tenant_id: int, user_ids: list[int]) -> dict[int, int]:
    """Each user's unread messages over all their conversations in one tenant."""
    rows = session.exec(
        select(ConversationMember.user_id, func.sum(ConversationMember.unread_count))
        .join(Conversation, col(Conversation.id) == col(ConversationMember.conversation_id))
        .where(Conversation.tenant_id == tenant_id)
        .where(col(ConversationMember.user_id).in_(user_ids))
        .group_by(col(ConversationMember.user_id))
    ).all()
    totals = dict.fromkeys(user_ids, 0)
    totals.update({user_id: int(total or 0) for user_id, total in rows})
    return totals


class Conversations:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings

    async def create(
        self, principal: Principal, participant_ids_: list[int], title: str | None
    ) -> tuple[ConversationView, bool]:
        """The new conversation and True; or an existing 1:1 between the same two and False."""
        title = (title or "").strip() or None
        if title is not None and len(title) > self._settings.conversation_title_max_chars:
            raise InvalidInput(
                f"title is longer than {self._settings.conversation_title_max_chars} characters."
            )
        others = sorted(set(participant_ids_) - {principal.user_id})
        if not others:
            raise InvalidInput("participantIds must name at least one other person.")
        if len(others) + 1 > self._settings.group_max_participants:
            raise InvalidInput(
                f"A conversation has at most {self._settings.group_max_participants} participants."
            )
        direct = len(others) == 1 and title is None

        def store(session: Session) -> tuple[int, bool]:
            members = set(
                session.exec(
                    select(Membership.user_id)
                    .where(Membership.tenant_id == principal.tenant_id)
                    .where(col(Membership.user_id).in_(others))
                ).all()
            )
            if members != set(others):
                raise NotFound("No such user in this tenant.")
            key = None
            if direct:
                low, high = sorted((principal.user_id, others[0]))
                key = f"{low}:{high}"
                existing = session.exec(
                    select(Conversation.id)
                    .where(Conversation.tenant_id == principal.tenant_id)
                    .where(Conversation.direct_key == key)
                ).first()
                if existing is not None:
                    return existing, False
            conversation = Conversation(
                tenant_id=principal.tenant_id,
                kind=(ConversationKind.DIRECT if direct else ConversationKind.GROUP).value,
                title=title,
                direct_key=key,
                created_by=principal.user_id,
            )
            session.add(conversation)
            session.flush()
            for user_id in [principal.user_id, *others]:
                session.add(ConversationMember(conversation_id=conversation.id, user_id=user_id))  # type: ignore[arg-type]
            try:
                session.commit()
            except IntegrityError:
                # The same 1:1 was created concurrently: answer with that one.
                session.rollback()
                winner = session.exec(
                    select(Conversation.id)
                    .where(Conversation.tenant_id == principal.tenant_id)
                    .where(Conversation.direct_key == key)
                ).first()
                if winner is None:
                    raise
                return winner, False
            return conversation.id, True  # type: ignore[return-value]

        conversation_id, created = await self._db.run(store)
        return await self.get(principal, conversation_id), created

    async def recipients(self, principal: Principal, conversation_id: int) -> list[int]:
        """The participants of a conversation the caller takes part in (NotFound otherwise)."""

        def load(session: Session) -> list[int]:
            require_participant(session, principal, conversation_id)
            return participant_ids(session, conversation_id)

        return await self._db.run(load)

    async def get(self, principal: Principal, conversation_id: int) -> ConversationView:
        def load(session: Session) -> ConversationView:
            require_participant(session, principal, conversation_id)
            return self._views(session, principal, [conversation_id])[0]

        return await self._db.run(load)

    async def list_for(self, principal: Principal) -> tuple[list[ConversationView], int]:
        """The caller's conversations in the active tenant, latest activity first, and
        their total unread count."""

        def load(session: Session) -> tuple[list[ConversationView], int]:
            ids = list(
                session.exec(
                    select(Conversation.id)
                    .join(
                        ConversationMember,
                        col(ConversationMember.conversation_id) == col(Conversation.id),
                    )
                    .where(Conversation.tenant_id == principal.tenant_id)
                    .where(ConversationMember.user_id == principal.user_id)
                ).all()
            )
            views = self._views(session, principal, ids)  # type: ignore[arg-type]
            views.sort(
                key=lambda v: (v.last_message.id if v.last_message else 0, v.id), reverse=True
            )
            return views, sum(v.unread_count for v in views)

        return await self._db.run(load)

    def _views(
        self, session: Session, principal: Principal, conversation_ids: list[int]
    ) -> list[ConversationView]:
        if not conversation_ids:
            return []
        conversations = session.exec(
            select(Conversation).where(col(Conversation.id).in_(conversation_ids))
        ).all()
        member_rows = session.exec(
            select(ConversationMember, User)
            .join(User, col(User.id) == col(ConversationMember.user_id))
            .where(col(ConversationMember.conversation_id).in_(conversation_ids))
            .order_by(col(User.id))
        ).all()
        participants: dict[int, list[Participant]] = {cid: [] for cid in conversation_ids}
        unread: dict[int, int] = {}
        for member, user in member_rows:
            participants[member.conversation_id].append(
                Participant(id=user.id, username=user.username, display_name=user.display_name)  # type: ignore[arg-type]
            )
            if member.user_id == principal.user_id:
                unread[member.conversation_id] = member.unread_count
        last_ids = [c.last_message_id for c in conversations if c.last_message_id is not None]
        last_messages = {
            message.conversation_id: message_body(message, user.display_name)
            for message, user in session.exec(
                select(Message, User)
                .join(User, col(User.id) == col(Message.sender_id))
                .where(col(Message.id).in_(last_ids))
            ).all()
        }
        return [
            ConversationView(
                id=c.id,  # type: ignore[arg-type]
                kind=c.kind,
                title=c.title,
                participants=participants[c.id],  # type: ignore[index]
                last_message=last_messages.get(c.id),  # type: ignore[arg-type]
                unread_count=unread.get(c.id, 0),  # type: ignore[arg-type]
                created_at=iso(c.created_at),  # type: ignore[arg-type]
            )
            for c in conversations
        ]
