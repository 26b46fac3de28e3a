"""app/logs.py's two formats, its configuration, and the vocabulary the manager writes."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app import logs
from app.logs import JsonFormatter, TextFormatter, log_event
from app.realtime.broker.memory import MemoryBroker
from app.realtime.broker.redis import RedisBroker
from app.realtime.channels import tenant_channel
from app.realtime.client import Client, ClientKind, CloseReason
from app.realtime.events import Event, EventType
from app.realtime.ids import EventId
from app.realtime.manager import ConnectionManager, TooManyStreams, TooManyTabs
from tests.realtime_helpers import ManagerFactory
from tests.redis_server import RedisServer

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(JsonFormatter().format(record)) for record in self.records]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["event"] == event]


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    """Every record of the app's loggers, whatever handlers a start configured."""
    logger = logging.getLogger(logs.APP_LOGGER)
    handler, level = Recorded(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _record(event: str, **fields: Any) -> logging.LogRecord:
    recorded = Recorded()
    logger = logging.getLogger("app.test_logs")
    logger.addHandler(recorded)
    logger.setLevel(logging.DEBUG)
    try:
        log_event(logger, event, **fields)
    finally:
        logger.removeHandler(recorded)
    (record,) = recorded.records
    return record


# -- the formats -----------------------------------------------------------------------


def test_a_json_line_has_the_four_keys_then_the_fields() -> None:
    record = _record(
        "stream.connect",
        user=2,
        channels=frozenset({"user:2", "global"}),
        lastEventId=EventId(17, 42),
        types=None,
        reason=CloseReason.SLOW_CONSUMER,
    )
    line = json.loads(JsonFormatter().format(record))
    assert list(line)[:5] == ["ts", "level", "logger", "event", "pid"]
    assert ISO_UTC.fullmatch(line["ts"]), line["ts"]
    assert line == {
        "ts": line["ts"],
        "level": "INFO",
        "logger": "app.test_logs",
        "event": "stream.connect",
        "pid": os.getpid(),
        "user": 2,
        "channels": ["global", "user:2"],
        "lastEventId": "17-42",
        "types": None,
        "reason": "slow_consumer",
    }


def test_a_text_line_shows_the_same_fields_as_key_value() -> None:
    record = _record(
        "stream.disconnect", user=2, channels=("user:2", "global"), lastDelivered=None, why="a b"
    )
    text = TextFormatter().format(record)
    assert ISO_UTC.match(text)
    assert text.split(" ", 1)[1] == (
        f'INFO app.test_logs[{os.getpid()}] stream.disconnect user=2 channels=user:2,global lastDelivered=- why="a b"'
    )


def test_a_line_not_of_the_vocabulary_is_event_log_with_its_message() -> None:
    logger = logging.getLogger("app.test_logs")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "failed %s", ("twice",), sys.exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert (line["event"], line["message"], line["level"]) == ("log", "failed twice", "ERROR")
    assert "ValueError: boom" in line["exc"]
    assert (
        TextFormatter()
        .format(record)
        .split(" ", 1)[1]
        .startswith(f"ERROR app.test_logs[{os.getpid()}]: failed twice\nTraceback")
    )


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_configure_writes_the_format_at_the_level_and_once(log_format: str) -> None:
    logger = logging.getLogger(logs.APP_LOGGER)
    before = (list(logger.handlers), logger.level, logger.propagate)
    out = io.StringIO()
    try:
        logs.configure(log_format, "INFO", io.StringIO())
        logs.configure(log_format, "INFO", out)  # again: replaces, never adds
        log_event(logging.getLogger("app.x"), "tab.connect", user=1)
        log_event(logging.getLogger("app.x"), "quiet", logging.DEBUG, user=1)
    finally:
        logger.handlers[:], logger.level, logger.propagate = before
    (line,) = out.getvalue().splitlines()
    if log_format == "json":
        assert json.loads(line)["event"] == "tab.connect"
    else:
        assert line.endswith(f" INFO app.x[{os.getpid()}] tab.connect user=1")


def test_parse_lines_keeps_only_our_json_lines() -> None:
    ours = '{"ts":"t","level":"INFO","logger":"app","event":"tab.connect"}'
    assert logs.parse_lines(["INFO:     Started", ours, "{not json", '{"a": 1}']) == [
        json.loads(ours)
    ]


# -- the manager's vocabulary ----------------------------------------------------------


@pytest.fixture
async def manager(managers: ManagerFactory) -> ConnectionManager:
    return await managers(queue_size=2, max_streams_per_user=1)


async def _publish(manager: ConnectionManager, user_id: int = 1) -> Event:
    event = Event(
        type=EventType.NOTIFICATION_READ,
        data={"id": 1, "all": False, "unreadCount": 0},
        channels=(f"user:{user_id}",),
        tenant_id=1,
    )
    return await manager.publish(event)


async def test_a_slow_consumer_is_cut_then_disconnected_with_what_it_got(
    manager: ConnectionManager, recorded: Recorded
) -> None:
    client = (await manager.connect(user_id=1, tenant_id=1)).client
    first = await _publish(manager)
    assert [e.id for e in client.take_batch()] == [first.id]
    for _ in range(3):
        await _publish(manager)
    (cut,) = recorded.named("stream.slow_consumer_cut")
    (end,) = recorded.named("stream.disconnect")
    assert (cut["level"], cut["client"], cut["discarded"], cut["queueLimit"]) == (
        "WARNING",
        client.id,
        2,
        2,
    )
    assert end["reason"] == "slow_consumer"
    assert (end["delivered"], end["firstDelivered"], end["lastDelivered"]) == (
        1,
        str(first.id),
        str(first.id),
    )
    publishes = recorded.named("event.publish")
    assert len(publishes) == 4
    assert publishes[0] | {"ts": None} == {
        "ts": None,
        "pid": os.getpid(),
        "level": "INFO",
        "logger": "app.realtime.publish_log",
        "event": "event.publish",
        "eventId": str(first.id),
        "type": "notification:read",
        "channels": ["user:1"],
        "tenant": 1,
    }


async def test_a_resume_says_how_many_were_replayed_and_which(
    manager: ConnectionManager, recorded: Recorded
) -> None:
    seen = await _publish(manager)
    missed = [await _publish(manager), await _publish(manager, user_id=2), await _publish(manager)]
    connection = await manager.connect(user_id=1, tenant_id=1, last_event_id=str(seen.id))
    (connect,) = recorded.named("stream.connect")
    (resume,) = recorded.named("stream.resume")
    assert connect["lastEventId"] == str(seen.id)
    assert connect["channels"] == ["global", "tenant:1", "user:1"]
    assert (resume["replayed"], resume["replayedFirst"], resume["replayedLast"]) == (
        2,
        str(missed[0].id),
        str(missed[2].id),
    )
    manager.disconnect(connection.client)
    (end,) = recorded.named("stream.disconnect")
    assert (end["reason"], end["delivered"]) == ("disconnected", 0)
    assert (end["firstDelivered"], end["lastDelivered"]) == (str(missed[0].id), str(missed[2].id))


async def test_an_unknown_last_event_id_is_a_resync_with_its_reason(
    manager: ConnectionManager, recorded: Recorded
) -> None:
    await manager.connect(user_id=1, tenant_id=1, last_event_id="garbage")
    (resync,) = recorded.named("stream.resync")
    assert (resync["level"], resync["reason"], resync["lastEventId"]) == (
        "WARNING",
        "unknown_id",
        "garbage",
    )
    assert recorded.named("stream.resume") == []


async def test_an_ended_session_a_refusal_and_a_tab(
    manager: ConnectionManager, recorded: Recorded
) -> None:
    await manager.connect(user_id=1, tenant_id=1, session_ref="token-1")
    with pytest.raises(TooManyStreams):
        await manager.connect(user_id=1, tenant_id=1)
    tab = (await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)).client
    manager.close_where(lambda c: c.session_ref == "token-1", CloseReason.SESSION_ENDED)
    manager.disconnect(tab)
    (refused,) = recorded.named("stream.refused")
    assert (refused["level"], refused["reason"]) == ("WARNING", "too_many_streams")
    assert [line["event"] for line in recorded.lines()] == [
        "stream.connect",
        "stream.refused",
        "tab.connect",
        "stream.session_ended",
        "stream.disconnect",
        "tab.disconnect",
    ]
    assert recorded.named("stream.disconnect")[0]["reason"] == "session_ended"
    assert recorded.named("tab.disconnect")[0]["client"] == tab.id


