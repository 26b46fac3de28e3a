"""The notification bell: latest notifications and the unread count, live in every tab."""

from __future__ import annotations

import dataclasses
from typing import Any

import reflex as rx

from app.domain.errors import DomainError
from app.domain.principal import Principal
from app.runtime import get_runtime
from app.state import replies
from app.state.items import NotificationItem, notification_item
from app.state.session import SessionState

SHOWN = 20


class NotificationState(rx.State):
    items: list[NotificationItem] = []
    unread_count: int = 0

    @rx.var
    def badge(self) -> str:
        return "99+" if self.unread_count > 99 else str(self.unread_count)

    async def _load_snapshot(self, principal: Principal) -> None:
        page = await get_runtime().notifications.list_for(principal, limit=SHOWN, before=None)
        self.items = [
            notification_item(item.to_data(), read=item.id in page.read_ids) for item in page.items
        ]
        self.unread_count = page.unread_count

    def _apply_event(self, event_type: str, data: dict[str, Any]) -> None:
        if event_type == "notification:new":
            if not any(n.id == data["id"] for n in self.items):
                self.items = [notification_item(data), *self.items][:SHOWN]
        elif event_type == "notification:read":
            self.items = [
                dataclasses.replace(n, read=True) if data["all"] or n.id == data["id"] else n
                for n in self.items
            ]
        self.unread_count = data["unreadCount"]

    async def _principal(self) -> Principal | None:
        return await (await self.get_state(SessionState))._principal()

    @rx.event
    async def mark_read(self, notification_id: int):  # type: ignore[no-untyped-def]
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        try:
            result = await get_runtime().notifications.mark_read(principal, notification_id)
        except DomainError as exc:
            return replies.refused(exc.message)
        self._apply_event("notification:read", result.to_data())
        return None

    @rx.event
    async def mark_all_read(self):  # type: ignore[no-untyped-def]
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        result = await get_runtime().notifications.mark_all_read(principal)
        self._apply_event("notification:read", result.to_data())
        return None
