"""A chat tab for load generation: Reflex's websocket protocol on a bare aiohttp socket.

A page's socket.io client does exactly this (checked against a real Chromium page in
tests/test_bench_tab_client.py): Engine.IO 4 over a websocket at `/_event/` with the tab's
client token in the query string, a socket.io CONNECT to the `/_event` namespace whose auth
carries the page's `hydrate_and_load` event, then `event` packets naming
`<state full name>.<handler>`. Server pings (`2`) are answered (`3`).

It is written by hand, not with python-socketio's client, because a thousand of them run in
one load-generator process: frames are kept as text with their arrival time and byte count,
and only a test that asks decodes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

NAMESPACE = "/_event"
SESSION_COOKIE = "chat_session"
_EVENT_PREFIX = f"42{NAMESPACE},"
_CONNECTED_PREFIX = f"40{NAMESPACE},"


@dataclass(slots=True)
class Frame:
    at: float  # time.monotonic() on arrival
    text: str

    @property
    def size(self) -> int:
        return len(self.text.encode())

    def update(self) -> dict[str, Any] | None:
        """The Reflex state update this frame carries (`{"delta", "events", "final"}`)."""
        if not self.text.startswith(_EVENT_PREFIX):
            return None
        name, payload = json.loads(self.text[len(_EVENT_PREFIX) :])[:2]
        return payload if name == "event" else None


@dataclass
class TabClient:
    """One tab. `frames` holds every event frame the server sent, in order."""

    base_url: str
    session_token: str | None = None
    path: str = "/"
    client_token: str = field(default_factory=lambda: str(uuid.uuid4()))
    frames: list[Frame] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    bytes_received: int = 0
    on_frame: Callable[[TabClient, Frame], None] | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _reader: asyncio.Task[None] | None = None
    _connected: asyncio.Event = field(default_factory=asyncio.Event)

    def _router_data(self) -> dict[str, Any]:
        return {"pathname": self.path, "asPath": self.path}

    async def connect(
        self, session: aiohttp.ClientSession, root_state: str, timeout: float = 30.0
    ) -> None:
        """Open the socket as the page does, hydrate event (and so its on_load) included."""
        ws_url = self.base_url.replace("http", "ws", 1)
        headers = {"Origin": self.base_url}
        if self.session_token:
            headers["Cookie"] = f"{SESSION_COOKIE}={self.session_token}"
        self._ws = await session.ws_connect(
            f"{ws_url}/_event/?EIO=4&transport=websocket&token={self.client_token}",
            headers=headers,
            timeout=aiohttp.ClientWSTimeout(ws_close=5),
            max_msg_size=0,
        )
        opening = await asyncio.wait_for(self._ws.receive_str(), timeout)
        if not opening.startswith("0"):
            raise ConnectionError(f"unexpected Engine.IO opening {opening[:80]!r}")
        auth = {
            "event": {
                "name": f"{root_state}.hydrate_and_load",
                "payload": {},
                "router_data": self._router_data(),
            }
        }
        await self._send(f"40{NAMESPACE},{json.dumps(auth, separators=(',', ':'))}")
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def call(self, event_name: str, payload: dict[str, Any]) -> None:
        event = {"name": event_name, "payload": payload, "router_data": self._router_data()}
        await self._send(f"{_EVENT_PREFIX}{json.dumps(['event', event], separators=(',', ':'))}")

    async def _send(self, text: str) -> None:
        assert self._ws is not None
        self.sent.append(text)
        await self._ws.send_str(text)

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            text: str = message.data
            now = time.monotonic()
            self.bytes_received += len(text.encode())
            if text == "2":
                await self._ws.send_str("3")
            elif text.startswith(_CONNECTED_PREFIX):
                self._connected.set()
            elif text.startswith(_EVENT_PREFIX):
                frame = Frame(now, text)
                self.frames.append(frame)
                if self.on_frame is not None:
                    self.on_frame(self, frame)

    def has(self, marker: str) -> bool:
        return any(marker in frame.text for frame in self.frames)

    async def wait_for_text(self, marker: str, timeout: float = 10.0) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.frames:
                if marker in frame.text:
                    return frame
            if time.monotonic() > deadline:
                raise TimeoutError(f"{marker!r} did not reach the tab in {timeout} s")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            # The socket is gone either way: how the reader ended does not matter here.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
