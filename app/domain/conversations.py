"""Conversations: 1:1 and group, between members of the caller's active tenant.

A group's people manage it among themselves, as equals (a group has no owner): any
participant may rename it, add members of the tenant, remove another participant or leave.
A 1:1 is fixed: its two people and its name (the other person) never change. Whoever is
added reads the whole history and starts with nothing unread; whoever leaves or is removed
loses the history, the live events and the unread count at once. A group everyone has left
stays stored, out of everyone's reach.

Every change is stored, then announced as `chat:conversation` with the conversation as it
now is: "updated" to the participants who were there before and still are, "added" to the
people added, "removed" to the one who left or was removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from app.db import Database
from app.domain.errors import InvalidInput, NotFound
from app.domain.principal import Principal
from app.domain.typing import TypingTracker
from app.models import Conversation, ConversationKind, ConversationMember, Membership, Message, User
from app.realtime.events import (
    ChatConversationPayload,
    ChatMessageBody,
    ChatUnreadCountPayload,
    ConversationAction,
    ConversationBody,
    ConversationParticipantBody,
)
from app.realtime.service import RealtimeService
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
        id=message.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
        conversation_id=message.conversation_id,
        content=message.content,
        sender_id=message.sender_id,
        sender_name=sender_name,
        created_at=iso(message.created_at),
        edited_at=iso(message.edited_at),
        deleted=message.deleted_at is not None,
    )


def conversation_body(view: ConversationView) -> ConversationBody:
    return ConversationBody(
        id=view.id,
        kind=view.kind,
        title=view.title,
        participants=[
            ConversationParticipantBody(id=p.id, username=p.username, display_name=p.display_name)
            for p in view.participants
        ],
        created_at=view.created_at,
    )


@dataclass(frozen=True, slots=True)
class _Stored:
    """A change to a group, committed: the conversation as the caller now sees it, who
    hears of it how, and the unread total of whoever left with unread messages."""

    view: ConversationView
    audiences: dict[ConversationAction, list[int]] = field(default_factory=dict)
    leaver_total: tuple[int, int] | None = None  # (user id, their new total)


def require_participant(
    session: Session, principal: Principal, conversation_id: int, *, lock: bool = False
) -> Conversation:
    """The conversation if the caller takes part in it in their active tenant; else NotFound.

    One answer for "does not exist", "another tenant's" and "not yours": ids never leak.

    `lock`: the conversation's row stays locked until the transaction ends, so that the
    sends and membership changes of one conversation take turns on PostgreSQL as they do
    under SQLite's single writer, across processes too: a send's message id is then taken
    in the order of the commits, and a participant count read stays true until the write.
    (FOR NO KEY UPDATE: rows that merely refer to the conversation, a new message, do not
    wait for it. SQLite ignores the clause: its write lock already serialises writers.)
    """
    query = (
        select(Conversation)
        .join(ConversationMember, col(ConversationMember.conversation_id) == col(Conversation.id))
        .where(Conversation.id == conversation_id)
        .where(Conversation.tenant_id == principal.tenant_id)
        .where(ConversationMember.user_id == principal.user_id)
    )
    if lock:
        query = query.with_for_update(of=Conversation, key_share=True)
    row = session.exec(query).first()
    if row is None:
        raise NotFound("No such conversation.")
    return row


def require_group(
    session: Session, principal: Principal, conversation_id: int, refusal: str
) -> Conversation:
    """A group the caller takes part in, locked for a change (`require_participant`);
    NotFound as there (checked first, so a 1:1 of someone else is as unknown as any),
    InvalidInput with `refusal` for a 1:1."""
    conversation = require_participant(session, principal, conversation_id, lock=True)
    if conversation.kind != ConversationKind.GROUP.value:
        raise InvalidInput(refusal)
    return conversation


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


def unread_by_tenant(session: Session, user_id: int) -> dict[int, int]:
    """One user's unread total in each tenant they have unread messages in: for the hint on
    the workspace switcher, which shows the user their own counts only."""
    rows = session.exec(
        select(Conversation.tenant_id, func.sum(ConversationMember.unread_count))
        .join(Conversation, col(Conversation.id) == col(ConversationMember.conversation_id))
        .where(ConversationMember.user_id == user_id)
        .group_by(col(Conversation.tenant_id))
    ).all()
    return {tenant_id: int(total) for tenant_id, total in rows if total}


def _view_of(session: Session, principal: Principal, conversation_id: int) -> ConversationView:
    return conversation_views(session, principal, [conversation_id])[0]


def conversation_name(view: ConversationView, viewer_id: int) -> str:
    """What the viewer calls a conversation: its title, else the other participants' names
    (a 1:1 is named after the other person), else "Just you"."""
    others = [p.display_name for p in view.participants if p.id != viewer_id]
    return view.title or ", ".join(others) or "Just you"


def conversation_views(
    session: Session, principal: Principal, conversation_ids: list[int]
) -> list[ConversationView]:
    """The views of conversations the caller is known to take part in, as the caller sees
    them (their own unread count)."""
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
            Participant(id=user.id, username=user.username, display_name=user.display_name)  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
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
            id=c.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
            kind=c.kind,
            title=c.title,
            participants=participants[c.id],  # type: ignore[index]  # SQLModel types ids int | None; stored rows have one
            last_message=last_messages.get(c.id),  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
            unread_count=unread.get(c.id, 0),  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
            created_at=iso(c.created_at),
        )
        for c in conversations
    ]


class Conversations:
    def __init__(
        self,
        db: Database,
        service: RealtimeService,
        settings: Settings,
        typing: TypingTracker | None = None,
    ) -> None:
        self._db = db
        self._service = service
        self._settings = settings
        # Told of everyone who leaves, so no typing there is announced to or about them.
        self.typing = typing

    def clean_title(self, title: str | None) -> str | None:
        """Trimmed; blank is no title (a group is then named after its people)."""
        title = (title or "").strip() or None
        if title is not None and len(title) > self._settings.conversation_title_max_chars:
            raise InvalidInput(
                f"title is longer than {self._settings.conversation_title_max_chars} characters."
            )
        return title

    async def create(
        self, principal: Principal, participant_ids_: list[int], title: str | None
    ) -> tuple[ConversationView, bool]:
        """The new conversation and True; or an existing 1:1 between the same two and False."""
        title = self.clean_title(title)
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
            try:
                # The flush meets a concurrent twin's unique key (tenant, direct_key) first.
                session.add(conversation)
                session.flush()
                conversation_id = conversation.id
                assert conversation_id is not None  # flushed
                for user_id in [principal.user_id, *others]:
                    session.add(
                        ConversationMember(conversation_id=conversation_id, user_id=user_id)
                    )
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
            return conversation.id, True  # type: ignore[return-value]  # SQLModel types ids int | None; stored rows have one

        self._service.ensure_accepting()
        conversation_id, created = await self._db.run(store)
        view = await self.get(principal, conversation_id)
        if created:
            # Stored first: every participant's tabs and streams list it at once.
            await self._service.emit_conversation(
                tenant_id=principal.tenant_id,
                participant_ids=[p.id for p in view.participants],
                payload=ChatConversationPayload(
                    conversation_id=view.id, action="created", conversation=conversation_body(view)
                ),
            )
        return view, created

    async def rename(
        self, principal: Principal, conversation_id: int, title: str | None
    ) -> ConversationView:
        """A group's new title (None or blank: none); the same title again is accepted and
        announces nothing."""
        title = self.clean_title(title)

        def store(session: Session) -> _Stored:
            conversation = require_group(
                session, principal, conversation_id, "A 1:1 conversation cannot be renamed."
            )
            if conversation.title == title:
                return _Stored(_view_of(session, principal, conversation_id))
            conversation.title = title
            session.add(conversation)
            session.commit()
            return _Stored(
                _view_of(session, principal, conversation_id),
                {"updated": participant_ids(session, conversation_id)},
            )

        return await self._change(principal, store)

    async def add_people(
        self, principal: Principal, conversation_id: int, user_ids: list[int]
    ) -> ConversationView:
        """Members of the caller's tenant join a group (those already in it are left as
        they are); they read its whole history and start with nothing unread."""
        wanted = sorted(set(user_ids))
        if not wanted:
            raise InvalidInput("userIds must name at least one person.")
        most = self._settings.group_max_participants

        def store(session: Session) -> _Stored:
            conversation = require_group(
                session,
                principal,
                conversation_id,
                "A 1:1 conversation cannot take more people: start a group with them.",
            )
            present = participant_ids(session, conversation_id)
            joining = sorted(set(wanted) - set(present))
            if not joining:
                return _Stored(_view_of(session, principal, conversation_id))
            members = set(
                session.exec(
                    select(Membership.user_id)
                    .where(Membership.tenant_id == principal.tenant_id)
                    .where(col(Membership.user_id).in_(joining))
                ).all()
            )
            if members != set(joining):
                raise NotFound("No such user in this tenant.")
            if len(present) + len(joining) > most:
                raise InvalidInput(f"A conversation has at most {most} participants.")
            for user_id in joining:
                session.add(
                    ConversationMember(
                        conversation_id=conversation_id,
                        user_id=user_id,
                        last_read_message_id=conversation.last_message_id or 0,
                    )
                )
            try:
                session.commit()
            except IntegrityError:
                # Someone added some of them meanwhile: start again from what is stored.
                session.rollback()
                return store(session)
            return _Stored(
                _view_of(session, principal, conversation_id),
                {"updated": present, "added": joining},
            )

        return await self._change(principal, store)

    async def remove_person(
        self, principal: Principal, conversation_id: int, user_id: int
    ) -> ConversationView:
        """Any participant of a group may remove another; to remove yourself, `leave`."""
        if user_id == principal.user_id:
            raise InvalidInput("To remove yourself from a conversation, leave it.")

        def store(session: Session) -> _Stored:
            require_group(
                session,
                principal,
                conversation_id,
                "Nobody can be removed from a 1:1 conversation.",
            )
            return self._store_removal(session, principal, conversation_id, user_id)

        return await self._change(principal, store)

    async def leave(self, principal: Principal, conversation_id: int) -> None:
        """The caller leaves a group: its history, events and unread count are gone for
        them at once."""

        def store(session: Session) -> _Stored:
            require_group(
                session,
                principal,
                conversation_id,
                "A 1:1 conversation cannot be left; it stays between the two of you.",
            )
            return self._store_removal(session, principal, conversation_id, principal.user_id)

        await self._change(principal, store)

    def _store_removal(
        self, session: Session, principal: Principal, conversation_id: int, user_id: int
    ) -> _Stored:
        # One statement: the row and its unread count go together, whatever a send adds.
        removed = session.exec(
            delete(ConversationMember)
            .where(col(ConversationMember.conversation_id) == conversation_id)
            .where(col(ConversationMember.user_id) == user_id)
            .returning(col(ConversationMember.unread_count))
        ).first()
        if removed is None:  # never a participant, or removed meanwhile
            raise NotFound("No such participant in this conversation.")
        session.commit()
        leaver_total = None
        if removed[0]:
            total = unread_totals(session, principal.tenant_id, [user_id])[user_id]
            leaver_total = (user_id, total)
        return _Stored(
            _view_of(session, principal, conversation_id),
            {"updated": participant_ids(session, conversation_id), "removed": [user_id]},
            leaver_total,
        )

    async def _change(
        self, principal: Principal, store: Callable[[Session], _Stored]
    ) -> ConversationView:
        """Store a change to a group, then announce it: one event per audience."""
        self._service.ensure_accepting()
        stored = await self._db.run(store)
        body = conversation_body(stored.view)
        for action, user_ids in stored.audiences.items():
            await self._service.emit_conversation(
                tenant_id=principal.tenant_id,
                participant_ids=user_ids,
                payload=ChatConversationPayload(
                    conversation_id=body.id, action=action, conversation=body
                ),
            )
        if stored.leaver_total is not None:
            user_id, total = stored.leaver_total
            await self._service.emit_unread_count(
                tenant_id=principal.tenant_id,
                user_id=user_id,
                payload=ChatUnreadCountPayload(conversation_id=body.id, count=0, total=total),
            )
        gone = stored.audiences.get("removed")
        if gone and self.typing is not None:
            await self.typing.forget(principal.tenant_id, body.id, gone)
        return stored.view

    async def recipients(self, principal: Principal, conversation_id: int) -> list[int]:
        """The participants of a conversation the caller takes part in (NotFound otherwise)."""

        def load(session: Session) -> list[int]:
            require_participant(session, principal, conversation_id)
            return participant_ids(session, conversation_id)

        return await self._db.run(load)

    async def get(self, principal: Principal, conversation_id: int) -> ConversationView:
        def load(session: Session) -> ConversationView:
            require_participant(session, principal, conversation_id)
            return conversation_views(session, principal, [conversation_id])[0]

        return await self._db.run(load)

    async def unread_elsewhere(self, principal: Principal) -> dict[int, int]:
        """The caller's unread totals in their other workspaces (tenant id -> count)."""
        others = {m.tenant_id for m in principal.memberships} - {principal.tenant_id}
        if not others:
            return {}
        counts = await self._db.run(lambda s: unread_by_tenant(s, principal.user_id))
        return {tenant: n for tenant, n in counts.items() if tenant in others}

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
            views = conversation_views(session, principal, ids)  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
            views.sort(
                key=lambda v: (v.last_message.id if v.last_message else 0, v.id), reverse=True
            )
            return views, sum(v.unread_count for v in views)

        return await self._db.run(load)
