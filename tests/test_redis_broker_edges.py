"""The Redis broker's edges, on the session's redis-server: the stored format, gaps and
repeats of the live feed, catching up after a lost feed or a Redis that lost its data, the
outbox while Redis refuses writes, replay answers and the replay window, and the counters.

Brokers are used directly (listeners, follow, history), without a connection manager, so
each test sees exactly what the broker hands over. A few tests count Redis's own
commands (INFO commandstats) to show that a path reads nothing it need not read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.logs import JsonFormatter
from app.realtime.broker import redis as redis_broker
from app.realtime.broker.base import BrokerUnavailable
from app.realtime.broker.redis import LIVE_CHANNEL, RedisBroker
from app.realtime.channels import tenant_channel, user_channel
from app.realtime.events import Event, EventType, MessageOrder
from app.realtime.ids import EventId
from app.realtime.stream_slots import RedisStreamSlots
from tests.redis_server import RedisServer

TENANT = 7
WAIT = 5.0
# Keys of tenant 7, as the module docstring lays them out.
SEQ = "chat:{t7}:seq"
LOG = "chat:{t7}:log"
EPOCH = "chat:{t7}:epoch"
NOW = 1_700_000_000.5  # a clock reading whose milliseconds are exact in binary
EPOCH_MS = 1_700_000_000_500
BROKER_LOG = "app.realtime.broker.redis"
PUBLISH_LOG = "app.realtime.publish_log"
# The stats of a broker to which nothing unusual happened.
QUIET_STATS = {
    "broker": "redis",
    "outbox": 0,
    "liveReconnects": 0,
    "gapsFilled": 0,
    "orderGaps": 0,
    "orderFilled": 0,
    "orderDuplicates": 0,
    "orderFillFailures": 0,
}


class Clock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Inbox:
    """A broker listener that keeps what it is handed, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    async def until(self, count: int) -> list[Any]:
        """The `n` of each event once `count` have come (fails after WAIT seconds)."""
        async with asyncio.timeout(WAIT):
            while len(self.events) < count:
                await asyncio.sleep(0.01)
        return [e.data.get("n") for e in self.events]


class Brokers:
    """Connected brokers, each on a client of its own as separate processes would have;
    disconnected (a crashed task fails the test there), and their clients closed, after."""

    def __init__(self, server: RedisServer) -> None:
        self._server = server
        self._brokers: list[RedisBroker] = []
        self._clients: list[aioredis.Redis] = []

    async def __call__(
        self, *, retries: bool = False, connect: bool = True, name: str = "", **options: Any
    ) -> RedisBroker:
        """`retries`: redis-py's default retries (as app/runtime.py's client has); without,
        a lost connection fails at once and the broker's own reconnection is what runs.
        `name`: the client name its connections carry in Redis."""
        extra: dict[str, Any] = {} if retries else {"retry": Retry(NoBackoff(), 0)}
        if name:
            extra["client_name"] = name
        client = aioredis.Redis(port=self._server.port, decode_responses=True, **extra)
        self._clients.append(client)
        settings: dict[str, Any] = {
            "log_max_events": 1000,
            "replay_max_age_seconds": 300.0,
            "reconnect_seconds": 0.05,
            "subscribe_timeout_seconds": 5.0,
            "clock": Clock(),
            **options,
        }
        broker = RedisBroker(client, **settings)
        self._brokers.append(broker)
        if connect:
            await broker.connect()
        return broker

    async def close(self) -> None:
        try:
            for broker in self._brokers:
                await broker.disconnect()
        finally:
            for client in self._clients:
                await client.aclose()


@pytest.fixture
async def brokers(redis_server: RedisServer, redis_db: aioredis.Redis) -> AsyncIterator[Brokers]:
    made = Brokers(redis_server)
    try:
        yield made
    finally:
        if redis_server.process is None or redis_server.process.poll() is not None:
            redis_server.start()  # a test that stopped it failed before starting it again
        await redis_db.config_set("min-replicas-to-write", 0)
        await made.close()


@pytest.fixture
def admin(redis_db: aioredis.Redis) -> aioredis.Redis:
    """Another client of the same Redis: to look at it, and to play the other processes."""
    return redis_db


def event(n: int, *, user: int = 1, tenant: int | None = TENANT, at: float | None = None) -> Event:
    # A payload with spaces: the live frame is space-separated, its payload last.
    extra: dict[str, Any] = {} if at is None else {"published_at": at}
    return Event(
        type=EventType.NOTIFICATION_NEW,
        data={"n": n, "note": "a b c"},
        channels=(user_channel(user),),
        tenant_id=tenant,
        **extra,
    )


def stored(n: int, *, user: int = 1, at: float = NOW) -> str:
    """What the log holds for `event(n)`."""
    body = {
        "type": "notification:new",
        "data": {"n": n, "note": "a b c"},
        "channels": [user_channel(user)],
        "tenant": TENANT,
        "ts": at,
    }
    return json.dumps(body, separators=(",", ":"))


