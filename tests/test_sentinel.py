"""Redis Sentinel: the app follows a failover (primary SIGKILLed, replica promoted) and loses
no accepted message.

Replication is asynchronous, so the worst failover is the one these tests stage on purpose:
the primary dies holding events its replica never received (tests/redis_server.py's
ReplicationCut drops the replication stream first). What is guaranteed, and asserted:
- every message answered 201 is in the history over REST afterwards;
- a stream open across the failover gets each event at most once, in id order, with no id
  reused for another event; the promoted replica starts a new epoch, and the stream gets one
  `resync` (reason `failover`) when it does, so a message missing from the stream was
  accepted before that resync, and the history it refetches then has it;
- a consumer resuming with an id of the old primary's epoch gets a `resync`, never a replay
  of other events under ids it already holds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.sentinel import SentinelConnectionPool

from app.realtime.broker.redis import RedisBroker
from app.realtime.channels import user_channel
from app.realtime.client import ClientKind
from app.realtime.events import Event, EventType
from app.realtime.ids import EventId
from app.realtime.manager import ConnectionManager
from app.runtime import redis_client
from app.settings import SentinelTarget, Settings, SettingsError, sentinel_target
from tests.backend import Stream, direct_conversation, open_stream, running_backend
from tests.realtime_helpers import collect
from tests.redis_server import (
    RedisServer,
    ReplicationCut,
    Sentinels,
    replication_cut,
    start_redis,
    start_replica,
    start_sentinels,
    wait_until,
)

TENANT = 7
WAIT = 10.0
FAILOVER_SECONDS = 20.0


@dataclass
class Topology:
    primary: RedisServer
    cut: ReplicationCut
    replica: RedisServer
    sentinels: Sentinels

    def seq(self, server: RedisServer, tenant: int) -> int:
        """The tenant's event sequence as one server holds it."""
        import redis

        client = redis.Redis(port=server.port, decode_responses=True)
        try:
            return int(client.get(f"chat:{{t{tenant}}}:seq") or 0)  # type: ignore[arg-type]  # a sync client's reply
        finally:
            client.close()

    async def fail_over(self) -> None:
        """SIGKILL the primary; return once the sentinels name the replica instead."""
        self.primary.kill()
        await asyncio.to_thread(
            wait_until,
            lambda: self.sentinels.primary_port() == self.replica.port,
            "the sentinels to promote the replica",
            FAILOVER_SECONDS,
        )


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    """A primary (reached through a ReplicationCut), its replica, and three sentinels."""
    primary = start_redis(tmp_path)
    try:
        with replication_cut(primary.port) as cut:
            replica = start_replica(tmp_path, cut.port)
            try:
                sentinels = start_sentinels(tmp_path, cut.port)
                try:
                    yield Topology(primary, cut, replica, sentinels)
                finally:
                    sentinels.stop()
            finally:
                replica.stop()
    finally:
        primary.stop()


# -- the URL ---------------------------------------------------------------------------------


def test_a_sentinel_url_names_the_sentinels_the_service_the_database_and_credentials() -> None:
    target = sentinel_target("redis+sentinel://app:p%40ss@10.0.0.1:26379,[::1]:26380/chat/2")
    assert target == SentinelTarget(
        sentinels=(("10.0.0.1", 26379), ("::1", 26380)),
        service="chat",
        db=2,
        username="app",
        password="p@ss",
    )
    assert sentinel_target("redis://localhost:6379/0") is None