async def test_an_event_waiting_for_redis_is_logged_queued_then_published_with_its_id(
    redis_server: RedisServer, redis_db: aioredis.Redis, recorded: Recorded
) -> None:
    client = aioredis.Redis(
        port=redis_server.port, decode_responses=True, retry=Retry(NoBackoff(), 0)
    )
    broker = RedisBroker(
        client, log_max_events=1000, replay_max_age_seconds=300.0, reconnect_seconds=0.05
    )
    manager = ConnectionManager(broker, queue_size=10, max_streams_per_user=1, heartbeat_seconds=0)
    await manager.start()
    try:
        await redis_db.config_set("min-replicas-to-write", 1)  # every write refused
        waiting = await _publish(manager)
        assert waiting.id is None
        (queued,) = recorded.named("event.queued")
        assert (queued["level"], queued["type"], queued["channels"]) == (
            "WARNING",
            "notification:read",
            ["user:1"],
        )
        assert recorded.named("event.publish") == []
        await redis_db.config_set("min-replicas-to-write", 0)
        async with asyncio.timeout(5):
            while not recorded.named("event.publish"):
                await asyncio.sleep(0.01)
        (published,) = recorded.named("event.publish")
        assert published["eventId"] == str(waiting.id) != "None"
    finally:
        await redis_db.config_set("min-replicas-to-write", 0)
        await manager.stop()
        await client.aclose()


