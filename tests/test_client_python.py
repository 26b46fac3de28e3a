"""The Python client for integrators (app/client) against the real backend: handlers,
conversation filtering, the server-side type filter, a network drop, a backend restart,
backoff on 429, token refresh after logout, and the `tail` command line.

Every wait is for a named event with a timeout. Contents carry a per-test tag so leftovers
of other tests on the shared backend never match.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.client import (
    AuthenticationError,
    Backoff,
    ClientEvent,
    ClientStatus,
    LatencyStats,
    RealtimeClient,
    sign_in,
    token_from_password,
)
from app.client.events import SeenEvents
from tests.backend import ROOT, Backend, notify, open_stream, running_backend
from tests.backend import bearer as _auth
from tests.backend import cached_token as _token
from tests.tcp_proxy import TcpProxy

T = TypeVar("T")

# The server's `retry:` (SSE_RETRY_MS, 3000 by default) is a floor for reconnects; a small
# exponential part lets the tests see the floor rather than the backoff.
QUICK = Backoff(initial=0.1, max=5.0, jitter=0.0)


# -- helpers -----------------------------------------------------------------------------


class Recorder(Generic[T]):
    """A handler that keeps what it gets, and lets a test wait for what it expects."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._changed = asyncio.Event()

    def __call__(self, item: T) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[list[T]], bool], timeout: float = 10.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self.items):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not seen in {timeout} s; got {self.items!r}") from None


def _tag() -> str:
    return uuid.uuid4().hex[:10]


async def _user_id(http: httpx.AsyncClient, token: str) -> int:
    response = await http.get("/api/me", headers=_auth(token))
    assert response.status_code == 200, response.text
    return int(response.json()["id"])


