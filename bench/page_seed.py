"""The page-path benchmark's people: N users of Acme, one tab each, in rooms, with tokens.

Written straight into a fresh database before the server starts (with the demo data, so
alice is there to post): signing 1,000 users in through the API would hash 1,000 passwords
and trip the sign-in throttle, and what is measured starts after sign-in anyway. Tokens are
made as the app makes them (random, stored as their SHA-256 only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from app.db import create_schema, make_engine
from app.domain.seed import seed_demo_data
from app.models import (
    AuthToken,
    Conversation,
    ConversationKind,
    ConversationMember,
    Membership,
    Tenant,
    User,
)
from app.security.passwords import hash_password
from app.security.tokens import new_token, token_digest
from app.timeutil import utcnow


@dataclass(frozen=True)
class Room:
    conversation_id: int
    member_tokens: tuple[str, ...]  # one per bench user in the room, in order


@dataclass(frozen=True)
class PageBenchPeople:
    alice_token: str
    rooms: tuple[Room, ...]

    @property
    def tab_tokens(self) -> list[tuple[str, int]]:
        """(token, conversation id) for every tab: each bench user opens their room."""
        return [(t, room.conversation_id) for room in self.rooms for t in room.member_tokens]


def seed_page_bench(database_url: str, users: int, rooms: int) -> PageBenchPeople:
    """`users` users of Acme split evenly over `rooms` group rooms, alice in every room."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            create_schema(engine)  # the engine the session is bound to
            seed_demo_data(session)
            acme = session.exec(select(Tenant).where(Tenant.slug == "acme")).one()
            alice = session.exec(select(User).where(User.username == "alice")).one()
            assert acme.id is not None and alice.id is not None
            # One hash for everyone: argon2 per user would take a minute and prove nothing.
            shared_hash = hash_password("bench-pass")
            expires = utcnow() + timedelta(days=1)
            per_room = max(1, users // rooms)
            built: list[Room] = []
            alice_token = _token(session, alice.id, acme.id, expires)
            for r in range(rooms):
                room = Conversation(
                    tenant_id=acme.id,
                    kind=ConversationKind.GROUP.value,
                    title=f"Bench room {r + 1}",
                    created_by=alice.id,
                )
                session.add(room)
                session.flush()
                assert room.id is not None
                session.add(ConversationMember(conversation_id=room.id, user_id=alice.id))
                tokens = []
                for i in range(per_room):
                    n = r * per_room + i + 1
                    user = User(
                        username=f"bench{n:05d}",
                        display_name=f"Bench {n}",
                        password_hash=shared_hash,
                        default_tenant_id=acme.id,
                    )
                    session.add(user)
                    session.flush()
                    assert user.id is not None
                    session.add(Membership(user_id=user.id, tenant_id=acme.id))
                    session.add(ConversationMember(conversation_id=room.id, user_id=user.id))
                    tokens.append(_token(session, user.id, acme.id, expires))
                built.append(Room(room.id, tuple(tokens)))
            session.commit()
            return PageBenchPeople(alice_token, tuple(built))
    finally:
        engine.dispose()


def _token(session: Session, user_id: int, tenant_id: int, expires_at: datetime) -> str:
    token = new_token()
    session.add(
        AuthToken(
            token_hash=token_digest(token),
            user_id=user_id,
            tenant_id=tenant_id,
            expires_at=expires_at,
        )
    )
    return token