async def test_the_client_of_a_sentinel_url_asks_the_sentinels_for_the_primary() -> None:
    client = redis_client("redis+sentinel://:secret@127.0.0.1:26379,127.0.0.1:26380/chat/3")
    try:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert (pool.service_name, pool.is_master) == ("chat", True)
        kwargs = pool.connection_kwargs
        assert (kwargs["db"], kwargs["password"], kwargs["decode_responses"]) == (3, "secret", True)
        addresses = [
            (
                s.connection_pool.connection_kwargs["host"],
                s.connection_pool.connection_kwargs["port"],
            )
            for s in pool.sentinel_manager.sentinels
        ]
        assert addresses == [("127.0.0.1", 26379), ("127.0.0.1", 26380)]
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://127.0.0.1:26379", "must name the Sentinel service"),
        ("redis+sentinel://127.0.0.1:26379/", "must name the Sentinel service"),
        ("redis+sentinel://127.0.0.1/chat", "must list the sentinels as host:port, got 127.0.0.1"),
        ("redis+sentinel://h:1,/chat", "must list the sentinels as host:port"),
        ("redis+sentinel://h:99999/chat", "must list the sentinels as host:port, got h:99999"),
        ("redis+sentinel://h:1/chat/x", "must end in a database number, got x"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_naming_redis_url(
    monkeypatch: pytest.MonkeyPatch, url: str, problem: str
) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(SettingsError) as raised:
        Settings.from_env()
    assert len(raised.value.problems) == 1
    assert raised.value.problems[0].startswith(f"REDIS_URL {problem}")


# -- the broker, in process ----------------------------------------------------------------


@pytest.fixture
async def processes(topology: Topology) -> AsyncIterator[list[ConnectionManager]]:
    """Two "processes": managers on RedisBrokers of their own, each with the app's client."""
    started: list[ConnectionManager] = []
    clients: list[aioredis.Redis] = []
    for _ in range(2):
        client = redis_client(topology.sentinels.url)
        clients.append(client)
        broker = RedisBroker(
            client, log_max_events=1000, replay_max_age_seconds=300, reconnect_seconds=0.05
        )
        manager = ConnectionManager(
            broker, queue_size=1000, max_streams_per_user=10, heartbeat_seconds=0
        )
        await manager.start()
        started.append(manager)
    yield started
    for manager in started:
        await manager.stop()
    for client in clients:
        await client.aclose()


def _event(n: int) -> Event:
    return Event(
        type=EventType.NOTIFICATION_NEW,
        data={"n": n},
        channels=(user_channel(1),),
        tenant_id=TENANT,
    )


async def test_a_promoted_replica_reissues_no_id_and_tells_live_streams_to_resync(
    topology: Topology, processes: list[ConnectionManager]
) -> None:
    a, b = processes
    connection = await b.connect(user_id=1, tenant_id=TENANT, kind=ClientKind.STREAM)
    on_b = connection.client
    for n in range(3):
        await a.publish(_event(n))
    before = await collect(on_b, 3, WAIT)

    topology.cut.cut()
    for n in range(3, 5):
        await a.publish(_event(n))
    unreplicated = await collect(on_b, 2, WAIT)  # seen live, but only the primary has them
    assert (topology.seq(topology.primary, TENANT), topology.seq(topology.replica, TENANT)) == (
        5,
        3,
    )

    await topology.fail_over()
    for n in range(5, 7):
        await a.publish(_event(n))  # into the outbox while the client finds the new primary
    after = await collect(on_b, 3, WAIT)

    assert [e.data["n"] for e in before + unreplicated] == [0, 1, 2, 3, 4]
    assert after[0].type == EventType.RESYNC
    assert after[0].data == {"reason": "failover"}
    assert [e.data["n"] for e in after[1:]] == [5, 6]
    # b's live subscription was on the dead primary: it came back on the promoted one.
    assert b.broker.stats()["liveReconnects"] != 0
    old_ids = [e.id for e in before + unreplicated]
    new_ids = [e.id for e in after[1:]]
    assert all(isinstance(i, EventId) for i in old_ids + new_ids)
    # A new epoch, later than the old one: no id of the dead primary is given again.
    assert new_ids == [EventId(new_ids[0].epoch, 1), EventId(new_ids[0].epoch, 2)]  # type: ignore[union-attr]  # checked above
    assert new_ids[0] > old_ids[-1]  # type: ignore[operator]  # checked above

    # Resuming from the dead primary's last id: a resync, not somebody else's events.
    resumed = await a.connect(
        user_id=1, tenant_id=TENANT, kind=ClientKind.STREAM, last_event_id=str(old_ids[-1])
    )
    assert [e.type for e in resumed.backlog] == [EventType.RESYNC]
    assert resumed.backlog[0].data == {"reason": "history_unavailable"}
    # From an id of the new epoch: exactly what followed it.
    resumed = await a.connect(
        user_id=1, tenant_id=TENANT, kind=ClientKind.STREAM, last_event_id=str(new_ids[0])
    )
    assert [e.data["n"] for e in resumed.backlog] == [6]


# -- two real backends ---------------------------------------------------------------------


@dataclass
class Sender:
    """Posts messages back to back, remembering what got 201 and when."""

    http: httpx.AsyncClient
    token: str
    conversation: int
    accepted: dict[int, float] = field(default_factory=dict)  # message id -> answered at
    refused: list[int] = field(default_factory=list)  # status codes other than 201
    unanswered: int = 0  # no answer: may or may not be stored

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                response = await self.http.post(
                    f"/api/conversations/{self.conversation}/messages",
                    headers={"Authorization": f"Bearer {self.token}"},
                    json={"content": f"loop {n}"},
                )
            except httpx.TransportError:
                self.unanswered += 1
                continue
            if response.status_code == 201:
                self.accepted[response.json()["id"]] = time.monotonic()
            else:
                self.refused.append(response.status_code)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.01)  # a brisk chat, not a benchmark

    async def until(self, count: int, what: str) -> None:
        async with asyncio.timeout(FAILOVER_SECONDS):
            while len(self.accepted) < count:
                await asyncio.sleep(0.02)
        assert len(self.accepted) >= count, what