def _stream_client() -> Client:
    return Client(
        user_id=1,
        tenant_id=1,
        channels=frozenset({"user:1"}),
        types=None,
        kind=ClientKind.STREAM,
        max_queue=10,
    )


def test_the_delivered_range_follows_each_batch_whatever_ends_it() -> None:
    client = _stream_client()
    numbered = []
    for seq in range(1, 6):
        event = Event(type=EventType.NOTIFICATION_READ, data={}, channels=("user:1",))
        event.id = EventId(5, seq)
        numbered.append(event)
    n1, n2, n3, n4, n5 = numbered
    ping = Event(type=EventType.PING, data={})
    steps: list[tuple[list[Event], tuple[EventId | None, EventId | None]]] = [
        ([ping], (None, None)),
        ([n1, n2, ping], (n1.id, n2.id)),  # the first and last ids, a control event last
        ([ping], (n1.id, n2.id)),  # nothing numbered: the range stays
        ([n3, n4], (n1.id, n4.id)),  # an id last: the fast path
        ([n5, ping], (n1.id, n5.id)),
    ]
    for batch, expected in steps:
        for event in batch:
            client.offer(event)
        assert client.take_batch() == batch
        assert (client.first_delivered, client.last_delivered) == expected, batch


async def test_a_tab_past_the_limit_is_logged_refused(
    managers: ManagerFactory, recorded: Recorded
) -> None:
    manager = ConnectionManager(
        MemoryBroker(replay_buffer_size=10, replay_max_age_seconds=60),
        queue_size=10,
        max_streams_per_user=10,
        heartbeat_seconds=0,
        max_tabs_per_user=1,
    )
    await manager.start()
    try:
        await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)
        with pytest.raises(TooManyTabs):
            await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)
    finally:
        await manager.stop()
    (refused,) = recorded.named("tab.refused")
    assert (refused["level"], refused["user"], refused["tenant"]) == ("WARNING", 1, 1)


async def test_a_disconnect_says_how_long_the_client_stayed_to_the_millisecond(
    manager: ConnectionManager, recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = (await manager.connect(user_id=1, tenant_id=1)).client
    now = 1_800_000_000.0
    client.connected_at = now - 1.23456
    with monkeypatch.context() as frozen:
        frozen.setattr(time, "time", lambda: now)  # the disconnect's clock, held still
        manager.disconnect(client)
    (line,) = recorded.named("stream.disconnect")
    assert line["seconds"] == 1.235


def test_the_delivered_range_skips_control_events_and_starts_at_the_first_id() -> None:
    client = _stream_client()
    ping = Event(type=EventType.PING, data={})
    numbered = []
    for seq in (1, 2, 3):
        event = Event(type=EventType.NOTIFICATION_READ, data={}, channels=("user:1",))
        event.id = EventId(5, seq)
        numbered.append(event)
    for batch in ([ping], [numbered[0], ping], [ping, numbered[1], numbered[2]]):
        for event in batch:
            client.offer(event)
        client.take_batch()
        if batch == [ping]:
            assert (client.first_delivered, client.last_delivered) == (None, None)
    assert (client.first_delivered, client.last_delivered) == (EventId(5, 1), EventId(5, 3))
    assert client.delivered == 6


async def test_a_brokers_failover_resync_is_logged_for_each_client_it_reaches(
    manager: ConnectionManager, recorded: Recorded
) -> None:
    stream = (await manager.connect(user_id=1, tenant_id=1)).client
    tab = (await manager.connect(user_id=2, tenant_id=1, kind=ClientKind.TAB)).client
    await manager.connect(user_id=3, tenant_id=2)  # another tenant: not told
    resync = Event(
        type=EventType.RESYNC,
        data={"reason": "failover"},
        channels=(tenant_channel(1),),
        tenant_id=1,
    )
    for listener in manager.broker._listeners:  # type: ignore[attr-defined]  # as a Redis broker's epoch change does
        listener(resync)
    lines = [
        (line["event"], line["client"], line["reason"])
        for line in recorded.lines()
        if line["event"].endswith(".resync")
    ]
    assert sorted(lines) == [
        ("stream.resync", stream.id, "failover"),
        ("tab.resync", tab.id, "failover"),
    ]
