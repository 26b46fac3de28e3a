"""This tab as a client of the connection manager, like any /api/sse stream.

`listen` is started by the chat page's on_load. It registers the tab first, then loads the
snapshot, then applies every event (the same Event objects the HTTP streams encode) inside
`async with self`. Reflex cancels it when the tab's socket closes; its `finally` leaves
the manager, which is what presence hears. A reload keeps the client token, so listeners
are keyed by it outside state: a new one replaces any older one of the same tab.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import reflex as rx

from app import routes
from app.domain.principal import Principal
from app.realtime.client import ClientKind, CloseReason
from app.realtime.events import Event, EventType
from app.runtime import get_runtime
from app.state.chat import ChatState
from app.state.notifications import NotificationState
from app.state.presence import PresenceState
from app.state.session import SessionState

logger = logging.getLogger(__name__)

# How often the listener wakes without events, to forget typists who went silent.
TICK_SECONDS = 2.0
EVENT_LOG_SIZE = 50

_listeners: dict[str, asyncio.Task[None]] = {}


class LiveState(rx.State):
    connected: bool = False
    # The last events this tab applied, as {id, type, data}: shown in the page's
    # diagnostics drawer, and what proves a tab and a stream receive the same events.
    event_log: list[str] = []

    @rx.event(background=True)
    async def listen(self):  # type: ignore[no-untyped-def]
        async with self:
            tab = self.router.session.client_token
            session = await self.get_state(SessionState)
            principal = await session.principal()
        if principal is None:
            return
        current = asyncio.current_task()
        previous = _listeners.get(tab)
        if previous is not None and previous is not current and not previous.done():
            previous.cancel()
        _listeners[tab] = current  # type: ignore[assignment]
        try:
            close_reason = await self._serve(principal)
            if close_reason is CloseReason.SESSION_ENDED:
                # Signed out elsewhere (or the token expired): this tab is signed out too.
                async with self:
                    (await self.get_state(SessionState))._forget()
                yield rx.redirect(routes.LOGIN)
        finally:
            if _listeners.get(tab) is current:
                del _listeners[tab]
            with contextlib.suppress(Exception):
                async with self:
                    self.connected = False

    async def _serve(self, principal: Principal) -> CloseReason | None:
        manager = get_runtime().manager
        async with manager.connection(
            user_id=principal.user_id,
            tenant_id=principal.tenant_id,
            kind=ClientKind.TAB,
            session_ref=principal.token_id,
        ) as connection:
            client = connection.client
            # Registered first, snapshot second: whatever happens in between is queued and
            # applied on top (the reducers are idempotent), so nothing falls in the gap.
            await self._load_snapshot(principal)
            pending: asyncio.Task[list[Event]] | None = None
            try:
                while True:
                    if pending is None:
                        pending = asyncio.ensure_future(client.next_batch())
                    done, _ = await asyncio.wait({pending}, timeout=TICK_SECONDS)
                    batch = pending.result() if done else None
                    if done:
                        pending = None
                    if batch == []:
                        break  # the manager closed this client
                    await self._apply(principal, batch or [])
            finally:
                if pending is not None:
                    pending.cancel()
            return client.close_reason

    async def _load_snapshot(self, principal: Principal) -> None:
        async with self:
            await self._load_snapshot_locked(principal)
            self.connected = True

    async def _apply(self, principal: Principal, batch: list[Event]) -> None:
        mark_read: set[int] = set()
        async with self:
            chat = await self.get_state(ChatState)
            for event in batch:
                if event.type == EventType.PING:
                    continue
                self.event_log = [
                    *self.event_log[-(EVENT_LOG_SIZE - 1) :],
                    json.dumps(event.as_dict(), separators=(",", ":")),
                ]
                if event.type == EventType.RESYNC:
                    await self._load_snapshot_locked(principal)
                elif event.type.startswith("chat:"):
                    if chat.apply_event(event.type, event.data, principal.user_id):
                        mark_read.add(event.data["conversationId"])
                elif event.type.startswith("notification:"):
                    (await self.get_state(NotificationState)).apply_event(event.type, event.data)
                elif event.type == EventType.PRESENCE_UPDATE:
                    (await self.get_state(PresenceState)).apply_event(event.data)
            chat.forget_silent_typists()
            await chat.reload_list_if_stale(principal)
        # Outside the state lock: the open conversation was on screen, so it is read.
        for conversation_id in mark_read:
            await get_runtime().messages.mark_read(principal, conversation_id)

    async def _load_snapshot_locked(self, principal: Principal) -> None:
        await (await self.get_state(ChatState)).load_snapshot(principal)
        await (await self.get_state(PresenceState)).load_snapshot(principal)
        await (await self.get_state(NotificationState)).load_snapshot(principal)

    @rx.var
    def event_log_json(self) -> str:
        return "[" + ",".join(self.event_log) + "]"