async def _new_group(http: httpx.AsyncClient, creator: str, member_ids: list[int]) -> int:
    response = await http.post(
        "/api/conversations",
        headers=_auth(creator),
        json={"participantIds": member_ids, "title": f"client {_tag()}"},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _alice_bob_and_their_group(
    backend: Backend, http: httpx.AsyncClient
) -> tuple[str, str, int]:
    """Alice's and bob's tokens, and a new group of alice's with bob in it."""
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    return alice, bob, await _new_group(http, alice, [await _user_id(http, bob)])


async def _send(http: httpx.AsyncClient, token: str, conversation_id: int, content: str) -> None:
    response = await http.post(
        f"/api/conversations/{conversation_id}/messages",
        headers=_auth(token),
        json={"content": content},
    )
    assert response.status_code == 201, response.text


async def _typing(http: httpx.AsyncClient, token: str, conversation_id: int) -> None:
    response = await http.post(
        f"/api/conversations/{conversation_id}/typing",
        headers=_auth(token),
        json={"isTyping": True},
    )
    assert response.status_code == 204, response.text


def _contents(events: list[ClientEvent]) -> list[str]:
    return [event.data["message"]["content"] for event in events]


def _titles(events: list[ClientEvent]) -> list[str]:
    return [event.data["title"] for event in events if event.type == "notification:new"]


def _header(head: str, name: str) -> str | None:
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


@asynccontextmanager
async def _connected(
    client: RealtimeClient, event_type: str
) -> AsyncIterator[tuple[Recorder[ClientEvent], Recorder[ClientStatus]]]:
    """The client started and connected, recording its `event_type` events and its
    statuses (kept after the block, for the assertions); closed on the way out."""
    received: Recorder[ClientEvent] = Recorder()
    statuses: Recorder[ClientStatus] = Recorder()
    async with client:
        client.subscribe(event_type, received)
        client.on_status(statuses)
        client.start()
        await client.wait_connected(timeout=10)
        yield received, statuses


@pytest.fixture
async def proxy(backend: Backend) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the shared backend that can cut the connection."""
    tcp_proxy = TcpProxy("127.0.0.1", backend.port)
    await tcp_proxy.start()
    try:
        yield tcp_proxy
    finally:
        await tcp_proxy.close()


# -- pure parts: no server needed ----------------------------------------------------------


def test_the_kit_knows_the_servers_event_types() -> None:
    # The kit keeps its own copy to stay standalone: this is what keeps the copy honest.
    from app.client.events import CONTROL_TYPES as KIT_CONTROL_TYPES
    from app.client.events import EventType as KitEventType
    from app.realtime.events import CONTROL_TYPES, EventType

    assert {t.value for t in KitEventType} == {t.value for t in EventType}
    assert KIT_CONTROL_TYPES == CONTROL_TYPES


def test_tail_describes_an_edit_and_a_delete_in_a_line() -> None:
    from app.client.format import describe

    message = {"id": 9, "senderName": "Alice", "content": "hello, edited"}
    edited = ClientEvent("chat:message-updated", "1-2", {"conversationId": 3, "message": message})
    deleted = ClientEvent("chat:message-deleted", "1-3", {"conversationId": 3, "messageId": 9})
    assert describe(edited) == "#3 Alice: hello, edited (edited)"
    assert describe(deleted) == "#3 message 9 deleted"


def test_the_kit_works_copied_into_another_project_under_another_name(tmp_path: Path) -> None:
    # The kit promises: copy the folder, depend on httpx and httpx-sse only. A copy under
    # another name, run where the repository is not importable, must import and start.
    shutil.copytree(ROOT / "app" / "client", tmp_path / "chatclient")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = (
        "import sys, chatclient; "
        "assert 'app' not in sys.modules, 'the copy imported the repository'; "
        "print(chatclient.RealtimeClient.__name__)"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "RealtimeClient"
    cli = subprocess.run(
        [sys.executable, "-m", "chatclient", "tail", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert "--url" in cli.stdout


def test_seen_events_drop_an_overlapping_replay_but_not_a_new_epoch_or_idless_events() -> None:
    seen = SeenEvents()
    delivered = [
        event_id
        for event_id in ["5-1", "5-2", "5-3", "5-2", "5-3", "5-4", "9-1", "5-5", "9-1", None, None]
        if seen.first_time(event_id)
    ]
    # 5-2 and 5-3 again: an overlapping replay. 9-1 is a restarted server's first event;
    # 5-5 still belongs to the old epoch's stream. No id (ping, resync): never a duplicate.
    assert delivered == ["5-1", "5-2", "5-3", "5-4", "9-1", "5-5", None, None]


def test_backoff_grows_to_its_cap_and_never_undercuts_the_server() -> None:
    backoff = Backoff(initial=0.5, max=4.0, jitter=0.5)
    no_jitter = [backoff.delay(n, rng=lambda: 0.0) for n in range(1, 6)]
    full_jitter = [backoff.delay(n, rng=lambda: 1.0) for n in range(1, 6)]
    assert no_jitter == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert full_jitter == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert backoff.delay(1, floor=3.0, rng=lambda: 1.0) == 3.0  # Retry-After: 3
    assert backoff.delay(1, floor=3600.0) == 4.0  # but never past `max`


# -- handlers ------------------------------------------------------------------------------


async def test_unsubscribed_handler_gets_nothing_while_another_keeps_receiving(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob, conversation = await _alice_bob_and_their_group(backend, http)
    tag = _tag()
    first: Recorder[ClientEvent] = Recorder()
    second: Recorder[ClientEvent] = Recorder()
    async with RealtimeClient(backend.url, token=bob, types=["chat:message"]) as client:
        unsubscribe_first = client.subscribe("chat:message", first)
        client.subscribe("chat:message", second)
        client.start()
        await client.wait_connected(timeout=10)
        await _send(http, alice, conversation, f"{tag} one")
        await first.wait_for(lambda events: len(events) >= 1)
        await second.wait_for(lambda events: len(events) >= 1)
        unsubscribe_first()
        await _send(http, alice, conversation, f"{tag} two")
        # Handlers run in order for each event: once `second` has "two", `first` would have too.
        await second.wait_for(lambda events: len(events) >= 2)
    assert _contents(first.items) == [f"{tag} one"]
    assert _contents(second.items) == [f"{tag} one", f"{tag} two"]
    assert first.items[0] is second.items[0]  # one stream, one event object for both


async def test_subscribe_to_conversation_sees_only_that_conversation(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    bob_id = await _user_id(http, bob)
    watched = await _new_group(http, alice, [bob_id])
    other = await _new_group(http, alice, [bob_id])
    messages: Recorder[ClientEvent] = Recorder()
    typing: Recorder[ClientEvent] = Recorder()
    unread: Recorder[ClientEvent] = Recorder()
    everything: Recorder[ClientEvent] = Recorder()
    async with RealtimeClient(backend.url, token=bob) as client:
        client.subscribe_to_conversation(
            watched, on_message=messages, on_typing=typing, on_unread=unread
        )
        client.subscribe("*", everything)
        client.start()
        await client.wait_connected(timeout=10)
        # The other conversation first: the stream is ordered, so by the time the watched
        # one's events are in, the other's have been dispatched (and must have been dropped).
        for conversation in (other, watched):
            await _typing(http, alice, conversation)
            await _send(http, alice, conversation, f"hello {conversation}")
        await messages.wait_for(lambda events: len(events) >= 1)
        await typing.wait_for(lambda events: len(events) >= 1)
        await unread.wait_for(lambda events: len(events) >= 1)
    for recorder in (messages, typing, unread):
        assert {event.conversation_id for event in recorder.items} == {watched}
    assert _contents(messages.items) == [f"hello {watched}"]
    assert typing.items[0].data["isTyping"] is True
    assert unread.items[0].data["count"] == 1
    # The other conversation's events did come down the stream: the filter dropped them.
    other_types = {e.type for e in everything.items if e.conversation_id == other}
    assert other_types >= {"chat:message", "chat:typing", "chat:unread-count"}


async def test_types_filter_goes_to_the_server_as_events_query(
    backend: Backend, http: httpx.AsyncClient, proxy: TcpProxy
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    bob_id = await _user_id(http, bob)
    conversation = await _new_group(http, alice, [bob_id])
    tag = _tag()
    received: Recorder[ClientEvent] = Recorder()
    async with RealtimeClient(proxy.url, token=bob, types=["chat:message"]) as client:
        with pytest.raises(ValueError, match="notification:new"):
            client.subscribe("notification:new", received)  # would never fire
        client.subscribe("*", received)
        client.start()
        await client.wait_connected(timeout=10)
        await notify(http, alice, bob_id, f"{tag} not wanted")
        await _send(http, alice, conversation, f"{tag} wanted")
        await received.wait_for(lambda events: len(events) >= 1)
    # The notification (and bob's unread count) were published first and never arrived.
    assert [event.type for event in received.items] == ["chat:message"]
    request_line = proxy.request_heads[0].split("\r\n")[0]
    method, target, _ = request_line.split(" ")
    assert method == "GET" and urlsplit(target).path == "/api/sse"
    assert parse_qs(urlsplit(target).query) == {"events": ["chat:message"]}


# -- reconnecting ----------------------------------------------------------------------------


async def test_network_drop_resumes_with_last_event_id_and_delivers_each_event_once(
    backend: Backend, http: httpx.AsyncClient, proxy: TcpProxy
) -> None:
    alice, bob, conversation = await _alice_bob_and_their_group(backend, http)
    tag = _tag()
    client = RealtimeClient(proxy.url, token=bob, types=["chat:message"], backoff=QUICK)
    async with _connected(client, "chat:message") as (received, statuses):
        await _send(http, alice, conversation, f"{tag} before")
        await received.wait_for(lambda events: len(events) >= 1)
        resume_from = client.last_event_id
        async with proxy.offline():
            await statuses.wait_for(lambda s: s[-1].state == "disconnected")
            assert not client.connected
            await _send(http, alice, conversation, f"{tag} missed 1")
            await _send(http, alice, conversation, f"{tag} missed 2")
        await received.wait_for(lambda events: len(events) >= 3)
        await _send(http, alice, conversation, f"{tag} live")
        await received.wait_for(lambda events: len(events) >= 4)
    assert _contents(received.items) == [
        f"{tag} before",
        f"{tag} missed 1",
        f"{tag} missed 2",
        f"{tag} live",
    ]
    assert len({event.id for event in received.items}) == 4
    assert resume_from == received.items[0].id
    resumed = [head for head in proxy.request_heads if _header(head, "last-event-id")]
    assert resumed and _header(resumed[-1], "last-event-id") == resume_from
    assert client.duplicates_dropped == 0  # the server replayed exactly what was missed


HELD_SECONDS = 0.6


async def test_receive_latency_shows_a_network_that_held_the_event(
    backend: Backend, http: httpx.AsyncClient, proxy: TcpProxy
) -> None:
    """Each event's `latency` (its server `sentAt` against the moment the kit read it) and
    the client's `latency` figures show the while the network held it."""
    alice, bob, conversation = await _alice_bob_and_their_group(backend, http)
    tag = _tag()
    client = RealtimeClient(proxy.url, token=bob, types=["chat:message"], backoff=QUICK)
    async with _connected(client, "chat:message") as (received, _):
        await _send(http, alice, conversation, f"{tag} prompt")
        await received.wait_for(lambda events: len(events) >= 1)
        proxy.hold()
        await _send(http, alice, conversation, f"{tag} held")
        await asyncio.sleep(HELD_SECONDS)  # the delay under test: the network keeps it
        proxy.release()
        await received.wait_for(lambda events: len(events) >= 2)
    prompt, held = received.items
    assert _contents([prompt, held]) == [f"{tag} prompt", f"{tag} held"]
    assert held.sent_at is not None and held.received_at is not None
    assert held.latency is not None and held.latency >= HELD_SECONDS
    assert prompt.latency is not None and prompt.latency < HELD_SECONDS
    stats = client.latency
    assert stats.count >= 2
    assert stats.max is not None and stats.max >= HELD_SECONDS
    assert stats.p50 is not None and stats.p99 is not None and stats.p50 <= stats.p99
    assert "LatencyStats(count=" in repr(stats)


def test_latency_figures_are_nearest_rank_over_the_recent_window() -> None:
    stats = LatencyStats()
    assert (stats.count, stats.mean, stats.p50, stats.max) == (0, None, None, None)
    for seconds in (0.004, 0.001, 0.003, 0.002, 0.100):
        stats.add(seconds)
    assert (stats.count, stats.last, stats.max) == (5, 0.100, 0.100)
    assert stats.mean == pytest.approx(0.022)
    assert (stats.p50, stats.p99, stats.quantile(0.0)) == (0.003, 0.100, 0.001)
    for _ in range(LatencyStats.WINDOW):
        stats.add(0.010)
    assert stats.p99 == 0.010  # the old spike has left the window
    assert stats.max == 0.100  # but not the all-time figures
    with pytest.raises(ValueError):
        stats.quantile(1.5)


def test_an_event_without_a_usable_sent_at_has_no_latency() -> None:
    assert ClientEvent("chat:message", "1-1", {}, received_at=10.0).latency is None
    assert ClientEvent("chat:message", "1-1", {"sentAt": True}, received_at=10.0).latency is None
    assert ClientEvent("chat:message", "1-1", {"sentAt": 9500}).latency is None  # not read
    assert ClientEvent("chat:message", "1-1", {"sentAt": 9500}, received_at=10.0).latency == 0.5
    # A clock behind the server's is not a negative latency.
    assert ClientEvent("chat:message", "1-1", {"sentAt": 11000}, received_at=10.0).latency == 0


async def test_a_replay_overlapping_what_was_delivered_reaches_handlers_once(
    backend: Backend, http: httpx.AsyncClient, proxy: TcpProxy
) -> None:
    """The proxy makes the reconnect resume from an older id than the client sent, so the
    real server replays an event the client already delivered: it must be dropped."""
    alice, bob, conversation = await _alice_bob_and_their_group(backend, http)
    tag = _tag()
    client = RealtimeClient(proxy.url, token=bob, types=["chat:message"], backoff=QUICK)
    async with _connected(client, "chat:message") as (received, statuses):
        await _send(http, alice, conversation, f"{tag} one")
        await _send(http, alice, conversation, f"{tag} two")
        await received.wait_for(lambda events: len(events) >= 2)
        proxy.last_event_id_override = received.items[0].id  # "two" will come again
        async with proxy.offline():
            await statuses.wait_for(lambda s: s[-1].state == "disconnected")
            await _send(http, alice, conversation, f"{tag} three")
        await received.wait_for(lambda events: len(events) >= 3)
        await _send(http, alice, conversation, f"{tag} four")
        await received.wait_for(lambda events: len(events) >= 4)
    assert _contents(received.items) == [f"{tag} {n}" for n in ("one", "two", "three", "four")]
    resumed = [head for head in proxy.request_heads if _header(head, "last-event-id")]
    assert _header(resumed[-1], "last-event-id") == received.items[0].id
    assert client.duplicates_dropped == 1  # "two", replayed by the server and dropped


async def test_backend_restart_reconnects_and_reports_resync(tmp_path: Path) -> None:
    with running_backend(tmp_path, backend_only=True) as backend:
        async with httpx.AsyncClient(base_url=backend.url, timeout=10) as http:
            alice = await sign_in(backend.url, "alice", "alice-pass")
            bob_id = await _user_id(http, await sign_in(backend.url, "bob", "bob-pass"))
            resyncs: Recorder[ClientEvent] = Recorder()
            client = RealtimeClient(
                backend.url,
                get_token=token_from_password(backend.url, "bob", "bob-pass"),
                types=["notification:new"],
                backoff=QUICK,
            )
            client.on_resync(resyncs)
            async with _connected(client, "notification:new") as (received, statuses):
                await notify(http, alice, bob_id, "before restart")
                await received.wait_for(lambda events: len(events) >= 1)
                backend.kill()
                await statuses.wait_for(lambda s: s[-1].state == "disconnected")
                await asyncio.to_thread(backend.start)  # the loop keeps running meanwhile
                # The new process has a new history: it cannot resume from our id.
                await resyncs.wait_for(lambda events: len(events) >= 1, timeout=30)
                await client.wait_connected(timeout=10)
                await notify(http, alice, bob_id, "after restart")
                await received.wait_for(lambda events: len(events) >= 2)
    assert _titles(received.items) == ["before restart", "after restart"]
    assert resyncs.items[0].id is None
    assert resyncs.items[0].data["reason"] == "history_unavailable"
    failures = [s for s in statuses.items if s.state == "disconnected"]
    assert all(s.status_code is None for s in failures)  # connection errors, not HTTP answers


async def test_429_backs_off_with_growing_delays_and_connects_once_a_slot_frees(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    """TEST_ENV allows 3 streams per user; the server's Retry-After is 5 s. The exponential
    part starts at 3 s so the second delay (6 s) outgrows the Retry-After floor."""
    dave, erin = _token(backend, "dave"), _token(backend, "erin")
    erin_id = await _user_id(http, erin)
    statuses: Recorder[ClientStatus] = Recorder()
    received: Recorder[ClientEvent] = Recorder()
    backoff = Backoff(initial=3.0, max=30.0, jitter=0.0)
    async with AsyncExitStack() as held:
        streams = [await held.enter_async_context(open_stream(http, erin)) for _ in range(3)]
        assert all(stream.response.status_code == 200 for stream in streams)
        async with RealtimeClient(
            backend.url, token=erin, types=["notification:new"], backoff=backoff
        ) as client:
            client.on_status(statuses)
            client.subscribe("notification:new", received)
            client.start()
            await statuses.wait_for(
                lambda s: sum(x.state == "disconnected" for x in s) == 2, timeout=15
            )
            await held.aclose()  # frees the three slots
            await client.wait_connected(timeout=15)
            await notify(http, dave, erin_id, "through at last")
            await received.wait_for(lambda events: len(events) >= 1)
    refused = [s for s in statuses.items if s.state == "disconnected"]
    assert [s.status_code for s in refused] == [429, 429]
    assert [s.attempt for s in refused] == [1, 2]
    delays = [s.delay for s in refused]
    assert delays == [5.0, 6.0]  # max(Retry-After 5, 3 s), then max(5, 6 s): growing
    assert [s.state for s in statuses.items][-1] == "closed"
    assert "connected" in [s.state for s in statuses.items]


async def test_logout_of_the_old_token_gets_a_fresh_one_and_the_stream_continues(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    dave = await sign_in(backend.url, "dave", "dave-pass")
    dave_id = await _user_id(http, dave)
    issued: list[str] = []

    async def get_token() -> str:
        token = await sign_in(backend.url, "dave", "dave-pass")
        issued.append(token)
        return token

    admin = _token(backend, "dave")  # another session of dave's, to post with
    client = RealtimeClient(
        backend.url, token=dave, get_token=get_token, types=["notification:new"], backoff=QUICK
    )
    async with _connected(client, "notification:new") as (received, statuses):
        await notify(http, admin, dave_id, "before logout")
        await received.wait_for(lambda events: len(events) >= 1)
        response = await http.post("/api/auth/logout", headers=_auth(dave))
        assert response.status_code == 204
        await statuses.wait_for(
            lambda s: any(x.status_code == 401 for x in s) and s[-1].state == "connected",
            timeout=15,
        )
        await notify(http, admin, dave_id, "after refresh")
        await received.wait_for(lambda events: len(events) >= 2)
    assert _titles(received.items) == ["before logout", "after refresh"]
    assert len(issued) == 1 and issued[0] != dave
    # The server closed the stream; the retry with the revoked token got 401; the fresh
    # token was tried at once (no delay) and connected.
    assert [(s.state, s.status_code) for s in statuses.items] == [
        ("connecting", None),
        ("connected", None),
        ("disconnected", None),
        ("connecting", None),
        ("disconnected", 401),
        ("connecting", None),
        ("connected", None),
        ("closed", None),
    ]
    assert statuses.items[4].delay == 0.0
    assert client.duplicates_dropped == 0


async def test_a_status_handler_may_close_the_client_and_run_returns(backend: Backend) -> None:
    """Status handlers run inside the stream task, which cannot wait for its own end."""
    statuses: Recorder[ClientStatus] = Recorder()
    client = RealtimeClient(backend.url, token=_token(backend, "carol"))

    async def close_once_connected(status: ClientStatus) -> None:
        statuses(status)
        if status.state == "connected":
            await client.close()

    client.on_status(close_once_connected)
    await asyncio.wait_for(client.run(), timeout=10)  # returns: nothing hangs
    await statuses.wait_for(lambda s: s[-1].state == "closed")
    assert [s.state for s in statuses.items] == ["connecting", "connected", "closed"]
    assert not client.connected


async def test_401_without_get_token_ends_the_client_with_a_clear_error(
    backend: Backend,
) -> None:
    async with RealtimeClient(backend.url, token="not-a-token") as client:
        with pytest.raises(AuthenticationError, match="no get_token"):
            async for _ in client.events():
                pass


# -- the command line ------------------------------------------------------------------------


async def _run_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.client",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={key: value for key, value in os.environ.items() if key != "CHAT_PASSWORD"},
    )


async def _line(stream: asyncio.StreamReader | None, timeout: float = 15.0) -> str:
    assert stream is not None
    line = await asyncio.wait_for(stream.readline(), timeout)
    assert line, "the stream ended"
    return line.decode().rstrip("\n")


async def _stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), 15)


