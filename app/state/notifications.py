"""The notification bell: latest notifications and the unread count, live in every tab."""

from __future__ import annotations

import reflex as rx

from app.domain.errors import DomainError
from app.domain.principal import Principal
from app.runtime import get_runtime
from app.state import replies
from app.state.items import NotificationItem
from app.state.session import SessionState

# Vars only the page's store writes (assets/live_store.js): never set by the server.
LIVE_VARS = ("items", "unread_count", "badge")


class NotificationState(rx.State):
    # -- live: written by the page's store only ------------------------------------
    items: list[NotificationItem] = []
    unread_count: int = 0
    badge: str = "0"  # the unread count, "99+" past 99

    async def _principal(self) -> Principal | None:
        return await (await self.get_state(SessionState))._principal()

    # What a click changes comes back as notification:read, to every tab of the user.

    @rx.event
    async def mark_read(self, notification_id: int):  # type: ignore[no-untyped-def]
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        try:
            await get_runtime().notifications.mark_read(principal, notification_id)
        except DomainError as exc:
            return replies.refused(exc.message)
        return None

    @rx.event
    async def mark_all_read(self):  # type: ignore[no-untyped-def]
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        await get_runtime().notifications.mark_all_read(principal)
        return None
