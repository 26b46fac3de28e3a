"""Tab clients live exactly as long as their websocket, and each user has a limit of them.

Issue 13, item 3: a websocket that called `LiveState.listen` itself (any client may call any
public handler) left a tab client registered after the socket closed: the user stayed
online, memory grew, and every event logged "Attempting to send delta to disconnected
client" once per leaked tab. Here raw websocket clients (tests/reflex_socket.py) start
`listen` directly and as a page does, then disconnect, against the real backend.

The unit tests at the top pin the manager's part: the per-user tab limit and the heartbeat
that closes clients whose transport is gone.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.realtime.broker.memory import MemoryBroker
from app.realtime.client import Client, ClientKind, CloseReason
from app.realtime.manager import ConnectionManager, TooManyTabs
from app.state.live import LiveState
from tests.backend import (
    Backend,
    Stream,
    bearer,
    no_errors_logged,
    open_stream,
    running_backend,
)
from tests.reflex_socket import ReflexTab, wait_until

# -- the manager: tab limit and orphaned transports ------------------------------------


@pytest.fixture
async def manager_factory() -> AsyncIterator[list[ConnectionManager]]:
    started: list[ConnectionManager] = []
    yield started
    for manager in started:
        await manager.stop()


async def _manager(
    started: list[ConnectionManager], *, max_tabs: int | None, heartbeat: float = 0
) -> ConnectionManager:
    manager = ConnectionManager(
        MemoryBroker(replay_buffer_size=10, replay_max_age_seconds=60),
        queue_size=10,
        max_streams_per_user=10,
        heartbeat_seconds=heartbeat,
        max_tabs_per_user=max_tabs,
    )
    await manager.start()
    started.append(manager)
    return manager


async def _tab(manager: ConnectionManager, user_id: int, **kwargs: Any) -> Client:
    connection = await manager.connect(
        user_id=user_id,
        tenant_id=1,
        kind=ClientKind.TAB,
        **kwargs,
    )
    return connection.client


async def test_the_tab_limit_refuses_that_users_next_tab_only_until_one_closes(
    manager_factory: list[ConnectionManager],
) -> None:
    manager = await _manager(manager_factory, max_tabs=2)
    first = await _tab(manager, 1)
    await _tab(manager, 1)

    with pytest.raises(TooManyTabs):
        await _tab(manager, 1)
    # Streams have their own limit, other users their own tabs.
    await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.STREAM)
    await _tab(manager, 2)
    assert manager.diagnostics()["clientsByKind"] == {"tab": 3, "stream": 1}

    manager.disconnect(first)
    assert not (await _tab(manager, 1)).closed


async def test_the_heartbeat_closes_a_client_whose_transport_is_gone_and_presence_hears_it(
    manager_factory: list[ConnectionManager],
) -> None:
    heartbeat = 0.05
    manager = await _manager(manager_factory, max_tabs=1, heartbeat=heartbeat)
    gone: list[Client] = []
    manager.on_disconnect(gone.append)
    socket_open = True
    tab = await _tab(manager, 1, transport_alive=lambda: socket_open)
    reader = asyncio.ensure_future(tab.next_batch())
    # Pings keep coming while the transport is there: the check is asked, not assumed.
    await wait_until(lambda: reader.done(), 5, "a ping for the live tab")
    assert not tab.closed

    socket_open = False
    started = time.monotonic()
    await wait_until(lambda: tab.closed, 5, "the orphaned tab closed")

    assert time.monotonic() - started < heartbeat * 4
    assert tab.close_reason is CloseReason.DISCONNECTED
    assert gone == [tab]  # what presence listens to
    assert not (await _tab(manager, 1)).closed  # its place under the limit is free again


async def test_a_failing_transport_check_closes_nothing_and_the_heartbeat_goes_on(
    manager_factory: list[ConnectionManager],
) -> None:
    manager = await _manager(manager_factory, max_tabs=None, heartbeat=0.05)

    def broken() -> bool:
        raise RuntimeError("check failed")

    tab = await _tab(manager, 1, transport_alive=broken)
    for _ in range(3):  # three heartbeats: each one still pings
        batch = await asyncio.wait_for(tab.next_batch(), 5)
        assert [event.type for event in batch] == ["ping"]
    assert not tab.closed


# -- the real backend: raw websocket tabs ----------------------------------------------

# The leak test opens exactly this many tabs for alice, so it also fills her limit.
MAX_TABS = 30
HEARTBEAT = 1.0  # SSE_HEARTBEAT_SECONDS in tests/backend.py
GRACE = 1.0  # PRESENCE_GRACE_SECONDS there
# A tab must be gone one heartbeat after its socket closed; the rest is slack for a loaded
# machine (the heartbeat task and the diagnostics request share the event loop with 30 tabs).
GONE_WITHIN = HEARTBEAT + 1.0
DISCONNECTED_WARNING = "Attempting to send delta to disconnected client"
TOO_MANY_TABS = re.compile("too many open tabs", re.IGNORECASE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """Backend only (raw sockets need no frontend), with the tab limit at MAX_TABS."""
    workdir: Path = tmp_path_factory.mktemp("tabs")
    with running_backend(
        workdir, {"MAX_TABS_PER_USER": str(MAX_TABS)}, backend_only=True
    ) as backend:
        yield backend


@pytest.fixture
def backend(server: Backend) -> Iterator[Backend]:
    """The private server; a test fails if it logged an error meanwhile (conftest's `http`
    fixture follows it here)."""
    with no_errors_logged(server):
        yield server


@pytest.fixture
def tokens(server: Backend) -> dict[str, str]:
    return {name: server.token(name) for name in ("alice", "bob")}


async def _clients_by_user(http: httpx.AsyncClient, admin_token: str) -> dict[str, int]:
    """Open clients per user id of the admin's tenant, from GET /api/sse/diagnostics."""
    response = await http.get("/api/sse/diagnostics", headers=bearer(admin_token))
    assert response.status_code == 200, response.text
    return dict(response.json()["clientsByUser"])


