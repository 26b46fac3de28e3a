"""Sign in, resolve a bearer token, sign out."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

import anyio.to_thread
from sqlmodel import Session, col, select

from app.db import Database
from app.domain.errors import Forbidden, NotAuthenticated, RateLimited
from app.domain.principal import Membership, Principal
from app.models import AuthToken, Tenant, User
from app.models import Membership as MembershipRow
from app.realtime.client import CloseReason
from app.realtime.manager import ConnectionManager
from app.security.login_throttle import SignInThrottle
from app.security.passwords import verify_password
from app.security.tokens import digests_match, new_token, token_digest
from app.settings import Settings
from app.timeutil import utcnow

BAD_CREDENTIALS = "Invalid username or password."
_PRINCIPAL_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class TokenGrant:
    access_token: str
    expires_in: int
    principal: Principal


def memberships_of(session: Session, user_id: int) -> tuple[Membership, ...]:
    rows = session.exec(
        select(MembershipRow, Tenant)
        .join(Tenant, col(Tenant.id) == col(MembershipRow.tenant_id))
        .where(MembershipRow.user_id == user_id)
        .order_by(col(MembershipRow.id))
    ).all()
    return tuple(
        Membership(tenant_id=t.id, tenant_name=t.name, tenant_slug=t.slug, role=m.role)  # type: ignore[arg-type]
        for m, t in rows
    )


class Accounts:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        throttle: SignInThrottle,
        manager: ConnectionManager,
    ) -> None:
        self._db = db
        self._settings = settings
        self._throttle = throttle
        self._manager = manager
        # token digest -> (principal, valid until on the monotonic clock). Profiled: two ORM
        # queries per request were most of a publish's CPU. A token revoked by another
        # process stays usable here for at most `auth_cache_seconds`; this process's own
        # sign-outs evict at once, and streams are re-checked in the database every heartbeat.
        self._principals: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def sign_in(
        self, username: str, password: str, address: str, tenant_id: int | None = None
    ) -> TokenGrant:
        username = username.strip().lower()
        keys = (f"user:{username}", f"ip:{address}")
        retry_after = await self._throttle.retry_after(keys)
        if retry_after is not None:
            raise RateLimited("Too many failed sign-in attempts; try again later.", retry_after)

        user = await self._db.run(
            lambda s: s.exec(select(User).where(User.username == username)).first()
        )
        password_hash = user.password_hash if user is not None and user.is_active else None
        # Argon2 is deliberately slow: keep it off the event loop.
        valid = await anyio.to_thread.run_sync(verify_password, password, password_hash)
        if not valid or user is None:
            await self._throttle.record_failure(keys)
            raise NotAuthenticated(BAD_CREDENTIALS)
        await self._throttle.record_success(keys[0])
        raw_token = new_token()
        principal = await self._db.run(lambda s: self._issue(s, user, raw_token, tenant_id))
        return TokenGrant(
            access_token=raw_token,
            expires_in=self._settings.token_ttl_seconds,
            principal=principal,
        )

    def _issue(
        self, session: Session, user: User, raw_token: str, tenant_id: int | None
    ) -> Principal:
        memberships = memberships_of(session, user.id)  # type: ignore[arg-type]
        member_of = {m.tenant_id for m in memberships}
        if not memberships:
            raise Forbidden("This account belongs to no tenant.")
        if tenant_id is not None and tenant_id not in member_of:
            raise Forbidden("You are not a member of that tenant.")
        if tenant_id is None:
            tenant_id = (
                user.default_tenant_id
                if user.default_tenant_id in member_of
                else memberships[0].tenant_id
            )
        token = AuthToken(
            token_hash=token_digest(raw_token),
            user_id=user.id,  # type: ignore[arg-type]
            tenant_id=tenant_id,
            expires_at=utcnow() + timedelta(seconds=self._settings.token_ttl_seconds),
        )
        session.add(token)
        session.commit()
        return Principal(
            user_id=user.id,  # type: ignore[arg-type]
            username=user.username,
            display_name=user.display_name,
            tenant_id=tenant_id,
            token_id=token.id,  # type: ignore[arg-type]
            expires_at=token.expires_at,
            memberships=memberships,
        )

    async def switch_tenant(self, principal: Principal, tenant_id: int) -> TokenGrant:
        """A new token for another of the caller's tenants; the old token is revoked (its
        streams and tabs close: they belonged to the other tenant)."""
        if principal.in_tenant(tenant_id) is None:
            raise Forbidden("You are not a member of that tenant.")

        def load_user(session: Session) -> User:
            user = session.get(User, principal.user_id)
            if user is None:
                raise NotAuthenticated("This account no longer exists.")
            user.default_tenant_id = tenant_id
            session.add(user)
            session.commit()
            return user

        user = await self._db.run(load_user)
        raw_token = new_token()
        switched = await self._db.run(lambda s: self._issue(s, user, raw_token, tenant_id))
        await self.sign_out(principal)
        return TokenGrant(
            access_token=raw_token,
            expires_in=self._settings.token_ttl_seconds,
            principal=switched,
        )

    async def principal_for_token(self, raw_token: str) -> Principal | None:
        """The caller behind a token, or None when it is unknown, revoked or expired."""
        if not raw_token or len(raw_token) > 256:
            return None
        digest = token_digest(raw_token)
        cached = self._principals.get(digest)
        if cached is not None:
            principal, valid_until = cached
            if time.monotonic() < valid_until and principal.expires_at > utcnow():
                return principal
            del self._principals[digest]
        principal = await self._db.run(lambda s: self._resolve(s, digest))
        if principal is not None and self._settings.auth_cache_seconds > 0:
            self._principals[digest] = (principal, time.monotonic() + self._settings.auth_cache_seconds)
            if len(self._principals) > _PRINCIPAL_CACHE_SIZE:
                self._principals.popitem(last=False)
        return principal

    def forget_token(self, token_id: int) -> None:
        """Stop trusting a cached check of this token (it was revoked or ended)."""
        self._forget_where(lambda principal: principal.token_id == token_id)

    def forget_user(self, user_id: int) -> None:
        """Stop trusting every cached check of this user's tokens: their memberships changed,
        and a cached principal would still let a token of another tenant pick the old one."""
        self._forget_where(lambda principal: principal.user_id == user_id)

    def _forget_where(self, matches: Callable[[Principal], bool]) -> None:
        for digest in [d for d, (p, _) in self._principals.items() if matches(p)]:
            del self._principals[digest]

    def end_membership_sessions(self, user_id: int, tenant_id: int) -> int:
        """The user is no longer a member of the tenant (already committed): forget their
        cached principals and close their streams and tabs in it, whatever token opened them
        (a stream of another tenant's token can be in this tenant through `?tenant=`)."""
        self.forget_user(user_id)
        return self._manager.close_where(
            lambda c: c.user_id == user_id and c.tenant_id == tenant_id,
            CloseReason.SESSION_ENDED,
        )

    def _resolve(self, session: Session, digest: str) -> Principal | None:
        row = session.exec(
            select(AuthToken, User)
            .join(User, col(User.id) == col(AuthToken.user_id))
            .where(AuthToken.token_hash == digest)
        ).first()
        if row is None:
            return None
        token, user = row
        if not digests_match(token.token_hash, digest):
            return None
        if token.revoked_at is not None or token.expires_at <= utcnow() or not user.is_active:
            return None
        memberships = memberships_of(session, user.id)  # type: ignore[arg-type]
        if all(m.tenant_id != token.tenant_id for m in memberships):
            return None  # removed from the tenant this session was for
        return Principal(
            user_id=user.id,  # type: ignore[arg-type]
            username=user.username,
            display_name=user.display_name,
            tenant_id=token.tenant_id,
            token_id=token.id,  # type: ignore[arg-type]
            expires_at=token.expires_at,
            memberships=memberships,
        )

    async def sign_out(self, principal: Principal) -> None:
        """Revoke the token, then close every open stream that uses it."""

        def revoke(session: Session) -> None:
            token = session.get(AuthToken, principal.token_id)
            if token is not None and token.revoked_at is None:
                token.revoked_at = utcnow()
                session.add(token)
                session.commit()

        await self._db.run(revoke)
        self.forget_token(principal.token_id)
        self._manager.close_where(
            lambda c: c.session_ref == principal.token_id, CloseReason.SESSION_ENDED
        )

    async def ended_sessions(self, token_ids: Iterable[int]) -> set[int]:
        """Which of these tokens were revoked (by any process), expired, lost their user, or
        lost the membership of the tenant they were issued for."""
        wanted = set(token_ids)
        if not wanted:
            return set()

        def still_valid(session: Session) -> set[int]:
            rows = session.exec(
                select(AuthToken.id)
                .join(User, col(User.id) == col(AuthToken.user_id))
                .join(
                    MembershipRow,
                    (col(MembershipRow.user_id) == col(AuthToken.user_id))
                    & (col(MembershipRow.tenant_id) == col(AuthToken.tenant_id)),
                )
                .where(col(AuthToken.id).in_(wanted))
                .where(col(AuthToken.revoked_at).is_(None))
                .where(AuthToken.expires_at > utcnow())
                .where(col(User.is_active).is_(True))
            ).all()
            return set(rows)  # type: ignore[arg-type]

        return wanted - await self._db.run(still_valid)

    async def lost_memberships(
        self, pairs: Iterable[tuple[int, int]]
    ) -> set[tuple[int, int]]:
        """Which of these (user id, tenant id) memberships no longer exist (removed by any
        process). A client's tenant is not always its token's: `?tenant=` picks another."""
        wanted = set(pairs)
        if not wanted:
            return set()
        user_ids = {user_id for user_id, _ in wanted}

        def existing(session: Session) -> set[tuple[int, int]]:
            rows = session.exec(
                select(MembershipRow.user_id, MembershipRow.tenant_id).where(
                    col(MembershipRow.user_id).in_(user_ids)
                )
            ).all()
            return {(user_id, tenant_id) for user_id, tenant_id in rows}

        return wanted - await self._db.run(existing)
