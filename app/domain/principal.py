"""Who is calling, in which tenant, with which token."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from app.models import Role


@dataclass(frozen=True, slots=True)
class Membership:
    tenant_id: int
    tenant_name: str
    tenant_slug: str
    role: str


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    display_name: str
    tenant_id: int
    token_id: int
    expires_at: datetime
    memberships: tuple[Membership, ...]

    @property
    def membership(self) -> Membership:
        for membership in self.memberships:
            if membership.tenant_id == self.tenant_id:
                return membership
        raise LookupError("principal's active tenant is not among its memberships")

    @property
    def is_admin(self) -> bool:
        return self.membership.role == Role.ADMIN.value

    def in_tenant(self, tenant_id: int) -> Principal | None:
        """The same caller acting in another of their tenants, or None if not a member."""
        if any(m.tenant_id == tenant_id for m in self.memberships):
            return replace(self, tenant_id=tenant_id)
        return None
