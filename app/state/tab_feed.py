"""A tab's live feed: the frames that carry its live data, and the tabs this process serves.

Reflex 0.10.1 sends every changed var whole and computes each tab's delta one tab after the
other: pushing the live data through each tab's Reflex state cost about 1 ms of CPU per tab
per message (docs/performance.md). So the live data (the conversation list, the open
conversation's messages, who is typing, the people, the notifications) is not Reflex state
on the server. Those vars are declared on the states, so that components render them, but
only the page's store (assets/live_store.js) writes them, from what arrives in
`FeedState.feed`:
- an event, as `{"event": {id, type, data}}`: the same Event object an /api/sse stream
  gets, as `Event.as_dict()` gives it; its frame is encoded once, whoever receives it
  (`event_packet`), and written to each tab's socket as it is;
- this tab's own snapshot (`{"snapshot": ...}`) and the history it asked for
  (`{"history": ...}`), each with a number `n` of its own so that two equal answers are
  still two updates.

Where the server writes a frame itself it goes through python-socketio's public API
(`packet_class`, `eio.send_packet`), to the socket id Reflex gave the tab.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import reflex as rx
from engineio import packet as eio_packet
from reflex.utils.prerequisites import get_and_validate_app
from socketio import packet as sio_packet

from app.domain.principal import Principal
from app.realtime.client import Client
from app.realtime.events import Event, EventType
from app.state.items import DELETED_PREVIEW, preview

EVENT_LOG_SIZE = 50
_next_frame_number = itertools.count(1)

Send = Callable[[eio_packet.Packet], Awaitable[None]]


class FeedState(rx.State):
    # What the page's store applies next: a list of feed items (see the module docstring).
    # Only frames built here set it; the server's state never holds anything in it.
    feed: rx.Field[list[dict[str, Any]]] = rx.field(default_factory=list)


def _feed_update(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"delta": {FeedState.get_full_name(): {"feed_rx_state_": items}}}


def _packet(items: list[dict[str, Any]]) -> eio_packet.Packet:
    """One Engine.IO message holding the Reflex `event` update that sets the feed."""
    app = get_and_validate_app().app
    assert app.sio is not None and app.event_namespace is not None
    text = app.sio.packet_class(
        sio_packet.EVENT,
        namespace=app.event_namespace.namespace,
        data=["event", _feed_update(items)],
    ).encode()
    return eio_packet.Packet(eio_packet.MESSAGE, data=text)


# The event's frame, encoded once for every tab that receives it: a bounded cache keyed by
# the Event object (events are shared by every receiver, and live for one fan-out).
_event_packets: dict[int, tuple[Event, eio_packet.Packet]] = {}
_EVENT_PACKETS_KEPT = 256


def event_item(event: Event) -> dict[str, Any]:
    item: dict[str, Any] = {"event": event.as_dict()}
    if event.type in (EventType.CHAT_MESSAGE, EventType.CHAT_MESSAGE_UPDATED):
        # The conversation list's preview, cut by the one Python rule (app/state/items.py)
        # once per event instead of by a second copy of it in the page.
        item["preview"] = preview(event.data["message"]["content"])
    elif event.type == EventType.CHAT_MESSAGE_DELETED:
        item["preview"] = DELETED_PREVIEW
    return item


def event_packet(event: Event) -> eio_packet.Packet:
    cached = _event_packets.get(id(event))
    if cached is not None and cached[0] is event:
        return cached[1]
    packet = _packet([event_item(event)])
    if len(_event_packets) >= _EVENT_PACKETS_KEPT:
        _event_packets.pop(next(iter(_event_packets)))
    _event_packets[id(event)] = (event, packet)
    return packet


def numbered(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {kind: body, "n": next(_next_frame_number)}


def socket_sender(sid: str) -> Send | None:
    """Writes a packet to socket `sid` of this process's event namespace (None: no such
    socket here)."""
    app = get_and_validate_app().app
    if app.sio is None or app.event_namespace is None:
        return None
    sio = app.sio
    eio_sid = sio.manager.eio_sid_from_sid(sid, app.event_namespace.namespace)
    if eio_sid is None:
        return None

    async def send(packet: eio_packet.Packet) -> None:
        await sio.eio.send_packet(eio_sid, packet)

    return send


@dataclass(eq=False)
class TabLink:
    """What this process knows of one tab that is a client of the connection manager."""

    client: Client
    principal: Principal
    send: Send
    alive: Callable[[], bool]
    sid: str  # the socket the tab's listener writes to
    # The conversation the tab shows (its messages are read as they arrive), 0 for none.
    watching: int = 0
    # The last events this tab was sent, for the user menu's "Event log" (the Event
    # objects themselves, shared by every receiver: a dict per tab per event was 12 kB a tab).
    event_log: deque[Event] = field(default_factory=lambda: deque(maxlen=EVENT_LOG_SIZE))
    snapshot_wanted: bool = False

    async def push(self, items: list[dict[str, Any]]) -> None:
        if self.alive():
            await self.send(_packet(items))

    def want_snapshot(self) -> None:
        """Ask the tab's listener for a fresh snapshot, in order with its events."""
        if not self.snapshot_wanted:
            self.snapshot_wanted = True
            self.client.offer(Event(type=EventType.RESYNC, data={"reason": _PAGE_ASKED}))


# The reason of a resync the page asked for (a conversation it does not list yet), which
# is not one of the manager's events: the tab's event log leaves it out.
_PAGE_ASKED = "page_asked"


def asked_by_page(event: Event) -> bool:
    return event.type == EventType.RESYNC and event.data.get("reason") == _PAGE_ASKED


# client token -> the tab's link, while its listener serves it
links: dict[str, TabLink] = {}


async def push_to_tab(sid: str, items: list[dict[str, Any]]) -> None:
    """Send a tab its own feed items (a handler's answer) on the socket the handler's event
    came in on, whether a listener serves the tab or not."""
    send = socket_sender(sid)
    if send is not None:
        await send(_packet(items))
