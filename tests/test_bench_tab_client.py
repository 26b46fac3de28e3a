"""The page-path benchmark's simulated tab (bench/tab_client.py) against a real Chromium page:
it must send what the page sends and receive byte for byte what the page receives, or the
benchmark measures something nobody runs."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import aiohttp
import httpx
from playwright.sync_api import Browser, Page, WebSocket, expect

from app.api.session_cookie import SESSION_COOKIE
from bench.page_path import LIVE_CONNECTED
from bench.tab_client import TabClient
from tests.backend import Backend, bearer, cached_token, conversation_titled
from tests.browser import signed_in

TIMEOUT_MS = 20_000
ROOT_STATE = "reflex___state____state"
EVENT_PREFIX = "42/_event,"
CONNECT_PREFIX = "40/_event,"
# Sent by the page on mouse moves (throttled): not part of what the benchmark replays.
NOT_REPLAYED = {"activity"}


def _sent_event_names(frames: list[str]) -> list[str]:
    names = []
    for text in frames:
        if text.startswith(CONNECT_PREFIX):
            names.append(json.loads(text[len(CONNECT_PREFIX) :])["event"]["name"])
        elif text.startswith(EVENT_PREFIX):
            names.append(json.loads(text[len(EVENT_PREFIX) :])[1]["name"])
    return [n for n in names if n.rsplit(".", 1)[-1] not in NOT_REPLAYED]


class _SimulatedTab:
    """A TabClient on its own thread and loop (sync Playwright owns this thread's loop)."""

    def __init__(self, base_url: str, session_token: str) -> None:
        self.tab = TabClient(base_url, session_token)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def connect(self) -> None:
        async def connect() -> None:
            self._session = aiohttp.ClientSession()
            await self.tab.connect(self._session, ROOT_STATE)

        self.run(connect())

    def close(self) -> None:
        async def close() -> None:
            await self.tab.close()
            if self._session is not None:
                await self._session.close()

        self.run(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def _page_frames(page: Page) -> tuple[list[str], list[str]]:
    sent: list[str] = []
    received: list[str] = []

    def on_socket(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: sent.append(str(payload)))
        ws.on("framereceived", lambda payload: received.append(str(payload)))

    page.on("websocket", on_socket)
    return sent, received


def _wait_in_page(page: Page, condition: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {TIMEOUT_MS} ms")
        page.wait_for_timeout(50)  # lets Playwright deliver the frame events


def test_the_simulated_tab_sends_and_receives_what_a_chromium_page_does(
    browser: Browser, backend: Backend
) -> None:
    alice = cached_token(backend, "alice")
    team = conversation_titled(backend, "alice", "Acme team")
    with signed_in(browser, backend, "bob") as (context, _):
        page = context.new_page()
        page_sent, page_received = _page_frames(page)
        page.goto(f"{backend.url}/")
        expect(page.get_by_test_id("live")).to_be_visible(timeout=TIMEOUT_MS)
        page.locator("[data-testid=conversation][data-name='Acme team']").click()
        _wait_in_page(
            page,
            lambda: any('"active_id_rx_state_":' + str(team) in f for f in page_received),
            "the page opened the conversation",
        )
        cookie = next(c["value"] for c in context.cookies() if c["name"] == SESSION_COOKIE)

        simulated = _SimulatedTab(backend.url, cookie)
        try:
            simulated.connect()
            simulated.run(simulated.tab.wait_for_text(LIVE_CONNECTED))
            chat_state = next(
                n.rsplit(".", 1)[0]
                for n in _sent_event_names(page_sent)
                if n.endswith(".open_conversation")
            )
            simulated.run(
                simulated.tab.call(f"{chat_state}.open_conversation", {"conversation_id": team})
            )
            simulated.run(simulated.tab.wait_for_text('"active_id_rx_state_":' + str(team)))

            assert _sent_event_names(simulated.tab.sent) == _sent_event_names(page_sent)

            marker = f"same-frames-{uuid.uuid4().hex[:8]}"
            before_page = len(page_received)
            before_tab = len(simulated.tab.frames)
            response = httpx.post(
                f"{backend.url}/api/conversations/{team}/messages",
                json={"content": marker},
                headers=bearer(alice),
            )
            assert response.status_code == 201

            def page_frames() -> list[str]:
                return [f for f in page_received[before_page:] if marker in f]

            def tab_frames() -> list[str]:
                return [f.text for f in simulated.tab.frames[before_tab:] if marker in f.text]

            _wait_in_page(page, lambda: page_frames() and tab_frames(), "both got the message")
            # Whatever else follows (read receipts) settles; then the two must match.
            _wait_in_page(page, lambda: len(page_frames()) == len(tab_frames()), "same count")
            assert page_frames() == tab_frames()  # byte for byte
        finally:
            simulated.close()
