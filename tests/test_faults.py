"""Faults against the real server over real sockets: a consumer that stops reading, one that
vanishes without a FIN, a SIGKILL in the middle of a send loop, a locked database.

A private backend serves the module, once started by `reflex run --backend-only` (granian)
and once by scripts/serve (uvicorn), the two ways people run it: these tests cut, stall, lock
and kill it, which the shared backend must never see. Its queue is small and its write deadline
short so that each fault shows within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.backend import (
    LAUNCHERS,
    TEST_ENV,
    Backend,
    Stream,
    assert_database_unavailable,
    message_contents,
    open_stream,
    running_backend,
    timed,
)
from tests.databases import write_lock
from tests.tcp_proxy import TcpProxy, open_small_window, socket_transport

HEARTBEAT_SECONDS = float(TEST_ENV["SSE_HEARTBEAT_SECONDS"])
GRACE_SECONDS = float(TEST_ENV["PRESENCE_GRACE_SECONDS"])
QUEUE_SIZE = 32
WRITE_TIMEOUT_SECONDS = 2 * HEARTBEAT_SECONDS
# Largest notification body the API accepts: a few of them fill the small-window buffers.
BIG_BODY = "x" * 4000
FAULT_ENV = {
    "SSE_CLIENT_QUEUE_SIZE": str(QUEUE_SIZE),
    "SSE_WRITE_TIMEOUT_SECONDS": str(WRITE_TIMEOUT_SECONDS),
}


@pytest.fixture(scope="module", params=LAUNCHERS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """A private backend per start: `reflex run` (granian) and scripts/serve (uvicorn)."""
    workdir = tmp_path_factory.mktemp(f"faults-{request.param}")
    with running_backend(workdir, FAULT_ENV, launcher=request.param, backend_only=True) as backend:
        yield backend


@pytest.fixture
async def http(server: Backend) -> AsyncIterator[httpx.AsyncClient]:
    timeout = httpx.Timeout(10.0, read=30.0)
    async with httpx.AsyncClient(base_url=server.url, timeout=timeout) as client:
        yield client


@dataclass(frozen=True)
class People:
    alice: str  # Acme's admin: sends notifications, reads diagnostics
    bob: str
    bob_id: int


@pytest.fixture(scope="module")
def people(server: Backend) -> People:
    bob = server.token("bob")
    me = httpx.get(f"{server.url}/api/me", headers=_auth(bob), timeout=10).json()
    return People(alice=server.token("alice"), bob=bob, bob_id=me["id"])


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _notify(http: httpx.AsyncClient, people: People, title: str) -> int:
    response = await http.post(
        "/api/notifications",
        headers=_auth(people.alice),
        json={"userId": people.bob_id, "title": title, "body": BIG_BODY},
    )
    assert response.status_code == 201, response.text
    return response.json()["ids"][0]


async def _diagnostics(http: httpx.AsyncClient, people: People) -> dict[str, Any]:
    response = await http.get("/api/sse/diagnostics", headers=_auth(people.alice))
    assert response.status_code == 200, response.text
    return response.json()


async def _wait_for(
    probe: Callable[[], Awaitable[bool]], what: str, timeout: float, interval: float = 0.1
) -> None:
    """Poll `await probe()` until it is true, failing after `timeout` seconds."""
    started = time.monotonic()
    while not await probe():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(interval)


async def _notifications(
    stream: Stream, count: int, timeout: float = 10.0
) -> list[tuple[str, int]]:
    """(event id, notification id) of the next `count` notifications."""
    received = []
    for _ in range(count):
        event = await stream.next(timeout)
        assert event.event == "notification:new", event
        received.append((event.id, json.loads(event.data)["id"]))
    return received


async def _notification_ids(stream: Stream, count: int, timeout: float = 10.0) -> list[int]:
    return [notification for _, notification in await _notifications(stream, count, timeout)]


def _in_publish_order(events: list[tuple[str, int]]) -> bool:
    """Event ids (`<epoch>-<seq>`) grow in the order events were published."""
    keys = [tuple(int(part) for part in event_id.split("-")) for event_id, _ in events]
    return keys == sorted(keys) and len(set(keys)) == len(keys)


# -- raw HTTP/1.1 event stream, for a client that decides when (and whether) to read ----


def _request(token: str, path: str = "/api/sse?events=notification:new") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()


def _dechunk(raw: bytes) -> bytes:
    """The body of a chunked HTTP/1.1 response, up to its last complete chunk."""
    _, _, rest = raw.partition(b"\r\n\r\n")
    body = b""
    while True:
        size_line, found, rest = rest.partition(b"\r\n")
        if not found or not size_line:
            return body
        size = int(size_line.split(b";")[0], 16)
        if size == 0 or len(rest) < size + 2:
            return body
        body, rest = body + rest[:size], rest[size + 2 :]


def _event_ids_and_data(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(id, data) of every complete event that has an id."""
    events = []
    for block in body.split(b"\n\n")[:-1]:  # the last piece is not terminated yet
        fields = dict(line.decode().split(": ", 1) for line in block.split(b"\n") if b": " in line)
        if "id" in fields and "data" in fields:
            events.append((fields["id"], json.loads(fields["data"])))
    return events


