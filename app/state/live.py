"""This tab as a client of the connection manager, like any /api/sse stream.

`listen` is started by the chat page's on_load. It registers the tab first, then sends the
tab its snapshot, then writes each event it is given (the same Event objects the HTTP
streams encode, encoded once for every tab: app/state/tab_feed.py) to the tab's socket,
where the page's store applies it. No event goes through the tab's Reflex state: that cost
a state lock, a delta and its JSON per tab per event. Leaving the manager is what presence
hears.

A tab client lives exactly as long as the websocket that started its listener. Reflex
cancels a listener started by on_load when the socket closes, but not one started by a
direct call on the socket (any websocket client may call `listen`). So the tab is
registered with a check of its socket (app/state/tab_socket.py): the manager's heartbeat
closes it once the socket is gone, and the listener stops with it.
A reload keeps the client token, so listeners are keyed by it outside state: a new one
stops any older one of the same tab before registering, and only one runs per token.
Each user may hold MAX_TABS_PER_USER tabs in a process; the next one is told so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import reflex as rx

from app import routes
from app.domain.errors import DomainError
from app.domain.principal import Principal
from app.realtime.client import ClientKind, CloseReason
from app.realtime.events import EventType
from app.realtime.manager import TooManyTabs
from app.runtime import get_runtime
from app.state import page_data, tab_feed
from app.state.chat import ChatState
from app.state.session import SessionState
from app.state.tab_feed import Send, TabLink, event_packet, numbered, socket_sender
from app.state.tab_socket import socket_check

# How long a new listener waits for the one it replaces to leave the manager. It leaves at
# once unless it is waiting for the state lock; past this the new one goes ahead anyway.
HANDOVER_SECONDS = 10.0
TOO_MANY_TABS = (
    "Too many open tabs: this one gets no live updates. "
    "Close one of your other chat tabs, then reload this one."
)
# Long enough to be read, under the browser's longest timer (about 24.8 days).
TOO_MANY_TABS_TOAST_MS = 24 * 3600 * 1000

_listeners: dict[str, asyncio.Task[None]] = {}


class LiveState(rx.State):
    connected: bool = False
    # The last events this tab was sent, as {id, type, data} JSON: what proves a tab and a
    # stream receive the same events, and what support asks for. Kept on the server
    # (TabLink.event_log) and sent only when the user opens it (the user menu's "Event log").
    event_log_json: str = ""

    @rx.event(background=True)
    async def listen(self):  # type: ignore[no-untyped-def]
        # The socket this call came in on: read from the state as this event left it,
        # before another event (a reload's, on a new socket) can change the router.
        tab = self.router.session.client_token
        sid = self.router.session.session_id
        alive = socket_check(tab, sid)
        send = socket_sender(sid)
        if send is None or not alive():
            return
        async with self:
            session = await self.get_state(SessionState)
            principal = await session._principal()
        if principal is None:
            return
        current: asyncio.Task[None] = asyncio.current_task()  # type: ignore[assignment]
        previous = _listeners.get(tab)
        _listeners[tab] = current
        try:
            await _stop(previous)
            if _listeners.get(tab) is not current or not alive():
                return  # a newer listen of this tab took over meanwhile, or the socket went
            close_reason = await self._serve(tab, principal, alive, send)
        except TooManyTabs:
            if alive():
                yield rx.toast.error(
                    TOO_MANY_TABS, duration=TOO_MANY_TABS_TOAST_MS, close_button=True
                )
            return
        except asyncio.CancelledError:
            # Replaced by a newer listen (which shows its own status), or cancelled with its
            # socket: nothing to write, and nobody to write to.
            raise
        except Exception:
            if alive():
                with contextlib.suppress(Exception):
                    async with self:
                        self.connected = False
            raise
        finally:
            if _listeners.get(tab) is current:
                del _listeners[tab]
        if not alive():
            return  # writing state now would only log "send delta to disconnected client"
        async with self:
            self.connected = False
            if close_reason is CloseReason.SESSION_ENDED:
                # Signed out elsewhere (or the token expired): this tab is signed out too.
                (await self.get_state(SessionState))._forget()
        if close_reason is CloseReason.SESSION_ENDED:
            yield rx.redirect(routes.LOGIN)

    async def _serve(
        self, tab: str, principal: Principal, alive: Callable[[], bool], send: Send
    ) -> CloseReason | None:
        manager = get_runtime().manager
        async with manager.connection(
            user_id=principal.user_id,
            tenant_id=principal.tenant_id,
            kind=ClientKind.TAB,
            session_ref=principal.token_id,
            transport_alive=alive,
        ) as connection:
            link = TabLink(client=connection.client, principal=principal, send=send, alive=alive)
            async with self:
                link.watching = (await self.get_state(ChatState)).active_id
            tab_feed.links[tab] = link
            try:
                # Registered first, snapshot second: what was queued before the snapshot is
                # read is in it; what is queued after is applied on top (Zulip's rule).
                await self._send_snapshot(link)
                async with self:
                    self.connected = True
                await self._forward(link)
            finally:
                if tab_feed.links.get(tab) is link:
                    del tab_feed.links[tab]
            return link.client.close_reason

    async def _send_snapshot(self, link: TabLink) -> None:
        link.snapshot_wanted = False
        link.client.take_batch()  # published before the read below, so part of it
        runtime = get_runtime()
        items = [numbered("snapshot", await page_data.snapshot(runtime, link.principal))]
        if link.watching:
            # The open conversation too: a reconnect or a resync may have missed messages.
            try:
                page = await runtime.messages.history(
                    link.principal, link.watching, before=None, limit=page_data.HISTORY_PAGE
                )
            except DomainError:
                link.watching = 0  # no longer the caller's to see
                async with self:
                    (await self.get_state(ChatState))._close()
            else:
                me = link.principal.user_id
                items.append(numbered("history", page_data.history(link.watching, page, me)))
        await link.push(items)

    async def _forward(self, link: TabLink) -> None:
        """Write each event queued for the tab to its socket, until the manager closes the
        client or the socket goes: the same Event objects an /api/sse stream gets, each
        encoded once for every tab (tab_feed.event_packet)."""
        client, receipts = link.client, get_runtime().read_receipts
        me = link.principal.user_id
        while True:
            batch = await client.next_batch()
            if not batch or not link.alive():
                return
            for event in batch:
                if event.type == EventType.PING:
                    continue
                if event.type == EventType.RESYNC:
                    if not tab_feed.asked_by_page(event):
                        link.event_log.append(event.as_dict())
                    await self._send_snapshot(link)
                    continue
                link.event_log.append(event.as_dict())
                await link.send(event_packet(event))
                if event.type == EventType.CHAT_MESSAGE and link.watching:
                    message = event.data["message"]
                    if message["conversationId"] == link.watching and message["senderId"] != me:
                        # On screen, so read: once per user however many of their tabs show
                        # it, many users per transaction (app/domain/read_receipts.py).
                        receipts.seen(link.principal, link.watching, message["id"])

    @rx.event
    def show_event_log(self) -> None:
        """The user menu's "Event log": this tab's own last events, as they are now."""
        link = tab_feed.links.get(self.router.session.client_token)
        events = list(link.event_log) if link is not None else []
        self.event_log_json = json.dumps(events, separators=(",", ":"))

    @rx.event
    def hide_event_log(self) -> None:
        self.event_log_json = ""


async def _stop(listener: asyncio.Task[None] | None) -> None:
    """Cancel an older listener of the same tab and wait until it has left the manager, so
    that a reload does not count twice against the tab limit for a moment."""
    if listener is None or listener.done():
        return
    listener.cancel()
    await asyncio.wait({listener}, timeout=HANDOVER_SECONDS)

