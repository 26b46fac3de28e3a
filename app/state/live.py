"""This tab as a client of the connection manager, like any /api/sse stream.

`listen` is started by the chat page's on_load. It registers the tab first, then sends the
tab its snapshot, then writes each event it is given (the same Event objects the HTTP
streams encode, encoded once for every tab: app/state/tab_feed.py) to the tab's socket,
where the page's store applies it. No event goes through the tab's Reflex state: that cost
a state lock, a delta and its JSON per tab per event. Leaving the manager is what presence
hears.

A tab client lives exactly as long as the websocket that started its listener: the
socket's disconnect closes it (`install`), and the manager's heartbeat applies a check of
the socket (app/state/tab_socket.py) should that ever be missed. A reload keeps the client
token, so listeners are keyed by it: a new one stops any older one of the same tab before
registering, and only one runs per token. Each user may hold MAX_TABS_PER_USER tabs in a
process; the next one is told so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import reflex as rx

from app.domain.errors import DomainError
from app.realtime.client import ClientKind
from app.realtime.events import EventType
from app.realtime.manager import TooManyTabs
from app.runtime import get_runtime
from app.state import page_data, tab_feed
from app.state.chat import ChatState
from app.state.session import SessionState
from app.state.tab_feed import TabLink, event_packet, numbered, socket_sender
from app.state.tab_socket import socket_check

logger = logging.getLogger(__name__)

# How long a new listener waits for the one it replaces to leave the manager (it leaves at
# once when cancelled: it holds no state lock); past this the new one goes ahead anyway.
HANDOVER_SECONDS = 10.0
TOO_MANY_TABS = (
    "Too many open tabs: this one gets no live updates. "
    "Close one of your other chat tabs, then reload this one."
)
# Long enough to be read, under the browser's longest timer (about 24.8 days).
TOO_MANY_TABS_TOAST_MS = 24 * 3600 * 1000

_listeners: dict[str, asyncio.Task[None]] = {}


# Vars only the page's store writes (assets/live_store.js): never set by the server.
LIVE_VARS = ("connected",)


class LiveState(rx.State):
    # -- live: written by the page's store only ------------------------------------
    # Snapshot applied and events flowing; false once the listener stopped.
    connected: bool = False
    # -- this tab's own ------------------------------------------------------------
    # The last events this tab was sent, as {id, type, data} JSON: what proves a tab and a
    # stream receive the same events, and what support asks for. Kept on the server
    # (TabLink.event_log) and sent only when the user opens it (the user menu's "Event log").
    event_log_json: str = ""

    @rx.event
    async def listen(self):
        """Register this tab with the connection manager, then hand it to a listener task.

        The listener is a plain task, not a Reflex background event: it touches no Reflex
        state (the page's store applies what it sends), and a background event kept its
        state proxy and Reflex's bookkeeping alive for the whole life of the tab."""
        tab = self.router.session.client_token
        sid = self.router.session.session_id
        alive = socket_check(tab, sid)
        send = socket_sender(sid)
        if send is None or not alive():
            return None
        principal = await (await self.get_state(SessionState))._principal()
        if principal is None:
            return None
        # One listener per tab: a reload keeps the token. Handlers of one tab run one after
        # another, so no other listen of this tab runs while this one waits.
        await _stop(_listeners.pop(tab, None))
        try:
            connection = await get_runtime().manager.connect(
                user_id=principal.user_id,
                tenant_id=principal.tenant_id,
                kind=ClientKind.TAB,
                session_ref=principal.token_id,
                transport_alive=alive,
            )
        except TooManyTabs:
            return rx.toast.error(TOO_MANY_TABS, duration=TOO_MANY_TABS_TOAST_MS, close_button=True)
        link = TabLink(
            client=connection.client,
            principal=principal,
            send=send,
            alive=alive,
            sid=sid,
            watching=(await self.get_state(ChatState)).active_id,
        )
        _listeners[tab] = asyncio.create_task(_serve(tab, link), name=f"tab-listener|{tab}")
        return None

    @rx.event
    def show_event_log(self) -> None:
        """The user menu's "Event log": this tab's own last events, as they are now."""
        link = tab_feed.links.get(self.router.session.client_token)
        events = [e.as_dict() for e in link.event_log] if link is not None else []
        self.event_log_json = json.dumps(events, separators=(",", ":"))

    @rx.event
    def hide_event_log(self) -> None:
        self.event_log_json = ""


async def _serve(tab: str, link: TabLink) -> None:
    """Snapshot, then every event, until the manager closes the client or the socket goes.
    Registered first, snapshot second: what was queued before the snapshot was read is in
    it; what is queued after is applied on top (Zulip's rule)."""
    tab_feed.links[tab] = link
    try:
        await _send_snapshot(link)
        await _forward(link)
    except asyncio.CancelledError:
        raise  # replaced by a newer listen of the tab (which sends its own snapshot)
    except Exception:
        logger.exception("the listener of a tab failed")
    finally:
        get_runtime().manager.disconnect(link.client)
        if tab_feed.links.get(tab) is link:
            del tab_feed.links[tab]
        if _listeners.get(tab) is asyncio.current_task():
            del _listeners[tab]
    if link.alive():
        # Signed out elsewhere (or the token expired): the store sends the tab to sign in.
        reason = link.client.close_reason
        await link.push([numbered("closed", {"reason": reason.value if reason else ""})])


async def _send_snapshot(link: TabLink) -> None:
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
            link.watching = 0  # no longer the caller's to see: its messages stay as they were
        else:
            me = link.principal.user_id
            items.append(numbered("history", page_data.history(link.watching, page, me)))
    await link.push(items)


_TAB = ClientKind.TAB.value


async def _forward(link: TabLink) -> None:
    """Write each event queued for the tab to its socket: the same Event objects an
    /api/sse stream gets, each encoded once for every tab (tab_feed.event_packet). Each
    event's publish-to-write latency is counted once its frame is handed to the socket."""
    runtime = get_runtime()
    client, receipts, latency = link.client, runtime.read_receipts, runtime.latency
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
                    link.event_log.append(event)
                await _send_snapshot(link)
                continue
            link.event_log.append(event)
            await link.send(event_packet(event))
            latency.place(_TAB, event, time.time()).count()
            if event.type == EventType.CHAT_MESSAGE and link.watching:
                message = event.data["message"]
                if message["conversationId"] == link.watching and message["senderId"] != me:
                    # On screen, so read: once per user however many of their tabs show
                    # it, many users per transaction (app/domain/read_receipts.py).
                    receipts.seen(link.principal, link.watching, message["id"])


def install(app: rx.App) -> None:
    """A socket that disconnects takes its tab out of the manager at once (presence hears
    it now, not at the next heartbeat)."""
    namespace = app.event_namespace
    if namespace is None:
        return
    on_disconnect = namespace.on_disconnect

    def disconnected(sid: str, *reason: Any) -> asyncio.Task[None] | None:
        for link in [link for link in tab_feed.links.values() if link.sid == sid]:
            get_runtime().manager.disconnect(link.client)
        return on_disconnect(sid)

    # python-socketio dispatches "disconnect" to the namespace's `on_disconnect` attribute.
    namespace.on_disconnect = disconnected  # type: ignore[method-assign]  # replaced on this one instance, on purpose


async def _stop(listener: asyncio.Task[None] | None) -> None:
    """Cancel an older listener of the same tab and wait until it has left the manager, so
    that a reload does not count twice against the tab limit for a moment."""
    if listener is None or listener.done():
        return
    listener.cancel()
    await asyncio.wait({listener}, timeout=HANDOVER_SECONDS)
