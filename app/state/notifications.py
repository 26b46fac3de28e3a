"""The notification bell: latest notifications and the unread count, live in every tab."""

from __future__ import annotations

import reflex as rx

from app import routes
from app.domain.errors import DomainError
from app.domain.principal import Principal
from app.runtime import get_runtime
from app.state import replies
from app.state.chat import ChatState
from app.state.items import NotificationItem
from app.state.session import SessionState

# Vars only the page's store writes (assets/live_store.js): never set by the server.
LIVE_VARS = ("items", "unread_count", "badge")


class NotificationState(rx.State):
    # -- live: written by the page's store only ------------------------------------
    items: rx.Field[list[NotificationItem]] = rx.field(default_factory=list)
    unread_count: int = 0
    badge: str = "0"  # the unread count, "99+" past 99

    async def _principal(self) -> Principal | None:
        return await (await self.get_state(SessionState))._principal()

    # What a click changes comes back as notification:read, to every tab of the user.

    @rx.event
    async def mark_read(self, notification_id: int):
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        try:
            await get_runtime().notifications.mark_read(principal, notification_id)
        except DomainError as exc:
            return replies.refused(exc.message)
        return None

    @rx.event
    async def mark_all_read(self):
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        await get_runtime().notifications.mark_all_read(principal)
        return None

    @rx.event
    async def open_notification(self, notification_id: int):
        """A click on a notification: read in every tab, and its link followed (an in-app
        link to a conversation opens it here; another path of the app is navigated to; an
        outside link opens in a new tab)."""
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        try:
            _, link = await get_runtime().notifications.follow(principal, notification_id)
        except DomainError as exc:
            return replies.refused(exc.message)
        if not link:
            return None
        conversation_id = routes.conversation_in_link(link)
        if conversation_id is not None:
            message_id = routes.message_in_link(link)
            if message_id is not None:
                return ChatState.open_message(conversation_id, message_id)  # type: ignore[operator]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
            return ChatState.open_conversation(conversation_id)  # type: ignore[operator]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
        if link.startswith("/"):
            return rx.redirect(link)
        return rx.redirect(link, is_external=True)