@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
async def test_tail_prints_each_message_as_it_arrives(
    backend: Backend, http: httpx.AsyncClient, as_json: bool
) -> None:
    alice, _bob, conversation = await _alice_bob_and_their_group(backend, http)
    tag = _tag()
    options = ["--json"] if as_json else []
    process = await _run_cli(
        "tail", "--url", backend.url, "--user", "bob", "--password", "bob-pass",
        "--events", "chat:message", "--conversation", str(conversation), *options,
    )  # fmt: skip
    try:
        assert (await _line(process.stderr)).startswith(f"-- connected to {backend.url}")
        await _send(http, alice, conversation, f"{tag} hi bob")
        line = await _line(process.stdout)
    finally:
        returncode = await _stop(process)
    if as_json:
        event: dict[str, Any] = json.loads(line)
        assert event["type"] == "chat:message" and event["id"]
        assert event["data"]["message"]["content"] == f"{tag} hi bob"
        assert event["data"]["conversationId"] == conversation
    else:
        assert "chat:message" in line
        assert line.endswith(f"#{conversation} Alice: {tag} hi bob")
    assert returncode == 0  # SIGTERM is a clean exit


async def test_tail_with_a_bad_password_says_so_and_exits_non_zero(backend: Backend) -> None:
    process = await _run_cli(
        "tail", "--url", backend.url, "--user", "carol", "--password", "wrong-pass"
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert stdout == b""
    message = stderr.decode()
    assert "error: sign-in failed for 'carol'" in message
    assert "Traceback" not in message
