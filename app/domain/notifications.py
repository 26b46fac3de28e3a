"""Notifications: an admin notifies a user or the whole tenant; users read them. The
server's own (mentions, unread 1:1 messages: app/domain/message_notifications.py) are
stored and announced by the same `deliver`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from app.db import Database
from app.domain.errors import Forbidden, InvalidInput, NotFound
from app.domain.principal import Principal
from app.models import Membership, Notification
from app.realtime.events import NotificationNewPayload, NotificationReadPayload
from app.realtime.service import RealtimeService
from app.settings import Settings
from app.timeutil import iso, utcnow

TYPE_PATTERN = re.compile(r"[a-z][a-z0-9_.:-]{0,39}")


@dataclass(frozen=True, slots=True)
class NotificationDraft:
    type: str
    title: str
    body: str
    link: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification for one user, validated (`Notifications.validate`)."""

    user_id: int
    draft: NotificationDraft


@dataclass(frozen=True, slots=True)
class NotificationPage:
    items: list[NotificationNewPayload]
    read_ids: frozenset[int]
    unread_count: int


def _payload(row: Notification, unread_count: int) -> NotificationNewPayload:
    return NotificationNewPayload(
        id=row.id,  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
        type=row.type,
        title=row.title,
        body=row.body,
        link=row.link,
        created_at=iso(row.created_at),
        unread_count=unread_count,
    )


def _unread_counts(session: Session, tenant_id: int, user_ids: list[int]) -> dict[int, int]:
    rows = session.exec(
        select(Notification.user_id, func.count())
        .where(Notification.tenant_id == tenant_id)
        .where(col(Notification.user_id).in_(user_ids))
        .where(col(Notification.read_at).is_(None))
        .group_by(col(Notification.user_id))
    ).all()
    counts = {user_id: 0 for user_id in user_ids}
    counts.update({user_id: count for user_id, count in rows})
    return counts