async def logged_but_not_published(admin: aioredis.Redis, n: int) -> int:
    """What a publish whose live message got lost leaves behind: the entry in the log."""
    seq = int(await admin.incr(SEQ))
    await admin.xadd(LOG, {"e": stored(n)}, id=f"{seq}-1")
    return seq


async def listening(broker: RedisBroker) -> Inbox:
    inbox = Inbox()
    broker.attach(inbox)
    await broker.follow(TENANT)
    return inbox


async def calls(admin: aioredis.Redis, command: str, field: str = "calls") -> int:
    """How many `command`s Redis has run since the last CONFIG RESETSTAT."""
    stats = await admin.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get(field, 0))


async def subscribers(admin: aioredis.Redis) -> int:
    ((_, count),) = await admin.pubsub_numsub(LIVE_CHANNEL)
    return int(count)


async def until_subscribers(admin: aioredis.Redis, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while await subscribers(admin) != count:
            await asyncio.sleep(0.01)


async def until_reconnects(broker: RedisBroker, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while broker.reconnects < count:
            await asyncio.sleep(0.01)


async def kill_live_feed(admin: aioredis.Redis, name: str) -> None:
    """Close the live feed's connection of the broker whose client is called `name`."""
    feeds = [c for c in await admin.client_list(_type="pubsub") if c["name"] == name]
    assert len(feeds) == 1
    await admin.client_kill_filter(_id=feeds[0]["id"])


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.name == BROKER_LOG and text in r.getMessage())


# -- the stored format --------------------------------------------------------------------


async def test_the_log_entry_and_the_live_frame_have_the_documented_format(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    clock = Clock()
    a = await brokers(clock=clock)
    raw = admin.pubsub()
    await raw.subscribe(LIVE_CHANNEL)
    try:
        first = Event(
            type=EventType.CHAT_MESSAGE,
            data={"text": "café ☕ au lait"},
            channels=("user:1",),
            tenant_id=TENANT,
            published_at=1_700_000_000.25,
        )
        assert await a.publish(first) is first
        assert first.id == EventId(EPOCH_MS, 1)  # the epoch is the clock's milliseconds
        payload = (
            '{"type":"chat:message","data":{"text":"caf\\u00e9 \\u2615 au lait"},'
            '"channels":["user:1"],"tenant":7,"ts":1700000000.25}'
        )  # ASCII only
        assert await admin.xrange(LOG) == [("1-1", {"e": payload})]
        assert await admin.mget(EPOCH, SEQ) == [str(EPOCH_MS), "1"]
        frames: list[str] = []
        async with asyncio.timeout(WAIT):
            while not frames:
                message = await raw.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    frames.append(message["data"])
        assert frames == [f"t7 {EPOCH_MS} 1 {payload}"]
        clock.now += 60  # a log keeps the epoch it began with
        second = await a.publish(event(2))
        assert second.id == EventId(EPOCH_MS, 2)
        # Events of no tenant have a log of their own, with its own sequence.
        announcement = await a.publish(event(3, tenant=None))
        assert announcement.id == EventId(EPOCH_MS + 60_000, 1)
        assert await admin.mget("chat:{global}:epoch", "chat:{global}:seq") == [
            str(EPOCH_MS + 60_000),
            "1",
        ]
    finally:
        await raw.aclose()


async def test_publishing_an_event_twice_is_refused(brokers: Brokers) -> None:
    a = await brokers()
    published = await a.publish(event(1))
    with pytest.raises(ValueError, match="already published"):
        await a.publish(published)
    assert published.id == EventId(EPOCH_MS, 1)


# -- live delivery ------------------------------------------------------------------------


async def test_events_reach_every_listener_once_in_order_and_reading_no_log(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a = await brokers()
    b = await brokers()
    first = await listening(b)
    second = Inbox()
    b.attach(second)
    await admin.config_resetstat()
    published = [await a.publish(event(n)) for n in (1, 2, 3)]
    assert await first.until(3) == [1, 2, 3]
    assert await second.until(3) == [1, 2, 3]
    assert [e.id for e in first.events] == [e.id for e in published]
    assert [e.id for e in published] == [EventId(EPOCH_MS, seq) for seq in (1, 2, 3)]
    assert first.events[0].data == {"n": 1, "note": "a b c"}
    assert first.events[0].channels == (user_channel(1),)
    assert first.events[0].tenant_id == TENANT
    assert first.events[0].published_at == published[0].published_at
    # The next event in order is handed over as it comes: no read of the log.
    assert await calls(admin, "xrange") == 0
    b.detach(second)
    await a.publish(event(4))
    assert await first.until(4) == [1, 2, 3, 4]
    assert len(second.events) == 3
    assert b.stats() == QUIET_STATS
    await b.disconnect()  # the live feed's connection goes back
    async with asyncio.timeout(WAIT):
        while await subscribers(admin) != 1:  # a's alone
            await asyncio.sleep(0.01)


async def test_a_broker_starts_with_empty_counters_and_one_set_of_stream_slots(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a = await brokers(slot_lease_seconds=42.0, connect=False)
    assert a.stats() == QUIET_STATS
    assert a.accepting is True
    slots = a.stream_slots()
    assert isinstance(slots, RedisStreamSlots)
    assert a.stream_slots() is slots
    before = time.time() * 1000
    assert await slots.acquire(1, "c1", limit=1) is True
    assert await slots.acquire(1, "c2", limit=1) is False
    ((_, expires),) = await admin.zrange("chat:streams:{u1}", 0, -1, withscores=True)
    assert before + 41_000 < expires < time.time() * 1000 + 42_000  # one lease of 42 s


async def test_a_lost_live_message_is_filled_from_the_log_before_the_next_event(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a = await brokers()
    b = await brokers()
    inbox = await listening(b)
    await a.publish(event(1))
    assert await inbox.until(1) == [1]
    await logged_but_not_published(admin, 2)  # its live message lost
    await a.publish(event(3))
    assert await inbox.until(3) == [1, 2, 3]
    assert [e.id for e in inbox.events] == [EventId(EPOCH_MS, seq) for seq in (1, 2, 3)]
    assert inbox.events[1].data == {"n": 2, "note": "a b c"}
    assert b.stats()["gapsFilled"] == 1
    for n in (4, 5):
        await logged_but_not_published(admin, n)
    await a.publish(event(6))
    await a.publish(event(7))  # after it, nothing may come twice
    assert await inbox.until(7) == [1, 2, 3, 4, 5, 6, 7]
    assert b.stats()["gapsFilled"] == 3


async def test_repeated_live_frames_are_dropped(brokers: Brokers, admin: aioredis.Redis) -> None:
    a = await brokers()
    b = await brokers()
    inbox = await listening(b)
    for n in (1, 2, 3):
        await a.publish(event(n))
    assert await inbox.until(3) == [1, 2, 3]
    # Frames of events already delivered (as after a catch-up, when the live feed brings
    # what the log already gave): the same, and an older one.
    for seq in (3, 2):
        await admin.publish(LIVE_CHANNEL, f"t7 {EPOCH_MS} {seq} {stored(seq)}")
    await a.publish(event(4))
    assert await inbox.until(4) == [1, 2, 3, 4]
    assert b.stats()["gapsFilled"] == 0


async def test_following_a_tenant_with_history_hands_over_only_newer_events(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a = await brokers()
    b = await brokers()
    inbox = Inbox()
    b.attach(inbox)
    await a.publish(event(1))
    await a.publish(event(2))
    assert await inbox.until(2) == [1, 2]  # live, but not followed yet
    await b.follow(TENANT)
    await admin.config_resetstat()
    await b.follow(TENANT)  # already followed: nothing to read
    assert await calls(admin, "mget") == 0
    await a.publish(event(3))
    await a.publish(event(4))
    assert await inbox.until(4) == [1, 2, 3, 4]  # 1 and 2 not again from the log
    assert b.stats()["gapsFilled"] == 0


async def test_a_log_whose_sequence_is_gone_counts_as_nothing_published(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    await admin.set(EPOCH, EPOCH_MS)  # an epoch without its sequence (evicted, say)
    a = await brokers()
    assert await a.history([user_channel(1)], EventId(EPOCH_MS, 0), TENANT) == []
    assert await a.history([user_channel(1)], EventId(EPOCH_MS, 1), TENANT) is None
    b = await brokers()
    inbox = await listening(b)
    await admin.config_resetstat()
    await a.publish(event(1))
    await a.publish(event(2))
    assert await inbox.until(2) == [1, 2]
    assert [e.id for e in inbox.events] == [EventId(EPOCH_MS, 1), EventId(EPOCH_MS, 2)]
    assert b.stats()["gapsFilled"] == 0
    assert await calls(admin, "xrange") == 0  # the first event is no gap either


async def test_an_idle_live_feed_takes_no_cpu_and_still_delivers(
    brokers: Brokers,
) -> None:
    a = await brokers()
    b = await brokers()
    inbox = await listening(b)
    cpu = time.process_time()
    await asyncio.sleep(1.3)  # the window measured: longer than one wait for a message
    assert time.process_time() - cpu < 0.1
    await a.publish(event(1))
    assert await inbox.until(1) == [1]


# -- a lost live feed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "retries", [True, False], ids=["redis-py reconnects", "the broker reconnects"]
)
async def test_a_lost_live_feed_catches_up_from_the_log_without_waiting_for_an_event(
    brokers: Brokers,
    admin: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
    retries: bool,
) -> None:
    a = await brokers()
    b = await brokers(retries=retries, name="b")
    inbox = await listening(b)
    await a.publish(event(1))
    assert await inbox.until(1) == [1]
    await logged_but_not_published(admin, 2)
    await logged_but_not_published(admin, 3)
    with caplog.at_level(logging.WARNING, logger=BROKER_LOG):
        await kill_live_feed(admin, "b")
        assert await inbox.until(3) == [1, 2, 3]  # nothing else was published
    assert [e.id for e in inbox.events] == [EventId(EPOCH_MS, seq) for seq in (1, 2, 3)]
    assert warnings(caplog, "Redis live feed lost") == 1
    assert b.stats()["gapsFilled"] == 2
    assert b.stats()["liveReconnects"] == 1
    # The broker's own client is used again, on the connections the pool hands out: no
    # second reconnection is counted for any of them.
    for n in (4, 5, 6):
        await b.publish(event(n))
    assert await inbox.until(6) == [1, 2, 3, 4, 5, 6]
    assert b.stats()["liveReconnects"] == 1


async def test_the_live_feed_pauses_between_attempts_and_a_new_connect_waits_for_it(
    brokers: Brokers,
    admin: aioredis.Redis,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = await brokers(reconnect_seconds=0.1, subscribe_timeout_seconds=0.3)
    inbox = await listening(b)
    with caplog.at_level(logging.WARNING, logger=BROKER_LOG):
        redis_server.stop()
        started = time.monotonic()
        await until_reconnects(b, 4)
        assert time.monotonic() - started >= 3 * 0.1  # three pauses between four attempts
        assert warnings(caplog, "Redis live feed lost") >= 4
        await b.disconnect()
        started = time.monotonic()
        await b.connect()  # Redis still down: gives up on the subscription after its timeout
        assert time.monotonic() - started >= 0.3
        redis_server.start()
    await until_subscribers(admin, 1)
    a = await brokers()
    await a.publish(event(1))
    assert await inbox.until(1) == [1]


async def test_connect_returns_once_the_live_feed_is_subscribed(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    b = await brokers(connect=False, subscribe_timeout_seconds=3.0)
    started = time.monotonic()
    await b.connect()
    assert time.monotonic() - started < 3.0
    assert await subscribers(admin) == 1


# -- a Redis that lost its data -----------------------------------------------------------


async def _after_losing_the_feed(
    a: RedisBroker, b: RedisBroker, admin: aioredis.Redis, inbox: Inbox, count: int
) -> None:
    """Kill the live feed, and wait until `b` has caught up after it: an announcement (no
    tenant, so never caught up) published once it is subscribed again comes after that.
    `b` has redis-py's retries: it reconnects the same connection, subscribed again before
    the broker counts the loss (without retries, redis-py still resubscribes the lost
    connection once before giving up, and the broker then replaces it: an announcement
    could reach that one and be lost with it)."""
    await admin.client_kill_filter(_type="pubsub")
    await until_reconnects(b, 1)
    await until_subscribers(admin, 2)
    await a.publish(event(0, tenant=None))
    await inbox.until(count)


async def test_after_redis_lost_its_log_the_next_events_count_from_one(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a = await brokers()  # its clock does not move: the new log even has the old epoch
    b = await brokers(retries=True)
    inbox = await listening(b)
    await a.publish(event(1))
    await a.publish(event(2))
    assert await inbox.until(2) == [1, 2]
    await admin.flushall()
    await _after_losing_the_feed(a, b, admin, inbox, 3)
    await a.publish(event(3))
    await a.publish(event(4))
    assert await inbox.until(5) == [1, 2, 0, 3, 4]
    assert [e.id for e in inbox.events[3:]] == [EventId(EPOCH_MS, 1), EventId(EPOCH_MS, 2)]


async def test_a_new_log_found_after_a_lost_feed_is_delivered_from_its_start(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a = await brokers()
    b = await brokers()
    inbox = await listening(b)
    await a.publish(event(1))
    await a.publish(event(2))
    assert await inbox.until(2) == [1, 2]
    await admin.flushall()
    await admin.set(EPOCH, EPOCH_MS + 1)  # a new history, not published live
    for n in (3, 4):
        await logged_but_not_published(admin, n)
    await admin.client_kill_filter(_type="pubsub")
    assert await inbox.until(4) == [1, 2, 3, 4]
    assert [e.id for e in inbox.events[2:]] == [
        EventId(EPOCH_MS + 1, 1),
        EventId(EPOCH_MS + 1, 2),
    ]
    assert b.stats()["gapsFilled"] == 2
    await a.publish(event(5))
    assert await inbox.until(5) == [1, 2, 3, 4, 5]
    assert inbox.events[-1].id == EventId(EPOCH_MS + 1, 3)


async def test_an_empty_new_log_found_after_a_lost_feed_is_followed_from_its_start(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a = await brokers()
    b = await brokers(retries=True)
    inbox = await listening(b)
    await a.publish(event(1))
    assert await inbox.until(1) == [1]
    await admin.flushall()
    await admin.set(EPOCH, EPOCH_MS + 1)  # a new history, nothing in it yet
    await _after_losing_the_feed(a, b, admin, inbox, 2)
    await admin.config_resetstat()
    await a.publish(event(2))
    assert await inbox.until(3) == [1, 0, 2]
    assert inbox.events[-1].id == EventId(EPOCH_MS + 1, 1)
    assert await calls(admin, "xrange") == 0  # its first event is no gap


PRIMARY = "chat:{t7}:primary"
ENDED = "chat:{t7}:ended"
# A replication id no server here has: the epoch's ids were issued by a primary since gone.
FORMER_PRIMARY = "0" * 40


async def _promoted(admin: aioredis.Redis) -> None:
    """What a failover leaves for the next publish: the tenant's epoch was begun by a primary
    whose replication id is not this server's (its replica was promoted since)."""
    await admin.set(PRIMARY, FORMER_PRIMARY)


def _failover_resync(event: Event) -> bool:
    return (
        event.type == EventType.RESYNC
        and event.data == {"reason": "failover"}
        and event.tenant_id == TENANT
        and event.channels == (tenant_channel(TENANT),)
        and event.id is None
    )


async def test_a_promoted_primary_starts_a_later_epoch_and_listeners_get_one_failover_resync(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a = await brokers()  # its clock does not move: the new epoch is the old one plus one
    b = await brokers()
    inbox = await listening(b)
    await a.publish(event(1))
    await a.publish(event(2))
    assert await inbox.until(2) == [1, 2]
    await _promoted(admin)
    await a.publish(event(3))
    await a.publish(event(4))
    assert await inbox.until(5) == [1, 2, None, 3, 4]
    assert _failover_resync(inbox.events[2])
    # The new epoch's ids start again at 1, later than every id of the old one.
    assert [e.id for e in inbox.events[3:]] == [
        EventId(EPOCH_MS + 1, 1),
        EventId(EPOCH_MS + 1, 2),
    ]
    assert await admin.get(ENDED) == str(EPOCH_MS)
    # Replay across the failover is refused (the old ids are unknown to the new epoch).
    assert await a.history([user_channel(1)], EventId(EPOCH_MS, 1), TENANT) is None


async def test_a_new_epoch_after_a_failover_is_the_clock_when_it_is_later(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    clock = Clock()
    a = await brokers(clock=clock)
    inbox = await listening(await brokers())
    await a.publish(event(1))
    assert await inbox.until(1) == [1]
    clock.now += 60.0
    await _promoted(admin)
    await a.publish(event(2))
    assert await inbox.until(3) == [1, None, 2]
    assert _failover_resync(inbox.events[1])
    assert inbox.events[2].id == EventId(EPOCH_MS + 60_000, 1)


async def test_a_broker_that_missed_the_failover_live_resyncs_when_it_catches_up(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a = await brokers()
    b = await brokers(retries=True)
    inbox = await listening(b)
    await a.publish(event(1))
    assert await inbox.until(1) == [1]
    await _promoted(admin)
    await a.publish(event(2))  # a new epoch; `b` takes it live
    assert await inbox.until(3) == [1, None, 2]
    assert _failover_resync(inbox.events[1])
    # Another failover, whose first event `b` misses: it learns of it catching up.
    await _promoted(admin)
    await admin.set(EPOCH, EPOCH_MS + 5)
    await admin.set(ENDED, EPOCH_MS + 1)
    await admin.delete(SEQ, LOG)
    await logged_but_not_published(admin, 3)
    await _after_losing_the_feed(a, b, admin, inbox, 6)
    kinds = [(e.type, e.data.get("n")) for e in inbox.events[3:]]
    assert kinds[:2] == [(EventType.RESYNC, None), (EventType.NOTIFICATION_NEW, 3)]
    assert _failover_resync(inbox.events[3])
    assert inbox.events[4].id == EventId(EPOCH_MS + 5, 1)


async def test_a_restart_that_lost_everything_is_a_new_epoch_without_a_resync(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    """No failover (no ended epoch recorded): the new history is delivered from its start,
    as before Sentinel support, and nobody is told to resync."""
    a = await brokers()
    b = await brokers()
    inbox = await listening(b)
    await a.publish(event(1))
    assert await inbox.until(1) == [1]
    await admin.flushall()
    await admin.set(EPOCH, EPOCH_MS + 7)
    await a.publish(event(2))
    assert await inbox.until(2) == [1, 2]
    assert inbox.events[1].id == EventId(EPOCH_MS + 7, 1)
    assert not any(e.type == EventType.RESYNC for e in inbox.events)


# -- the outbox ---------------------------------------------------------------------------


async def test_while_redis_refuses_writes_events_wait_in_order_and_go_out_after(
    brokers: Brokers, admin: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    a = await brokers(outbox_size=3, reconnect_seconds=0.1)
    b = await brokers()
    inbox = await listening(b)
    await admin.config_resetstat()
    await admin.config_set("min-replicas-to-write", 1)  # every write refused, reads work
    waiting = [event(n) for n in (1, 2, 3)]
    with caplog.at_level(logging.WARNING, logger=BROKER_LOG):
        for number, one in enumerate(waiting, start=1):
            assert await a.publish(one) is one
            assert one.id is None
            assert a.accepting is (number < 3)
    # Only the first publish tried Redis; the others went behind it without trying.
    assert warnings(caplog, "event queued in the outbox") == 1
    with pytest.raises(BrokerUnavailable):
        await a.publish(event(4))
    assert a.stats()["outbox"] == 3
    attempts = await calls(admin, "evalsha", "failed_calls")
    started = time.monotonic()
    async with asyncio.timeout(WAIT):
        while await calls(admin, "evalsha", "failed_calls") < attempts + 3:
            await asyncio.sleep(0.01)
    assert time.monotonic() - started >= 2 * 0.1  # a pause between attempts
    assert a.stats()["outbox"] == 3  # a failed attempt keeps its event
    assert inbox.events == []
    await admin.config_set("min-replicas-to-write", 0)
    assert await inbox.until(3) == [1, 2, 3]
    assert [e.id for e in waiting] == [EventId(EPOCH_MS, seq) for seq in (1, 2, 3)]
    assert [e.id for e in inbox.events] == [e.id for e in waiting]
    assert a.stats()["outbox"] == 0
    assert a.accepting is True
    later = await a.publish(event(5))  # straight through again
    assert later.id == EventId(EPOCH_MS, 4)
    assert await inbox.until(4) == [1, 2, 3, 5]


# -- replay -------------------------------------------------------------------------------


async def test_history_answers_from_the_tenants_log_or_says_it_cannot(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a = await brokers()
    start = await a.publish(event(1))
    await a.publish(event(2, user=2))
    await a.publish(event(3))
    await a.publish(event(4))
    assert start.id is not None
    mine = [user_channel(1)]
    replay = await a.history(mine, start.id, TENANT)
    assert replay is not None
    assert [e.data["n"] for e in replay] == [3, 4]
    assert [e.id for e in replay] == [EventId(EPOCH_MS, 3), EventId(EPOCH_MS, 4)]
    assert replay[0].channels == (user_channel(1),) and replay[0].tenant_id == TENANT
    both = await a.history([user_channel(1), user_channel(2)], start.id, TENANT)
    assert [e.data["n"] for e in both or []] == [2, 3, 4]
    assert await a.history(mine, EventId(EPOCH_MS, 4), TENANT) == []  # up to date
    assert await a.history(mine, EventId(EPOCH_MS + 1, 1), TENANT) is None  # another log
    assert await a.history(mine, EventId(EPOCH_MS, 1), TENANT + 1) is None  # no log at all
    await admin.config_resetstat()
    assert await a.history(mine, EventId(EPOCH_MS, 5), TENANT) is None  # from the future
    assert await calls(admin, "xrange") == 0  # known from the sequence alone
    # Events of no tenant are delivered live but never replayed, though logged.
    note = await a.publish(event(5, tenant=None))
    await a.publish(event(6, tenant=None))
    assert note.id is not None
    assert await a.history(mine, note.id, None) is None
    # A log trimmed past the resume point has a gap; one trimmed to nothing has no answer.
    await admin.xtrim(LOG, maxlen=2, approximate=False)
    assert await a.history(mine, start.id, TENANT) is None
    assert [e.data["n"] for e in await a.history(mine, EventId(EPOCH_MS, 2), TENANT) or []] == [
        3,
        4,
    ]
    await admin.xtrim(LOG, maxlen=0, approximate=False)
    assert await a.history(mine, EventId(EPOCH_MS, 2), TENANT) is None


async def test_history_keeps_to_the_replay_window_to_the_last_fraction_of_a_second(
    brokers: Brokers,
) -> None:
    clock = Clock(1_700_000_000.0)
    a = await brokers(clock=clock, replay_max_age_seconds=300.0)
    start = await a.publish(event(1, at=clock.now - 500))
    await a.publish(event(2, at=clock.now - 300))  # exactly as old as the window
    await a.publish(event(3, at=clock.now - 10))
    await a.publish(event(4, at=clock.now))
    assert start.id is not None
    mine = [user_channel(1)]
    replay = await a.history(mine, start.id, TENANT)
    assert [e.data["n"] for e in replay or []] == [2, 3, 4]
    clock.now += 0.5  # now the oldest one left the window: the replay would have a hole
    assert await a.history(mine, start.id, TENANT) is None


async def test_the_log_is_capped_near_its_maximum(brokers: Brokers, admin: aioredis.Redis) -> None:
    a = await brokers(log_max_events=10)
    for n in range(300):
        await a.publish(event(n))
    # MAXLEN ~ trims whole nodes of the stream (100 entries): never below 10, far below 300.
    assert 10 <= await admin.xlen(LOG) <= 110


# -- a conversation's order across processes ---------------------------------------------

CONVERSATION = 40
FILLED = "chat:{t7}:filled"


async def order_of(admin: aioredis.Redis, tenant: int) -> str | None:
    """The newest message of the conversation published, as Redis keeps it."""
    key = "chat:{t" + str(tenant) + "}:order"
    newest: str | None = await admin.hget(key, str(CONVERSATION))  # type: ignore[misc]  # redis-py types replies Awaitable | value
    return newest


def message(n: int, previous: int | None, conversation: int = CONVERSATION) -> Event:
    """The chat:message of message `n` of a conversation, stored after `previous`."""
    return Event(
        type=EventType.CHAT_MESSAGE,
        data={"n": n},
        channels=(user_channel(1),),
        tenant_id=TENANT,
        order=MessageOrder(conversation, n, previous),
    )


class Database:
    """The filler of a gap, reading from stored messages as app/domain/messages.py does."""

    def __init__(self, stored: list[int]) -> None:
        self.stored = stored
        self.asked: list[tuple[int, int, int, int]] = []
        self.fails = False

    async def __call__(
        self, tenant: int, conversation: int, after: int, before: int
    ) -> list[Event]:
        self.asked.append((tenant, conversation, after, before))
        if self.fails:
            raise RuntimeError("the database is unreachable")
        return [
            Event(
                type=EventType.CHAT_MESSAGE,
                data={"n": n, "refilled": True},
                channels=(user_channel(1),),
                tenant_id=tenant,
                order=MessageOrder(conversation, n),
            )
            for n in self.stored
            if after < n < before
        ]


async def test_a_message_whose_predecessor_waits_in_another_process_goes_out_after_it(
    brokers: Brokers, admin: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=PUBLISH_LOG)
    a, b = await brokers(), await brokers()
    database = Database(stored=[1, 2, 3])
    a.fill_gaps_with(database)
    b.fill_gaps_with(database)
    inbox = await listening(a)
    await a.publish(message(1, None))
    assert await inbox.until(1) == [1]
    # Message 2 was stored by b, which has not published it yet; a publishes message 3.
    third = await a.publish(message(3, 2))
    assert await inbox.until(3) == [1, 2, 3]
    assert inbox.events[1].data["refilled"] is True
    assert database.asked == [(TENANT, CONVERSATION, 1, 3)]
    assert third.id == inbox.events[2].id
    # b's own copy of message 2 comes late: it is skipped, and what follows goes out.
    late = await b.publish(message(2, 1))
    assert late.id is None
    await b.publish(message(4, 3))
    assert await inbox.until(4) == [1, 2, 3, 4]
    assert await order_of(admin, TENANT) == "4"
    assert await admin.exists(FILLED) == 0  # the refill's mark went with its original
    assert a.stats()["orderGaps"] == 1
    assert a.stats()["orderFilled"] == 1
    assert b.stats()["orderDuplicates"] == 1
    assert [e.id.seq for e in inbox.events if e.id] == [1, 2, 3, 4]
    # The log says it too (docs/OPERATIONS.md): the refill's publish, the late copy skipped.
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == PUBLISH_LOG]
    refilled = [line for line in lines if line["event"] == "event.publish"]
    assert str(inbox.events[1].id) in [line["eventId"] for line in refilled]
    [skipped] = [line for line in lines if line["event"] == "event.duplicate"]
    assert skipped["conversation"] == CONVERSATION and skipped["message"] == 2


async def test_a_retried_publish_whose_first_try_went_out_is_not_delivered_twice(
    brokers: Brokers,
) -> None:
    a = await brokers()
    inbox = await listening(a)
    await a.publish(message(1, None))
    again = await a.publish(message(1, None))  # as after a reply lost on the way back
    await a.publish(message(2, 1))
    assert await inbox.until(2) == [1, 2]
    assert again.id is None
    assert len(inbox.events) == 2


async def test_a_gap_with_nothing_stored_in_it_publishes_the_message_at_once(
    brokers: Brokers,
) -> None:
    a = await brokers()  # with no filler: what a process without a database would find
    inbox = await listening(a)
    await a.publish(message(5, 4))  # the first the broker sees of it: no known gap
    await a.publish(event(6))  # an event of no conversation is not held by its order
    await a.publish(message(7, 6))
    assert await inbox.until(3) == [5, 6, 7]
    assert a.stats()["orderGaps"] == 1
    assert a.stats()["orderFilled"] == 0
    assert a.stats()["orderFillFailures"] == 0  # nothing to read is not a failure to read


async def test_the_positions_a_process_keeps_are_the_most_recently_published(
    brokers: Brokers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table that outlives a Redis restarted empty is bounded (_KNOWN_POSITIONS): the
    conversation published to longest ago leaves it first."""
    monkeypatch.setattr(redis_broker, "_KNOWN_POSITIONS", 2)
    a = await brokers()
    inbox = await listening(a)
    await a.publish(message(10, None, conversation=1))
    await a.publish(message(20, None, conversation=2))
    await inbox.until(2)
    assert dict(a._positions) == {(TENANT, 1): 10, (TENANT, 2): 20}
    await a.publish(message(11, 10, conversation=1))  # conversation 1 is the recent one now
    await a.publish(message(30, None, conversation=3))
    await inbox.until(4)
    assert dict(a._positions) == {(TENANT, 1): 11, (TENANT, 3): 30}


async def test_after_redis_lost_its_data_the_position_this_process_saw_still_finds_gaps(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a, b = await brokers(retries=True), await brokers(retries=True)
    database = Database(stored=[1, 2, 3, 4])
    a.fill_gaps_with(database)
    inbox = await listening(a)
    await a.publish(message(1, None))
    await b.publish(message(2, 1))
    assert await inbox.until(2) == [1, 2]
    await admin.flushall()  # a Redis restarted empty: the conversation's position is gone
    await _after_losing_the_feed(b, a, admin, inbox, 3)
    await a.publish(message(4, 3))  # 3 waits in b's outbox
    assert await inbox.until(5) == [1, 2, 0, 3, 4]
    assert database.asked == [(TENANT, CONVERSATION, 2, 4)]
    assert (await b.publish(message(3, 2))).id is None


async def test_a_gap_the_database_cannot_fill_is_published_anyway_and_its_message_later(
    brokers: Brokers, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await brokers(), await brokers()
    database = Database(stored=[1, 2, 3])
    database.fails = True
    a.fill_gaps_with(database)
    inbox = await listening(a)
    await a.publish(message(1, None))
    with caplog.at_level(logging.ERROR, logger=BROKER_LOG):
        await a.publish(message(3, 2))
    assert "could not read the messages before" in caplog.text
    late = await b.publish(message(2, 1))  # late, but not lost
    assert late.id is not None
    assert await inbox.until(3) == [1, 3, 2]
    assert a.stats()["orderFillFailures"] == 1
    await a.publish(message(4, 3))  # the order goes on from the newest
    assert await inbox.until(4) == [1, 3, 2, 4]
    assert a.stats()["orderGaps"] == 1


async def test_a_copy_that_waited_in_the_outbox_and_went_out_already_is_no_publish_line(
    brokers: Brokers, admin: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Message 1 waits in b's outbox while a publishes it (a retry's first try that did go
    out, or a refill): when b's copy finally goes, it is a duplicate, logged as one."""
    caplog.set_level(logging.INFO, logger=PUBLISH_LOG)
    # b tries its outbox again only after 0.5 s: a's copy, published at once, goes first.
    a, b = await brokers(), await brokers(reconnect_seconds=0.5)
    inbox = await listening(a)
    await admin.config_resetstat()
    await admin.config_set("min-replicas-to-write", 1)  # b's first try is refused
    late = await b.publish(message(1, None))
    assert late.id is None and b.stats()["outbox"] == 1
    async with asyncio.timeout(WAIT):  # and its outbox's first try too: it waits 0.5 s now
        while await calls(admin, "evalsha", "failed_calls") < 2:
            await asyncio.sleep(0.01)
    await admin.config_set("min-replicas-to-write", 0)
    await a.publish(message(1, None))
    async with asyncio.timeout(WAIT):
        while b.stats()["outbox"]:
            await asyncio.sleep(0.01)
    assert await inbox.until(1) == [1]
    assert (a.stats()["orderDuplicates"], b.stats()["orderDuplicates"]) == (0, 1)
    assert late.id is None  # b's copy never went out
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == PUBLISH_LOG]
    published = [line["eventId"] for line in lines if line["event"] == "event.publish"]
    # The broker writes event.publish for what its outbox sends (a's own is the manager's):
    # none for b's skipped copy.
    assert published == []
    assert [line["event"] for line in lines].count("event.duplicate") == 1


async def test_a_conversation_s_order_is_kept_per_tenant(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a = await brokers()
    database = Database(stored=[])
    a.fill_gaps_with(database)
    inbox = await listening(a)
    await a.publish(message(1, None))
    other = message(9, 8)
    other.tenant_id = TENANT + 1  # the same conversation id in another tenant's keys
    await a.publish(other)
    await a.publish(message(2, 1))
    assert await inbox.until(3) == [1, 9, 2]
    assert database.asked == []
    assert await order_of(admin, TENANT + 1) == "9"


async def test_a_promoted_replica_s_lagging_positions_refill_nothing_already_delivered(
    brokers: Brokers, admin: aioredis.Redis
) -> None:
    a = await brokers()
    database = Database(stored=[1, 2, 3, 4])
    a.fill_gaps_with(database)
    inbox = await listening(a)
    for n, previous in ((1, None), (2, 1), (3, 2)):
        await a.publish(message(n, previous))
    assert await inbox.until(3) == [1, 2, 3]
    # The replica heard of message 1 only before it was promoted.
    await admin.hset("chat:{t7}:order", str(CONVERSATION), "1")  # type: ignore[misc]  # redis-py types replies Awaitable | value
    await _promoted(admin)
    await a.publish(message(4, 3))
    assert await inbox.until(5) == [1, 2, 3, None, 4]
    assert _failover_resync(inbox.events[3])
    assert database.asked == []  # 2 and 3 went out already: this process saw them
    assert await order_of(admin, TENANT) == "4"
