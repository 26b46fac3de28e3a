"""Demo data of DESIGN.md section 3, created when the database has no tenant yet."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.models import (
    Conversation,
    ConversationKind,
    ConversationMember,
    Membership,
    Message,
    Role,
    Tenant,
    User,
)
from app.security.passwords import hash_password

DEMO_TENANTS = {"acme": "Acme", "globex": "Globex"}
# username -> (display name, [(tenant slug, role)])
DEMO_USERS: dict[str, tuple[str, list[tuple[str, Role]]]] = {
    "alice": ("Alice", [("acme", Role.ADMIN)]),
    "bob": ("Bob", [("acme", Role.MEMBER)]),
    "carol": ("Carol", [("acme", Role.MEMBER), ("globex", Role.MEMBER)]),
    "dave": ("Dave", [("globex", Role.ADMIN)]),
    "erin": ("Erin", [("globex", Role.MEMBER)]),
}


def demo_password(username: str) -> str:
    return f"{username}-pass"


def seed_demo_data(session: Session) -> bool:
    """Create the demo tenants and users; False (and no change) if any tenant exists."""
    if session.exec(select(Tenant)).first() is not None:
        return False
    try:
        _create_demo_rows(session)
    except IntegrityError:
        # Another worker seeded at the same moment: its rows stand.
        session.rollback()
        return False
    return True


def _create_demo_rows(session: Session) -> None:
    # Hashed before the first write: argon2 takes a while, and SQLite's write lock, once the
    # first flush takes it, would be held through it while other workers seed and wait.
    password_hashes = {username: hash_password(demo_password(username)) for username in DEMO_USERS}
    tenants = {slug: Tenant(slug=slug, name=name) for slug, name in DEMO_TENANTS.items()}
    session.add_all(tenants.values())
    session.flush()
    users: dict[str, User] = {}
    for username, (display_name, memberships) in DEMO_USERS.items():
        user = User(
            username=username,
            display_name=display_name,
            password_hash=password_hashes[username],
            default_tenant_id=tenants[memberships[0][0]].id,
        )
        session.add(user)
        session.flush()
        users[username] = user
        for slug, role in memberships:
            session.add(Membership(user_id=user.id, tenant_id=tenants[slug].id, role=role.value))  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
    _create_demo_conversations(session, tenants["acme"], users)
    session.commit()


def _create_demo_conversations(session: Session, acme: Tenant, users: dict[str, User]) -> None:
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    direct = Conversation(
        tenant_id=acme.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
        kind=ConversationKind.DIRECT.value,
        direct_key=f"{min(alice.id, bob.id)}:{max(alice.id, bob.id)}",  # type: ignore[type-var]  # SQLModel types ids int | None; stored rows have one
        created_by=alice.id,
    )
    team = Conversation(
        tenant_id=acme.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
        kind=ConversationKind.GROUP.value,
        title="Acme team",
        created_by=alice.id,
    )
    session.add_all([direct, team])
    session.flush()
    for conversation, members in ((direct, (alice, bob)), (team, (alice, bob, carol))):
        for user in members:
            session.add(ConversationMember(conversation_id=conversation.id, user_id=user.id))  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
    welcome = Message(
        conversation_id=team.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
        tenant_id=acme.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
        sender_id=alice.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
        content="Welcome to the Acme team chat!",
    )
    session.add(welcome)
    session.flush()
    team.last_message_id = welcome.id
    session.add(team)
    session.flush()
    for user in (bob, carol):
        member = session.get(ConversationMember, (team.id, user.id))
        assert member is not None
        member.unread_count = 1
        session.add(member)
    alice_member = session.get(ConversationMember, (team.id, alice.id))
    assert alice_member is not None
    alice_member.last_read_message_id = welcome.id  # type: ignore[assignment]  # SQLModel types ids int | None; stored rows have one
    session.add(alice_member)
