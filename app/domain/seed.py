"""Demo data of DESIGN.md section 3, created when the database has no tenant yet."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.models import Membership, Role, Tenant, User
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
    tenants = {slug: Tenant(slug=slug, name=name) for slug, name in DEMO_TENANTS.items()}
    session.add_all(tenants.values())
    session.flush()
    for username, (display_name, memberships) in DEMO_USERS.items():
        user = User(
            username=username,
            display_name=display_name,
            password_hash=hash_password(demo_password(username)),
            default_tenant_id=tenants[memberships[0][0]].id,
        )
        session.add(user)
        session.flush()
        for slug, role in memberships:
            session.add(Membership(user_id=user.id, tenant_id=tenants[slug].id, role=role.value))  # type: ignore[arg-type]
    session.commit()