async def _tab_count(http: httpx.AsyncClient, admin_token: str) -> int:
    response = await http.get("/api/sse/diagnostics", headers=bearer(admin_token))
    assert response.status_code == 200, response.text
    return int(response.json()["clientsByKind"].get("tab", 0))


async def _wait_for_tab_count(
    http: httpx.AsyncClient, admin_token: str, expected: int, timeout: float
) -> float:
    """Seconds until the tenant has `expected` tabs; TimeoutError past `timeout`."""
    started = time.monotonic()
    while (count := await _tab_count(http, admin_token)) != expected:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{count} tabs, not {expected}, after {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def _snapshots(tab: ReflexTab) -> int:
    """How many times a listener of this tab registered and sent its snapshot."""
    return tab.snapshots()


def _refused(tab: ReflexTab) -> bool:
    return any(TOO_MANY_TABS.search(toast) for toast in tab.toasts())


async def _open_tab(
    backend: Backend,
    token: str,
    *,
    as_page: bool = False,
    client_token: str | None = None,
    expect_refusal: bool = False,
) -> ReflexTab:
    """A tab whose listener runs: started by a direct call on a bare socket, or by the
    chat page's on_load like a browser (`as_page`)."""
    tab = ReflexTab(backend.url, session_token=token, client_token=client_token)
    if as_page:
        await tab.connect()
    else:
        await tab.connect(hydrate=False)
        await tab.call(LiveState, "listen", {})
    if expect_refusal:
        await tab.wait_for(_refused, 15)
    else:
        await tab.wait_for(lambda t: _snapshots(t) >= 1 or _refused(t), 15)
        assert not _refused(tab), tab.toasts()
    return tab


async def _direct_conversation(http: httpx.AsyncClient, token: str, a: str, b: str) -> int:
    listing = (await http.get("/api/conversations", headers=bearer(token))).json()
    return next(
        c["id"]
        for c in listing["items"]
        if c["kind"] == "direct" and {p["username"] for p in c["participants"]} == {a, b}
    )


async def _close_all(tabs: list[ReflexTab]) -> None:
    await asyncio.gather(*(tab.close() for tab in tabs))


async def test_tabs_started_directly_are_gone_within_a_heartbeat_and_presence_follows(
    backend: Backend, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    alice, bob = tokens["alice"], tokens["bob"]
    conversation = await _direct_conversation(http, bob, "alice", "bob")
    async with open_stream(http, bob, params={"events": "presence:update"}) as watcher:
        # Most as the attack did (listen called on a bare socket), some as the page does.
        tabs = [await _open_tab(backend, alice) for _ in range(MAX_TABS - 5)]
        tabs += [await _open_tab(backend, alice, as_page=True) for _ in range(5)]
        assert await _tab_count(http, alice) == MAX_TABS
        assert await _presence_of(http, bob, "alice") == "online"

        await _close_all(tabs)
        closed_at = time.monotonic()
        # Events for alice right after: a leaked listener would apply them to a state whose
        # socket is gone, and Reflex would log a warning per tab per event.
        for n in range(3):
            response = await http.post(
                f"/api/conversations/{conversation}/messages",
                headers=bearer(bob),
                json={"content": f"after the tabs closed {n}"},
            )
            assert response.status_code == 201, response.text

        await _wait_for_tab_count(http, alice, 0, timeout=10)
        gone_after = time.monotonic() - closed_at
        assert await _status_change_of(watcher, "alice", HEARTBEAT + GRACE + 5) == "offline"

    assert gone_after <= GONE_WITHIN, f"tabs still registered {gone_after:.2f} s after"
    metrics = (await http.get("/metrics")).text
    assert re.search(r'^chat_connected_clients\{kind="tab"\} 0(\.0)?$', metrics, re.MULTILINE), (
        metrics
    )
    log = backend.log_since_mark()
    assert DISCONNECTED_WARNING not in log, log


async def test_the_tab_past_the_limit_is_told_too_many_open_tabs_and_other_users_are_not(
    backend: Backend, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    alice, bob = tokens["alice"], tokens["bob"]
    async with AsyncExitStack() as stack:
        tabs = [await _open_tab(backend, alice) for _ in range(MAX_TABS)]
        stack.push_async_callback(_close_all, tabs)

        refused = await _open_tab(backend, alice, expect_refusal=True)
        refused_page = await _open_tab(backend, alice, as_page=True, expect_refusal=True)
        stack.push_async_callback(_close_all, [refused, refused_page])
        bobs = await _open_tab(backend, bob)

        assert _snapshots(refused) == 0 and _snapshots(refused_page) == 0
        counts = await _clients_by_user(http, alice)
        assert sorted(counts.values()) == [1, MAX_TABS], counts
        await bobs.close()

        # Closing one makes room for the next, once it is gone (within a heartbeat).
        await tabs.pop().close()
        await _wait_for_tab_count(http, alice, MAX_TABS - 1, timeout=GONE_WITHIN)
        tabs.append(await _open_tab(backend, alice))

    await _wait_for_tab_count(http, alice, 0, timeout=GONE_WITHIN)


async def test_one_tab_per_client_token_however_often_listen_is_called_or_the_tab_reloads(
    backend: Backend, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """At the limit, so that a second listener of a token would be refused, visibly."""
    alice, bob = tokens["alice"], tokens["bob"]
    conversation = await _direct_conversation(http, bob, "alice", "bob")
    async with AsyncExitStack() as stack:
        tabs = [await _open_tab(backend, alice) for _ in range(MAX_TABS)]
        stack.push_async_callback(lambda: _close_all(tabs))

        # listen twice more on one socket: each replaces the one before.
        again = tabs[0]
        for listens in (2, 3):
            await again.call(LiveState, "listen", {})

            def listened(t: ReflexTab, listens: int = listens) -> bool:
                return _snapshots(t) >= listens or _refused(t)

            await again.wait_for(listened, 15)
            assert not _refused(again), again.toasts()

        # A reload: the socket closes and a new one comes with the same client token, its
        # listener started at once (before any heartbeat could notice the old socket), once
        # by a direct call and once by the page's on_load.
        for as_page in (False, True):
            old = tabs.pop()
            await old.close()
            tabs.append(
                await _open_tab(backend, alice, as_page=as_page, client_token=old.client_token)
            )

        assert await _tab_count(http, alice) == MAX_TABS
        # The listeners that took over are live.
        response = await http.post(
            f"/api/conversations/{conversation}/messages",
            headers=bearer(bob),
            json={"content": "still live"},
        )
        assert response.status_code == 201, response.text
        for tab in (again, tabs[-2], tabs[-1]):
            await tab.wait_for(lambda t: "still live" in t.received_text(), 10)
        assert not any(_refused(tab) for tab in tabs)

    await _wait_for_tab_count(http, alice, 0, timeout=GONE_WITHIN)


async def _presence_of(http: httpx.AsyncClient, token: str, username: str) -> str:
    response = await http.get("/api/presence", headers=bearer(token))
    assert response.status_code == 200, response.text
    return next(
        str(p["status"]) for p in response.json()["items"] if p["userName"].lower() == username
    )


async def _status_change_of(watcher: Stream, username: str, timeout: float) -> str:
    """The next status of `username` on a presence stream other than "online"."""
    async with asyncio.timeout(timeout):
        while True:
            event = await watcher.next(timeout, presence=True)
            data = json.loads(event.data)
            if data["userName"].lower() == username and data["status"] != "online":
                return str(data["status"])