# -- 1. a consumer that stops reading ----------------------------------------------------


async def test_slow_consumer_is_cut_off_others_get_everything_and_it_catches_up_by_replay(
    server: Backend, http: httpx.AsyncClient, people: People
) -> None:
    """A raw client that stops reading: once the small-window buffers are full its writer
    stalls, and the server cuts it off when its queue overflows or its write deadline
    passes, whichever comes first. Publishing never waits for it."""
    cut_before = (await _diagnostics(http, people))["slowConsumersCut"]
    filter_ = {"events": "notification:new"}
    reader, writer = await open_small_window("127.0.0.1", server.port)
    try:
        writer.write(_request(people.bob))
        async with open_stream(http, people.bob, params=filter_) as normal:
            first = await _notify(http, people, "before the flood")
            # The slow one reads up to its first event (so it has a Last-Event-ID), then
            # stops reading for good: its window closes and the server's writes back up.
            received = b""
            async with asyncio.timeout(5):
                while not _event_ids_and_data(_dechunk(received)):
                    received += await reader.read(4096)
            socket_transport(writer).pause_reading()
            assert await _notification_ids(normal, 1) == [first]

            flood: list[int] = []

            async def slow_one_was_cut() -> bool:
                return (await _diagnostics(http, people))["slowConsumersCut"] > cut_before

            # Small batches, each posted at once: the flood outruns the stalled writer.
            while not await slow_one_was_cut():
                assert len(flood) < 40 * QUEUE_SIZE, "the slow consumer was never cut off"
                batch = [_notify(http, people, f"flood {len(flood) + n}") for n in range(8)]
                flood += await asyncio.gather(*batch)
            flood += [await _notify(http, people, "after the cut")]
            # The reading consumer, on the same user channel, lost nothing and kept the
            # publishing order (concurrent posts may publish out of id order).
            seen = await _notifications(normal, len(flood))
        assert sorted(n for _, n in seen) == sorted(flood)
        assert _in_publish_order(seen)
        flood = [notification for _, notification in seen]

        # Cut off means closed: the slow one reads what it was sent, then the end.
        socket_transport(writer).resume_reading()
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                received += chunk
    finally:
        writer.transport.abort()
    got = _event_ids_and_data(_dechunk(received))
    got_ids = [data["id"] for _, data in got]
    assert got_ids == [first, *flood[: len(got_ids) - 1]]
    assert len(got_ids) - 1 < len(flood)  # it did miss events

    # It reconnects from the last event it has and gets exactly the rest, in order.
    last_event_id = got[-1][0]
    missed = flood[len(got_ids) - 1 :]
    async with open_stream(
        http, people.bob, params=filter_, headers={"Last-Event-ID": last_event_id}
    ) as resumed:
        assert await _notification_ids(resumed, len(missed)) == missed
        sentinel = await _notify(http, people, "live again")
        assert await _notification_ids(resumed, 1) == [sentinel]