class Notifications:
    def __init__(self, db: Database, service: RealtimeService, settings: Settings) -> None:
        self._db = db
        self._service = service
        self._settings = settings

    def validate(self, draft: NotificationDraft) -> NotificationDraft:
        """Trimmed fields within the limits of settings, or InvalidInput saying which."""
        s = self._settings
        kind = draft.type.strip().lower()
        if not TYPE_PATTERN.fullmatch(kind):
            raise InvalidInput("type must be 1-40 characters: a-z, 0-9, '_', '.', ':', '-'.")
        title = draft.title.strip()
        if not title:
            raise InvalidInput("title must not be empty.")
        if len(title) > s.notification_title_max_chars:
            raise InvalidInput(f"title is longer than {s.notification_title_max_chars} characters.")
        body = draft.body.strip()
        if len(body) > s.notification_body_max_chars:
            raise InvalidInput(f"body is longer than {s.notification_body_max_chars} characters.")
        link = (draft.link or "").strip() or None
        if link is not None and (
            len(link) > s.notification_link_max_chars or not _is_safe_link(link)
        ):
            raise InvalidInput("link must be a path starting with '/' or an http(s) URL.")
        return NotificationDraft(type=kind, title=title, body=body, link=link)

    async def notify(
        self, actor: Principal, draft: NotificationDraft, *, user_id: int | None, whole_tenant: bool
    ) -> list[NotificationNewPayload]:
        """Store one notification per recipient, then tell each of them."""
        if not actor.is_admin:
            raise Forbidden("Only a tenant admin can send notifications.")
        if whole_tenant == (user_id is not None):
            raise InvalidInput("Give exactly one of userId or tenant: true.")
        draft = self.validate(draft)
        tenant_id = actor.tenant_id

        def recipients(session: Session) -> list[Delivery]:
            members = select(Membership.user_id).where(Membership.tenant_id == tenant_id)
            if user_id is not None:
                members = members.where(Membership.user_id == user_id)
            found = list(session.exec(members).all())
            if not found:
                raise NotFound("No such user in this tenant.")
            return [Delivery(recipient, draft) for recipient in found]

        return await self.deliver(tenant_id, recipients, created_by=actor.user_id)

    async def deliver(
        self,
        tenant_id: int,
        choose: Callable[[Session], list[Delivery]],
        *,
        created_by: int | None,
    ) -> list[NotificationNewPayload]:
        """Store the notifications `choose` picks (in the same transaction, so what it
        checked still holds when they are stored), then tell each recipient. `choose` is
        trusted with the tenant: every recipient must be a member of it."""
        self._service.ensure_accepting()

        def store(session: Session) -> list[tuple[int, NotificationNewPayload]]:
            deliveries = choose(session)
            if not deliveries:
                return []
            now = utcnow()
            rows = [
                Notification(
                    tenant_id=tenant_id,
                    user_id=delivery.user_id,
                    type=delivery.draft.type,
                    title=delivery.draft.title,
                    body=delivery.draft.body,
                    link=delivery.draft.link,
                    created_by=created_by,
                    created_at=now,
                )
                for delivery in deliveries
            ]
            session.add_all(rows)
            session.commit()
            counts = _unread_counts(session, tenant_id, sorted({row.user_id for row in rows}))
            return [(row.user_id, _payload(row, counts[row.user_id])) for row in rows]

        stored = await self._db.run(store)
        for recipient, payload in stored:
            await self._service.emit_notification(
                tenant_id=tenant_id, user_id=recipient, payload=payload
            )
        return [payload for _, payload in stored]

    async def list_for(
        self, principal: Principal, *, limit: int, before: int | None, unread_only: bool = False
    ) -> NotificationPage:
        """Newest first; `before` is the id of the oldest notification already shown."""

        def load(session: Session) -> NotificationPage:
            query = (
                select(Notification)
                .where(Notification.tenant_id == principal.tenant_id)
                .where(Notification.user_id == principal.user_id)
            )
            if before is not None:
                query = query.where(col(Notification.id) < before)
            if unread_only:
                query = query.where(col(Notification.read_at).is_(None))
            rows = session.exec(query.order_by(col(Notification.id).desc()).limit(limit)).all()
            unread = _unread_counts(session, principal.tenant_id, [principal.user_id])
            count = unread[principal.user_id]
            return NotificationPage(
                items=[_payload(row, count) for row in rows],
                read_ids=frozenset(row.id for row in rows if row.read_at is not None),  # type: ignore[misc]  # SQLModel types ids int | None; stored rows have one
                unread_count=count,
            )

        return await self._db.run(load)

    async def mark_read(
        self, principal: Principal, notification_id: int
    ) -> NotificationReadPayload:
        return (await self.follow(principal, notification_id))[0]

    async def follow(
        self, principal: Principal, notification_id: int
    ) -> tuple[NotificationReadPayload, str | None]:
        """A click on a notification: read, and where its link goes (None: nowhere)."""

        def store(session: Session) -> tuple[bool, int, str | None]:
            row = session.get(Notification, notification_id)
            if (
                row is None
                or row.user_id != principal.user_id
                or row.tenant_id != principal.tenant_id
            ):
                raise NotFound("No such notification.")
            changed = row.read_at is None
            if changed:
                row.read_at = utcnow()
                session.add(row)
                session.commit()
            unread = _unread_counts(session, principal.tenant_id, [principal.user_id])
            return changed, unread[principal.user_id], row.link

        changed, unread_count, link = await self._db.run(store)
        payload = NotificationReadPayload(id=notification_id, all=False, unread_count=unread_count)
        if changed:
            await self._service.emit_notification_read(
                tenant_id=principal.tenant_id, user_id=principal.user_id, payload=payload
            )
        return payload, link

    async def mark_all_read(self, principal: Principal) -> NotificationReadPayload:
        def store(session: Session) -> int:
            result = session.exec(
                update(Notification)
                .where(col(Notification.tenant_id) == principal.tenant_id)
                .where(col(Notification.user_id) == principal.user_id)
                .where(col(Notification.read_at).is_(None))
                .values(read_at=utcnow())
            )
            session.commit()
            return result.rowcount

        changed = await self._db.run(store)
        payload = NotificationReadPayload(id=None, all=True, unread_count=0)
        if changed:
            await self._service.emit_notification_read(
                tenant_id=principal.tenant_id, user_id=principal.user_id, payload=payload
            )
        return payload


def _is_safe_link(link: str) -> bool:
    if link.startswith("/") and not link.startswith("//"):
        return not any(ch in link for ch in "\r\n\t\\")
    parts = urlsplit(link)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)
