"""Sign in, resolve a bearer token, sign out."""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, col, delete, select

from app.db import Database
from app.domain.errors import Forbidden, NotAMember, NotAuthenticated, RateLimited, SignInBusy
from app.domain.principal import Membership, Principal
from app.models import AuthToken, Tenant, User
from app.models import Membership as MembershipRow
from app.realtime.client import CloseReason
from app.realtime.manager import ConnectionManager
from app.security.login_throttle import Refused, SignInThrottle
from app.security.passwords import HashPoolFull, PasswordHashPool, needs_rehash
from app.security.tokens import digests_match, new_token, token_digest
from app.settings import Settings
from app.timeutil import utcnow

BAD_CREDENTIALS = "Invalid username or password."
SIGN_IN_BUSY = "Too many sign-ins at once; try again in a moment."
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
        Membership(tenant_id=t.id, tenant_name=t.name, tenant_slug=t.slug, role=m.role)  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
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
        # Argon2 is deliberately slow: off the event loop, on a few threads, with a bounded
        # line (a flood of sign-ins must not take every core from the other requests).
        self.password_hashes = PasswordHashPool(
            workers=settings.password_hash_workers, queue=settings.password_hash_queue
        )

    async def sign_in(
        self, username: str, password: str, address: str, tenant_id: int | None = None
    ) -> TokenGrant:
        username = username.strip().lower()
        # The slot is taken before the hash, so parallel guesses cannot all get past the
        # budget; a right password refunds it.
        reservation = await self._throttle.reserve(username, address)
        if isinstance(reservation, Refused):
            raise RateLimited(
                "Too many failed sign-in attempts; try again later.", reservation.retry_after
            )
        try:
            user, new_hash = await self._check_password(username, password)
        except NotAuthenticated:
            await self._throttle.failed(reservation)
            raise
        except Exception:
            # No verdict (busy, database or Redis down): the attempt is not a failure.
            # A cancelled attempt (BaseException) keeps its slot: it is a failure for all
            # anyone can tell, and refunding it would let disconnects buy extra guesses.
            await self._throttle.release(reservation)
            raise
        await self._throttle.succeeded(reservation)
        raw_token = new_token()
        principal, ended = await self._db.run(
            lambda s: self._issue(s, user, raw_token, tenant_id, new_hash)
        )
        self._end_sessions(ended)
        return TokenGrant(
            access_token=raw_token,
            expires_in=self._settings.token_ttl_seconds,
            principal=principal,
        )

    async def _check_password(self, username: str, password: str) -> tuple[User, str | None]:
        """The active user with this username and password, else NotAuthenticated; and a
        new hash of the password when the stored one has outdated parameters. An unknown
        username costs one full hash too (see `verify_password`)."""
        user = await self._db.run(
            lambda s: s.exec(select(User).where(User.username == username)).first()
        )
        password_hash = user.password_hash if user is not None and user.is_active else None
        try:
            valid = await self.password_hashes.verify(password, password_hash)
        except HashPoolFull as exc:
            raise SignInBusy(SIGN_IN_BUSY, exc.retry_after) from None
        if not valid or user is None:
            raise NotAuthenticated(BAD_CREDENTIALS)
        new_hash = None
        if needs_rehash(user.password_hash):
            # Best effort: a busy pool leaves it for a later sign-in.
            with contextlib.suppress(HashPoolFull):
                new_hash = await self.password_hashes.hash(password)
        return user, new_hash

    def _issue(
        self,
        session: Session,
        user: User,
        raw_token: str,
        tenant_id: int | None,
        new_password_hash: str | None = None,
    ) -> tuple[Principal, list[int]]:
        """A new token, and the ids of the user's tokens it pushed past the cap. The user's
        sign-ins take turns here (the row lock, on PostgreSQL; SQLite has one writer), so
        that each one's pruning sees the tokens of those before it."""
        session.exec(
            select(User.id).where(User.id == user.id).with_for_update(key_share=True)
        ).all()
        memberships = memberships_of(session, user.id)  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
        member_of = {m.tenant_id for m in memberships}
        if not memberships:
            raise Forbidden("This account belongs to no tenant.")
        if tenant_id is not None and tenant_id not in member_of:
            raise NotAMember()
        if tenant_id is None:
            tenant_id = (
                user.default_tenant_id
                if user.default_tenant_id in member_of
                else memberships[0].tenant_id
            )
        token = AuthToken(
            token_hash=token_digest(raw_token),
            user_id=user.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
            tenant_id=tenant_id,
            expires_at=utcnow() + timedelta(seconds=self._settings.token_ttl_seconds),
        )
        session.add(token)
        if new_password_hash is not None:
            row = session.get(User, user.id)
            if row is not None:
                row.password_hash = new_password_hash
                session.add(row)
        session.flush()
        ended = self._prune_tokens(session, user.id)  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
        session.commit()
        principal = Principal(
            user_id=user.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
            username=user.username,
            display_name=user.display_name,
            tenant_id=tenant_id,
            token_id=token.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
            expires_at=token.expires_at,
            memberships=memberships,
        )
        return principal, ended

    def _prune_tokens(self, session: Session, user_id: int) -> list[int]:
        """Keep the user's newest `max_tokens_per_user` live tokens; delete the older ones
        and every revoked or expired one (they can never sign anyone in again). Without
        this, each sign-in added a row for good. Returns the ids of the live ones deleted.
        Rows are only added here, so a user never has more rows than the cap."""
        cap = max(1, self._settings.max_tokens_per_user)
        now = utcnow()
        rows = session.exec(
            select(AuthToken.id, AuthToken.revoked_at, AuthToken.expires_at)
            .where(AuthToken.user_id == user_id)
            .order_by(col(AuthToken.id).desc())
        ).all()
        live = [
            token
            for token, revoked_at, expires_at in rows
            if revoked_at is None and expires_at > now
        ]
        dead = [
            token
            for token, revoked_at, expires_at in rows
            if revoked_at is not None or expires_at <= now
        ]
        over_cap = live[cap:]
        if over_cap or dead:
            session.exec(delete(AuthToken).where(col(AuthToken.id).in_(over_cap + dead)))
        return over_cap  # type: ignore[return-value]  # SQLModel types ids int | None; stored rows have one

    def _end_sessions(self, token_ids: list[int]) -> None:
        """These tokens are gone: stop trusting cached checks of them at once and close the
        streams and tabs they opened here (other processes: within a heartbeat)."""
        if not token_ids:
            return
        ended = set(token_ids)
        self._forget_where(lambda principal: principal.token_id in ended)
        self._manager.close_where(lambda c: c.session_ref in ended, CloseReason.SESSION_ENDED)

    async def switch_tenant(self, principal: Principal, tenant_id: int) -> TokenGrant:
        """A new token for another of the caller's tenants; the old token is revoked (its
        streams and tabs close: they belonged to the other tenant)."""
        if principal.in_tenant(tenant_id) is None:
            raise NotAMember()

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
        switched, ended = await self._db.run(lambda s: self._issue(s, user, raw_token, tenant_id))
        self._end_sessions(ended)
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
        return await self.principal_for_digest(token_digest(raw_token))

    async def principal_for_digest(self, digest: str) -> Principal | None:
        """The same, for a token known only by its SHA-256 digest: a browser tab's state
        keeps the digest, never the token. No public entry point calls this (each hashes
        what it is given), so a digest read from a store is not a credential."""
        if len(digest) != 64:
            return None
        cached = self._principals.get(digest)
        if cached is not None:
            known, valid_until = cached
            if time.monotonic() < valid_until and known.expires_at > utcnow():
                return known
            del self._principals[digest]
        principal = await self._db.run(lambda s: self._resolve(s, digest))
        if principal is not None and self._settings.auth_cache_seconds > 0:
            self._principals[digest] = (
                principal,
                time.monotonic() + self._settings.auth_cache_seconds,
            )
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
        memberships = memberships_of(session, user.id)  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
        if all(m.tenant_id != token.tenant_id for m in memberships):
            return None  # removed from the tenant this session was for
        return Principal(
            user_id=user.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
            username=user.username,
            display_name=user.display_name,
            tenant_id=token.tenant_id,
            token_id=token.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
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
            return set(rows)  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one

        return wanted - await self._db.run(still_valid)

    async def lost_memberships(self, pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
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