@dataclass
class Consumer:
    """Reads a stream into a list: (what, event id, message id, received at)."""

    stream: Stream
    seen: list[tuple[str, str | None, int | None, float]] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            event = await self.stream.next(60)
            message = json.loads(event.data).get("message", {}).get("id")
            # httpx-sse repeats the last id for an event that has none (the SSE spec's
            # last-event-id buffer): a resync carries none of its own.
            event_id = None if event.event == "resync" else event.id
            self.seen.append((event.event, event_id, message, time.monotonic()))

    def messages(self) -> list[int]:
        return [m for kind, _, m, _ in self.seen if kind == "chat:message" and m is not None]

    async def until_message(self, message_id: int) -> None:
        async with asyncio.timeout(WAIT):
            while message_id not in self.messages():
                await asyncio.sleep(0.02)


async def _history(http: httpx.AsyncClient, token: str, conversation: int) -> list[int]:
    ids: list[int] = []
    params: dict[str, int] = {"limit": 100}
    while True:
        response = await http.get(
            f"/api/conversations/{conversation}/messages",
            headers={"Authorization": f"Bearer {token}"},
            params=params,
        )
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [m["id"] for m in page["items"]]
        if not page["hasMore"]:
            return ids
        params["before"] = page["items"][-1]["id"]


async def test_a_failover_during_a_send_loop_loses_no_accepted_message(
    topology: Topology, tmp_path: Path
) -> None:
    env = {"REDIS_URL": topology.sentinels.url}
    workdir = tmp_path / "app"
    workdir.mkdir()
    with (
        running_backend(workdir, env, backend_only=True) as sending,
        running_backend(workdir, env, backend_only=True) as streaming,
    ):
        alice, bob = sending.token("alice"), streaming.token("bob")
        timeout = httpx.Timeout(10.0, read=60.0)
        async with (
            httpx.AsyncClient(base_url=sending.url, timeout=timeout) as to_sender,
            httpx.AsyncClient(base_url=streaming.url, timeout=timeout) as to_streamer,
        ):
            conversation = await direct_conversation(to_sender, alice, "bob")
            sender = Sender(to_sender, alice, conversation)
            stop = asyncio.Event()
            async with open_stream(to_streamer, bob, params={"events": "chat:message"}) as stream:
                consumer = Consumer(stream)
                reading = asyncio.create_task(consumer.run())
                sending_task = asyncio.create_task(sender.run(stop))
                try:
                    await sender.until(10, "sending through the first primary")
                    await consumer.until_message(max(sender.accepted))

                    topology.cut.cut()
                    cut_count = len(sender.accepted)
                    await sender.until(cut_count + 5, "sending while the replica hears nothing")
                    await consumer.until_message(max(sender.accepted))
                    last_before_kill = next(
                        event_id
                        for _, event_id, _, _ in reversed(consumer.seen)
                        if event_id is not None
                    )
                    seqs = await asyncio.to_thread(_tenant_seqs, topology)
                    assert any(p > r for p, r in seqs), seqs  # a tail only the primary holds

                    killed = len(sender.accepted)
                    await topology.fail_over()
                    await sender.until(killed + 20, "sending through the promoted replica")
                finally:
                    stop.set()
                    await sending_task
                await consumer.until_message(max(sender.accepted))
                reading.cancel()

            history = await _history(to_streamer, bob, conversation)
            async with open_stream(
                to_streamer,
                bob,
                params={"events": "chat:message"},
                headers={"Last-Event-ID": last_before_kill},
            ) as resumed:
                first = await resumed.next(WAIT)

    # Every 201 is in the history, once.
    assert set(sender.accepted) <= set(history)
    assert len(history) == len(set(history))
    assert set(sender.refused) <= {503}  # refused before storing: allowed, counted
    # The stream: each message at most once, ids only growing, one resync for the failover.
    streamed = consumer.messages()
    assert len(streamed) == len(set(streamed))
    ids = [EventId.parse(event_id) for _, event_id, _, _ in consumer.seen if event_id]
    assert all(i is not None for i in ids)
    assert ids == sorted(ids)  # type: ignore[type-var]  # all parsed, checked above
    assert len(set(ids)) == len(ids)
    resyncs = [(kind, at) for kind, _, _, at in consumer.seen if kind == "resync"]
    assert len(resyncs) == 1, consumer.seen
    resynced_at = resyncs[0][1]
    # What the stream lacks was accepted before its resync; everything after it came live.
    missing = set(sender.accepted) - set(streamed)
    assert all(sender.accepted[m] < resynced_at for m in missing), sorted(missing)
    # A consumer resuming from the dead primary's epoch is told to resync.
    assert first.event == "resync"
    assert json.loads(first.data)["reason"] == "history_unavailable"


def _tenant_seqs(topology: Topology) -> list[tuple[int, int]]:
    """Each tenant's event sequence on the primary and on the replica."""
    import redis

    client = redis.Redis(port=topology.primary.port, decode_responses=True)
    try:
        keys = list(client.scan_iter("chat:{t*}:seq"))
    finally:
        client.close()
    tenants = [int(str(key).split("{t", 1)[1].split("}", 1)[0]) for key in keys]
    return [(topology.seq(topology.primary, t), topology.seq(topology.replica, t)) for t in tenants]