# -- 2. a consumer that vanishes without a FIN -------------------------------------------


async def _presence_of(http: httpx.AsyncClient, token: str, user_id: int) -> str:
    response = await http.get("/api/presence", headers=_auth(token))
    assert response.status_code == 200, response.text
    return next(p["status"] for p in response.json()["items"] if p["userId"] == user_id)


async def _is_offline(http: httpx.AsyncClient, people: People) -> bool:
    return await _presence_of(http, people.alice, people.bob_id) == "offline"


async def _next_status_of(watcher: Stream, user_id: int, timeout: float) -> str:
    async with asyncio.timeout(timeout):
        while True:
            event = await watcher.next(timeout, presence=True)
            data = json.loads(event.data)
            if event.event == "presence:update" and data["userId"] == user_id:
                return data["status"]


async def _comes_online(watcher: Stream, user_id: int, timeout: float) -> bool:
    """True once the watcher hears `user_id` go online. An "offline" of the user's earlier
    stream may still be on its way when the watcher opens (the REST answer that said
    offline can precede that event's publish), so other statuses before it are skipped."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while await _next_status_of(watcher, user_id, timeout) != "online":
                pass
            return True
    return False


async def test_vanished_consumer_is_detected_by_its_stalled_writes_and_cleaned_up(
    server: Backend, http: httpx.AsyncClient, people: People
) -> None:
    """The black hole takes no more bytes and closes nothing. Pings alone would take many
    minutes to fill even small-window buffers (about 80 bytes a heartbeat), so events are
    sent to it: once the buffers are full its writer stalls, and the write deadline (two
    heartbeats here) cuts it off long before its queue would; presence and its stream slot
    follow. The socket itself stays with the server (granian or uvicorn) until TCP gives up:
    ASGI cannot abort a connection, and the server keeps trying to flush what it was handed."""
    await _wait_for(
        lambda: _is_offline(http, people), "bob offline before the test", GRACE_SECONDS + 5
    )
    bob_id = str(people.bob_id)
    hole = TcpProxy("127.0.0.1", server.port, small_window=True)
    await hole.start()
    try:
        async with (
            open_stream(http, people.alice, params={"events": "presence:update"}) as watcher,
            httpx.AsyncClient(base_url=hole.url, timeout=10) as via_hole,
            open_stream(via_hole, people.bob, params={"events": "notification:new"}) as vanishing,
        ):
            assert await _comes_online(watcher, people.bob_id, 10)
            sent = await _notify(http, people, "still here")
            assert await _notification_ids(vanishing, 1) == [sent]
            before = await _diagnostics(http, people)
            assert before["clientsByUser"].get(bob_id) == 1

            hole.vanish()
            # Until the buffers are full and its write waits for the peer: the
            # writer has stalled. Then stop, well short of filling the queue.
            sent_into_the_void = 0
            while (await _diagnostics(http, people))["stalledWrites"] < 1:
                assert sent_into_the_void < 200, "the writer never stalled"
                await _notify(http, people, f"into the void {sent_into_the_void}")
                sent_into_the_void += 1
            flooded_at = time.monotonic()
            bound = WRITE_TIMEOUT_SECONDS + GRACE_SECONDS + 2 * HEARTBEAT_SECONDS + 3
            status = await _next_status_of(watcher, people.bob_id, bound)
            detected_in = time.monotonic() - flooded_at
            after = await _diagnostics(http, people)
            # Its slot is free: bob may open his full quota of streams again.
            async with contextlib.AsyncExitStack() as streams:
                for _ in range(int(TEST_ENV["SSE_MAX_STREAMS_PER_USER"])):
                    stream = await streams.enter_async_context(
                        open_stream(http, people.bob, params={"events": "presence:update"})
                    )
                    assert stream.response.status_code == 200
    finally:
        await hole.close()
    assert status == "offline"
    assert detected_in < bound
    assert bob_id not in after["clientsByUser"]
    assert after["slowConsumersCut"] == before["slowConsumersCut"] + 1


# -- 3. SIGKILL in the middle of a send loop ---------------------------------------------


async def _direct_conversation(http: httpx.AsyncClient, people: People) -> int:
    """The seeded alice-bob conversation (a repeated 1:1 answers with the existing one)."""
    response = await http.post(
        "/api/conversations", headers=_auth(people.alice), json={"participantIds": [people.bob_id]}
    )
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


async def _history_ids(http: httpx.AsyncClient, token: str, conversation: int) -> list[int]:
    """Every message id of the conversation, paging back from the newest."""
    ids: list[int] = []
    before: int | None = None
    while True:
        params = {"limit": "100", **({"before": str(before)} if before else {})}
        response = await http.get(
            f"/api/conversations/{conversation}/messages", headers=_auth(token), params=params
        )
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [m["id"] for m in page["items"]]
        if not page["hasMore"]:
            return ids
        before = page["items"][-1]["id"]


@dataclass
class SendLoop:
    """Sends messages back to back; remembers what the server acknowledged with a 201."""

    acknowledged: list[int]
    unknown: int = 0  # no answer (connection refused or cut): may or may not be stored
    refused: int = 0  # an answer other than 201

    async def run(
        self, http: httpx.AsyncClient, people: People, conversation: int, stop: asyncio.Event
    ) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                response = await http.post(
                    f"/api/conversations/{conversation}/messages",
                    headers=_auth(people.alice),
                    json={"content": f"loop {n}"},
                )
            except httpx.TransportError:
                self.unknown += 1
                await asyncio.sleep(0.05)  # the server is down: pace the retries
                continue
            if response.status_code == 201:
                self.acknowledged.append(response.json()["id"])
            else:
                self.refused += 1


async def test_sigkill_during_a_send_loop_loses_no_acknowledged_message_and_consumers_catch_up(
    server: Backend, people: People
) -> None:
    # A fresh client for each request: pooled connections die with the server.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=limits) as http:
        conversation = await _direct_conversation(http, people)
        filter_ = {"events": "chat:message"}
        loop = SendLoop(acknowledged=[])
        stop = asyncio.Event()
        streamed: list[tuple[str, int]] = []

        async def acknowledged_at_least(count: int) -> bool:
            return len(loop.acknowledged) >= count

        async with open_stream(http, people.bob, params=filter_) as consumer:
            sender = asyncio.create_task(loop.run(http, people, conversation, stop))
            try:
                await _wait_for(lambda: acknowledged_at_least(20), "sending", 20, 0.01)
                # The consumer is live: it has every message up to one acknowledged just now.
                while not streamed or streamed[-1][1] < loop.acknowledged[10]:
                    event = await consumer.next(10)
                    streamed.append((event.id, json.loads(event.data)["message"]["id"]))
                await asyncio.to_thread(server.kill)
                before_restart = len(loop.acknowledged)
                await asyncio.to_thread(server.start)
                await _wait_for(
                    lambda: acknowledged_at_least(before_restart + 20), "sending again", 30, 0.01
                )
            finally:
                stop.set()
                await sender
        assert loop.refused == 0
        assert loop.unknown > 0  # some sends did meet the dead server

        history = await _history_ids(http, people.bob, conversation)
        assert set(loop.acknowledged) <= set(history)
        assert len(history) == len(set(history))

        # The consumer reconnects from its last event. The in-memory replay buffer died
        # with the process, so it is told to resync; history then has everything.
        async with open_stream(
            http, people.bob, params=filter_, headers={"Last-Event-ID": streamed[-1][0]}
        ) as resumed:
            resync = await resumed.next(10)
            caught_up = set(await _history_ids(http, people.bob, conversation))
            live = await http.post(
                f"/api/conversations/{conversation}/messages",
                headers=_auth(people.alice),
                json={"content": "after catching up"},
            )
            assert live.status_code == 201
            first_live = await resumed.next(10)
    assert resync.event == "resync"
    assert json.loads(resync.data)["reason"] == "history_unavailable"
    assert {m for _, m in streamed} | set(loop.acknowledged) <= caught_up
    assert json.loads(first_live.data)["message"]["id"] == live.json()["id"]


# -- 4. the database locked or unreachable -----------------------------------------------

# SQLite's busy timeout in app/db.py: how long a write waits for the lock before giving up.
BUSY_TIMEOUT_SECONDS = 5.0
LOCKED_OUT = [f"while locked {n}" for n in range(8)]
# The WAL index's lock bytes (write, checkpoint, recover, five read marks) in the -shm file.
WAL_LOCK_OFFSET, WAL_LOCK_BYTES = 120, 8


@contextlib.contextmanager
def _every_lock(server: Backend) -> Iterator[None]:
    """Another process holds every lock of the WAL index, so the server can neither read
    nor write: as unreachable as a local database gets while its file is still there."""
    import fcntl
    import os

    fd = os.open(server.workdir / "chat.db-shm", os.O_RDWR)
    try:
        deadline = time.monotonic() + 5
        while True:  # the server's own readers hold a read mark for a moment at a time
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, WAL_LOCK_BYTES, WAL_LOCK_OFFSET)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        yield
        fcntl.lockf(fd, fcntl.LOCK_UN, WAL_LOCK_BYTES, WAL_LOCK_OFFSET)
    finally:
        os.close(fd)


async def test_write_locked_database_answers_503_in_bounded_time_and_recovers(
    server: Backend, http: httpx.AsyncClient, people: People
) -> None:
    conversation = await _direct_conversation(http, people)
    send = f"/api/conversations/{conversation}/messages"
    async with open_stream(http, people.bob, params={"events": "chat:message"}) as consumer:
        with write_lock(f"sqlite:///{server.workdir / 'chat.db'}"):
            # Sends to one conversation take turns: without care, the last of them would
            # wait out one busy timeout per send before it.
            refused = await asyncio.gather(
                *(
                    timed(http.post(send, headers=_auth(people.alice), json={"content": c}))
                    for c in LOCKED_OUT
                )
            )
            # Readers are not blocked by a writer (WAL), and open streams carry on.
            readable = await message_contents(http, people.bob, conversation)
            ping = await consumer.next(5, pings=True)
        accepted = await http.post(send, headers=_auth(people.alice), json={"content": "unlocked"})
        first_event = await consumer.next(10)
    for response, _ in refused:
        assert_database_unavailable(response)
    slowest = max(took for _, took in refused)
    assert BUSY_TIMEOUT_SECONDS - 1 < slowest < BUSY_TIMEOUT_SECONDS + 4
    assert not set(LOCKED_OUT) & set(readable)
    assert ping.event == "ping"
    assert accepted.status_code == 201, accepted.text
    # The refused message was neither stored nor announced: the next event is the new one.
    assert json.loads(first_event.data)["message"]["id"] == accepted.json()["id"]
    contents = await message_contents(http, people.bob, conversation)
    assert contents[0] == "unlocked" and not set(LOCKED_OUT) & set(contents)


async def test_unreachable_database_answers_503_even_to_reads_and_streams_stay_up(
    server: Backend, http: httpx.AsyncClient, people: People
) -> None:
    conversation = await _direct_conversation(http, people)
    history = f"/api/conversations/{conversation}/messages"
    async with open_stream(http, people.bob, params={"events": "chat:message"}) as consumer:
        with _every_lock(server):
            read, took = await timed(http.get(history, headers=_auth(people.bob)))
            ping = await consumer.next(5, pings=True)
        recovered = await http.get(history, headers=_auth(people.bob))
        sent = await http.post(history, headers=_auth(people.alice), json={"content": "back"})
        delivered = await consumer.next(10)
    assert_database_unavailable(read)
    # SQLite gives up on a lock protocol it cannot enter after about ten seconds.
    assert took < 20
    assert ping.event == "ping"
    assert recovered.status_code == 200
    assert sent.status_code == 201, sent.text
    assert json.loads(delivered.data)["message"]["content"] == "back"
