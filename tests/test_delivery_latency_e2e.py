"""A real backend (the Reflex start, which serves tabs and streams) times each event it hands
to a stream and to a tab in `chat_event_delivery_seconds`, and both get the same `sentAt`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.state.live import LiveState
from tests.backend import Backend, bearer, open_stream, running_backend
from tests.latency_metrics import at_most, histogram
from tests.reflex_socket import ReflexTab
from tests.wire import payload

TIMEOUT = 10.0

# -- a real backend: both transports -------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """The Reflex start (it serves tabs and streams), backend only."""
    workdir: Path = tmp_path_factory.mktemp("latency")
    with running_backend(workdir, launcher="reflex", backend_only=True) as backend:
        yield backend


async def test_a_backend_times_each_event_it_hands_to_a_stream_and_to_a_tab(
    server: Backend,
) -> None:
    alice, bob = server.token("alice"), server.token("bob")
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        listed = (await http.get("/api/conversations", headers=bearer(alice))).json()["items"]
        direct = next(c["id"] for c in listed if c["kind"] == "direct")
        before = (await http.get("/metrics")).text
        tab = ReflexTab(server.url, session_token=bob)
        await tab.connect(hydrate=False)
        try:
            await tab.call(LiveState, "listen", {})
            await tab.wait_for(lambda t: t.snapshots() >= 1, TIMEOUT)
            text = f"timed {uuid.uuid4().hex[:8]}"
            async with open_stream(http, bob, params={"events": "chat:message"}) as stream:
                sent = await http.post(
                    f"/api/conversations/{direct}/messages",
                    json={"content": text},
                    headers=bearer(alice),
                )
                assert sent.status_code == 201, sent.text
                on_stream = await stream.next(TIMEOUT)
            await tab.wait_for(lambda t: _tab_event(t, text) is not None, TIMEOUT)
            on_tab = _tab_event(tab, text)
        finally:
            await tab.close()
        after = (await http.get("/metrics")).text

    streamed = json.loads(on_stream.data)
    assert streamed["message"]["content"] == text
    assert on_tab is not None
    assert on_tab["data"]["sentAt"] == streamed["sentAt"]  # one moment, both transports
    payload(streamed)  # a recent moment in milliseconds
    for transport in ("stream", "tab"):
        was = histogram(before, transport, "chat:message")
        now = histogram(after, transport, "chat:message")
        assert now["count"] - was.get("count", 0) == 1, transport
        # Handed over at once on an idle backend: within a second.
        assert at_most(now, 1.0) - at_most(was, 1.0) == 1, transport
        assert now["sum"] > was.get("sum", 0.0), transport


def _tab_event(tab: ReflexTab, content: str) -> dict[str, Any] | None:
    """The chat:message with `content` in the tab's feed, as the tab got it."""
    for item in tab.feed():
        event = item.get("event")
        if (
            event
            and event["type"] == "chat:message"
            and event["data"]["message"]["content"] == content
        ):
            return dict(event)
    return None
