"""The members of a tenant: who they are, and an admin removing one of them.

Removal is the one path by which someone loses a tenant while signed in, so it ends
everything they had open there: the membership row goes, the tokens issued for that tenant
are revoked in the same transaction (re-adding the person later must not bring an old
session back), and only after the commit are their cached checks forgotten and their
streams and tabs in the tenant closed. Closing those clients is what turns them offline for
the tenant (presence follows the clients, after its usual grace period). What they wrote
stays: the history belongs to the tenant. Other processes catch up at their next session
sweep (`SessionSweep.end_stale`, app/domain/sessions.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from app.db import Database
from app.domain.accounts import Accounts
from app.domain.errors import Conflict, Forbidden, NotFound
from app.domain.principal import Principal
from app.models import AuthToken, Membership, Role, Tenant, User
from app.timeutil import iso, utcnow

NOT_A_MEMBER = "No such member in this tenant."


@dataclass(frozen=True, slots=True)
class MemberView:
    user_id: int
    username: str
    display_name: str
    role: str
    joined_at: str | None


class Members:
    def __init__(self, db: Database, accounts: Accounts) -> None:
        self._db = db
        self._accounts = accounts

    async def list_for(self, principal: Principal) -> list[MemberView]:
        """Everyone in the caller's active tenant, by display name."""
        tenant_id = principal.tenant_id

        def load(session: Session) -> list[MemberView]:
            rows = session.exec(
                select(User, Membership)
                .join(Membership, col(Membership.user_id) == col(User.id))
                .where(Membership.tenant_id == tenant_id)
                .order_by(col(User.display_name), col(User.id))
            ).all()
            return [_view(user, membership) for user, membership in rows]

        return await self._db.run(load)

    async def remove(self, actor: Principal, user_id: int) -> None:
        """Remove `user_id` from the actor's active tenant (tenant admins only).

        NotFound for anyone who is not a member of that tenant, users of other tenants
        included, so the answer never tells whether an id exists. Removing yourself is a
        Conflict: another admin does it, which also means a tenant can never lose
        its last admin this way.
        """
        if not actor.is_admin:
            raise Forbidden("Only a tenant admin can remove members.")
        if user_id == actor.user_id:
            raise Conflict("You cannot remove yourself; another admin of this tenant can.")
        tenant_id = actor.tenant_id
        await self._db.run(lambda s: _delete_membership(s, actor.user_id, user_id, tenant_id))
        self._accounts.end_membership_sessions(user_id, tenant_id)


def _delete_membership(session: Session, actor_id: int, user_id: int, tenant_id: int) -> None:
    """Delete the membership, revoke the tenant's tokens of that user, and repoint their
    default tenant: one transaction, so no one sees half a removal."""
    # Removals in one tenant take turns (on PostgreSQL; SQLite has one writer anyway): under
    # READ COMMITTED, two admins removing each other would each still see their own
    # admin row, and both removals would succeed. NO KEY UPDATE: rows that merely refer
    # to the tenant (a message sent meanwhile) do not wait.
    session.exec(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update(key_share=True))
    admin = aliased(Membership)
    # The actor's admin role is checked inside the DELETE itself: two admins removing each
    # other at the same moment cannot both succeed and leave the tenant with none.
    actor_is_admin = exists().where(
        col(admin.tenant_id) == tenant_id,
        col(admin.user_id) == actor_id,
        col(admin.role) == Role.ADMIN.value,
    )
    result = session.exec(
        delete(Membership)
        .where(col(Membership.tenant_id) == tenant_id)
        .where(col(Membership.user_id) == user_id)
        .where(actor_is_admin)
    )
    if result.rowcount != 1:
        session.rollback()
        if not session.exec(select(actor_is_admin)).one():
            raise Forbidden("Only a tenant admin can remove members.")
        raise NotFound(NOT_A_MEMBER)
    session.exec(
        update(AuthToken)
        .where(col(AuthToken.user_id) == user_id)
        .where(col(AuthToken.tenant_id) == tenant_id)
        .where(col(AuthToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    user = session.get(User, user_id)
    if user is not None and user.default_tenant_id == tenant_id:
        user.default_tenant_id = session.exec(
            select(Membership.tenant_id)
            .where(Membership.user_id == user_id)
            .order_by(col(Membership.id))
        ).first()
        session.add(user)
    session.commit()


def _view(user: User, membership: Membership) -> MemberView:
    joined: datetime | None = membership.created_at
    return MemberView(
        user_id=user.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
        username=user.username,
        display_name=user.display_name,
        role=membership.role,
        joined_at=iso(joined),
    )
