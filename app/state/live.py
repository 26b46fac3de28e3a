"""This tab as a client of the connection manager, like any /api/sse stream.

`listen` is started by the chat page's on_load. It registers the tab first, then loads the
snapshot, then applies every event (the same Event objects the HTTP streams encode) inside
`async with self`. Leaving the manager is what presence hears.

A tab client lives exactly as long as the websocket that started its listener. Reflex
cancels a listener started by on_load when the socket closes, but not one started by a
direct call on the socket (any websocket client may call `listen`). So the tab is
registered with a check of its socket (app/state/tab_socket.py): the manager's heartbeat
closes it once the socket is gone, and the listener itself stops at its next wake-up.
A reload keeps the client token, so listeners are keyed by it outside state: a new one
stops any older one of the same tab before registering, and only one runs per token.
Each user may hold MAX_TABS_PER_USER tabs in a process; the next one is told so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import reflex as rx

from app import routes
from app.domain.principal import Principal
from app.realtime.client import ClientKind, CloseReason
from app.realtime.events import Event, EventType
from app.realtime.manager import TooManyTabs
from app.runtime import get_runtime
from app.state.chat import ChatState
from app.state.notifications import NotificationState
from app.state.presence import PresenceState
from app.state.session import SessionState
from app.state.tab_socket import socket_check

logger = logging.getLogger(__name__)

# How often the listener wakes without events, to forget typists who went silent (and to
# notice that its socket closed, when no heartbeat told it first).
TICK_SECONDS = 2.0
EVENT_LOG_SIZE = 50
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
    # The last events this tab applied, as {id, type, data}: shown in the page's
    # diagnostics drawer, and what proves a tab and a stream receive the same events.
    # The last events this tab applied, as {id, type, data} JSON: what proves a tab and a
    # stream receive the same events, and what support asks for. Kept on the server and
    # sent only when the user opens it (the user menu's "Event log"): as a page var it
    # went with every delta, twice, 13-17 kB a frame (docs/performance.md).
    _event_log: list[dict[str, Any]] = []
    event_log_json: str = ""

    @rx.event(background=True)
    async def listen(self):  # type: ignore[no-untyped-def]
        # The socket this call came in on: read from the state as this event left it,
        # before another event (a reload's, on a new socket) can change the router.
        tab = self.router.session.client_token
        alive = socket_check(tab, self.router.session.session_id)
        if not alive():
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
            close_reason = await self._serve(principal, alive)
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

    async def _serve(self, principal: Principal, alive: Callable[[], bool]) -> CloseReason | None:
        manager = get_runtime().manager
        async with manager.connection(
            user_id=principal.user_id,
            tenant_id=principal.tenant_id,
            kind=ClientKind.TAB,
            session_ref=principal.token_id,
            transport_alive=alive,
        ) as connection:
            client = connection.client
            # Registered first, snapshot second: whatever happens in between is queued and
            # applied on top (the reducers are idempotent), so nothing falls in the gap.
            await self._load_snapshot(principal)
            pending: asyncio.Task[list[Event]] | None = None
            # Whether someone shown as typing may need forgetting at a later tick. A tab with
            # nothing to apply and nobody typing does not take its state at all: entering it
            # costs a state lock and a delta, for every open tab, every tick and every ping
            # (with 1,000 tabs, stalls of half a second every heartbeat).
            typists_shown = True
            try:
                while True:
                    if pending is None:
                        pending = asyncio.ensure_future(client.next_batch())
                    done, _ = await asyncio.wait({pending}, timeout=TICK_SECONDS)
                    batch = pending.result() if done else None
                    if done:
                        pending = None
                    if batch == [] or not alive():
                        break  # the manager closed this client, or its socket is gone
                    events = [e for e in batch or [] if e.type != EventType.PING]
                    if events or typists_shown:
                        typists_shown = await self._apply(principal, events)
            finally:
                if pending is not None:
                    pending.cancel()
            return client.close_reason

    async def _load_snapshot(self, principal: Principal) -> None:
        async with self:
            await self._load_snapshot_locked(principal)
            self.connected = True

    async def _apply(self, principal: Principal, batch: list[Event]) -> bool:
        """Apply a batch of events (pings left out) to this tab's state; True while anyone
        is shown typing."""
        seen: dict[int, int] = {}  # open conversation -> newest message from others
        async with self:
            chat = await self.get_state(ChatState)
            for event in batch:
                # Encoded only when the user opens the log, not once per tab per event.
                self._event_log = [*self._event_log[-(EVENT_LOG_SIZE - 1) :], event.as_dict()]
                if event.type == EventType.RESYNC:
                    await self._load_snapshot_locked(principal)
                elif event.type.startswith("chat:"):
                    if chat._apply_event(event.type, event.data, principal.user_id):
                        conversation_id = event.data["conversationId"]
                        message_id = event.data["message"]["id"]
                        seen[conversation_id] = max(seen.get(conversation_id, 0), message_id)
                elif event.type.startswith("notification:"):
                    (await self.get_state(NotificationState))._apply_event(event.type, event.data)
                elif event.type == EventType.PRESENCE_UPDATE:
                    (await self.get_state(PresenceState))._apply_event(event.data)
            chat._forget_silent_typists()
            await chat._reload_list_if_stale(principal)
            typists_shown = any(chat.typists.values())
        # The open conversation was on screen, so it is read: once per user however many of
        # their tabs show it, many users per transaction (app/domain/read_receipts.py).
        receipts = get_runtime().read_receipts
        for conversation_id, message_id in seen.items():
            receipts.seen(principal, conversation_id, message_id)
        return typists_shown

    async def _load_snapshot_locked(self, principal: Principal) -> None:
        await (await self.get_state(ChatState))._load_snapshot(principal)
        await (await self.get_state(PresenceState))._load_snapshot(principal)
        await (await self.get_state(NotificationState))._load_snapshot(principal)

    @rx.event
    def show_event_log(self) -> None:
        """The user menu's "Event log": this tab's own last events, as they are now."""
        self.event_log_json = json.dumps(self._event_log, separators=(",", ":"))

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

