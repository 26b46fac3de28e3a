"""A chat tab as Reflex's websocket sees it, without a browser: for attacking the event
handlers and for counting tabs.

It speaks the same socket.io protocol a page does (python-socketio's client, the reference
implementation of what the page's socket.io-client does): the tab's client token in the
query string, the page's `hydrate_and_load` event in the CONNECT packet, then `event`
packets naming `<state full name>.<handler>` with a payload. Every update the server
pushes is kept, so a test can look for a value in everything the tab received.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import reflex as rx
import socketio

from app.api.session_cookie import SESSION_COOKIE

# Reflex serves socket.io at /_event and registers its handlers in the namespace of the
# same name.
NAMESPACE = "/_event"


class _BrowserPacket(socketio.packet.Packet):
    """Packets encoded as a browser's JSON.stringify does: a lone surrogate travels as its
    `\\ud800` escape. (socketio.Packet's own JSON is a class attribute that an imported
    Reflex app replaces with one that writes raw UTF-8, which cannot carry one.)"""

    json = SimpleNamespace(
        dumps=lambda obj, **kwargs: json.dumps(obj, ensure_ascii=True, **kwargs),
        loads=json.loads,
    )


def handler_name(state: type[rx.State], handler: str) -> str:
    """The name a page sends for `state.handler`."""
    return f"{state.get_full_name()}.{handler}"


def _router_data(path: str) -> dict[str, Any]:
    return {"pathname": path, "asPath": path}


class ReflexTab:
    """One tab: connect, call handlers, read what came back, close."""

    def __init__(
        self,
        base_url: str,
        *,
        session_token: str | None = None,
        path: str = "/",
        client_token: str | None = None,
    ) -> None:
        self.base_url = base_url
        self.session_token = session_token
        self.path = path
        self.client_token = client_token or str(uuid.uuid4())
        self.updates: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._sio = socketio.AsyncClient(reconnection=False, serializer=_BrowserPacket)
        self._sio.on("event", self._received, namespace=NAMESPACE)

    async def _received(self, update: Any) -> None:
        if isinstance(update, str):
            update = json.loads(update)
        self.updates.append(update)
        self._changed.set()

    async def connect(
        self, *, hydrate: bool = True, timeout: float = 10.0, boot_event: Any = None
    ) -> None:
        """Open the socket as a page on `path` does (with its hydrate and on_load), or bare;
        or with `boot_event`, any frame at all, in the CONNECT packet where the hydrate goes."""
        headers = {"Origin": self.base_url}
        if self.session_token is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={self.session_token}"
        auth: dict[str, Any] | None = None
        if boot_event is not None:
            auth = {"event": boot_event}
        elif hydrate:
            root = rx.State.get_full_name()
            auth = {
                "event": {
                    "name": f"{root}.hydrate_and_load",
                    "payload": {},
                    "router_data": _router_data(self.path),
                }
            }
        await self._sio.connect(
            f"{self.base_url}?token={self.client_token}",
            headers=headers,
            auth=auth,
            transports=["websocket"],
            socketio_path="_event",
            namespaces=[NAMESPACE],
            wait_timeout=timeout,
        )

    async def call(self, state: type[rx.State], handler: str, payload: dict[str, Any]) -> None:
        """Send one event, as any websocket client may, with whatever payload it likes."""
        await self._sio.emit(
            "event",
            {
                "name": handler_name(state, handler),
                "payload": payload,
                "router_data": _router_data(self.path),
            },
            namespace=NAMESPACE,
        )

    async def call_named(self, name: str, payload: Any) -> None:
        """Send an event under any name (one Reflex never registered, a private method's),
        with any payload: what a hand-made client can do."""
        frame = {"name": name, "payload": payload, "router_data": _router_data(self.path)}
        await self.emit_raw(frame)

    async def emit_raw(self, frame: Any) -> None:
        """Send one `event` frame exactly as given, even one that is not an event at all."""
        await self._sio.emit("event", frame, namespace=NAMESPACE)

    async def send_packet(self, packet: str) -> None:
        """Send one socket.io packet as text (`2/_event,[...]` is an event), well formed or not."""
        await self._sio.eio.send(packet)

    async def wait_for(self, predicate: Callable[[ReflexTab], bool], timeout: float = 10.0) -> None:
        """Until `predicate(self)` holds; TimeoutError if it does not in time."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the tab did not receive what was expected in time")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass

    def received_text(self) -> str:
        """Everything the server pushed to this tab, as one JSON text to search in."""
        return json.dumps(self.updates, ensure_ascii=False)

    def var(self, state: type[rx.State], name: str) -> Any:
        """The last value of `state.name` the server sent, or None if it never did."""
        key = state.get_full_name()
        value = None
        for update in self.updates:
            delta = update.get("delta", {}).get(key, {})
            for var_name, var_value in delta.items():
                if var_name == name or var_name == f"{name}_rx_state_":
                    value = var_value
        return value

    def feed(self) -> list[dict[str, Any]]:
        """Every item of the tab's live feed (app/state/tab_feed.py) the server sent."""
        from app.state.tab_feed import FeedState

        key = FeedState.get_full_name()
        return [
            item
            for update in self.updates
            for item in update.get("delta", {}).get(key, {}).get("feed_rx_state_", [])
        ]

    def snapshots(self) -> int:
        """How many snapshots a listener of this tab sent: one per registration (and one
        per resync)."""
        return sum(1 for item in self.feed() if "snapshot" in item)

    def toasts(self) -> list[str]:
        """The texts of the toasts the server asked the page to show."""
        texts = []
        for update in self.updates:
            for event in update.get("events", []):
                if "toast" in json.dumps(event):
                    texts.append(json.dumps(event, ensure_ascii=False))
        return texts

    @property
    def connected(self) -> bool:
        return bool(self._sio.connected)

    async def close(self) -> None:
        if self._sio.connected:
            await self._sio.disconnect()


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)
