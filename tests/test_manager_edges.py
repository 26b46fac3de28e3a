"""Manager edges: the heartbeat loop, connect()'s error path, replay's duplicate filter and
resyncs, the per-user stream and tab counts on close, and every diagnostics counter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime

import pytest

from app.realtime.broker.memory import MemoryBroker
from app.realtime.client import Client, ClientKind, CloseReason
from app.realtime.events import Event, EventType
from app.realtime.ids import EventId
from app.realtime.manager import ConnectionManager, TooManyStreams, TooManyTabs

WAIT = 2.0


class HistoryFails(MemoryBroker):
    """A memory broker whose history store is down (as Redis can be mid-connect)."""

    async def history(
        self, channels: Iterable[str], after: EventId, tenant_id: int | None = None
    ) -> list[Event] | None:
        raise ConnectionError("history store down")


def memory_broker() -> MemoryBroker:
    return MemoryBroker(replay_buffer_size=100, replay_max_age_seconds=300)


class Managers:
    def __init__(self) -> None:
        self.started: list[ConnectionManager] = []

    async def __call__(
        self,
        broker: MemoryBroker | None = None,
        *,
        heartbeat_seconds: float = 0,
        queue_size: int = 100,
        max_streams_per_user: int = 100,
        max_tabs_per_user: int | None = None,
    ) -> ConnectionManager:
        manager = ConnectionManager(
            broker or memory_broker(),
            queue_size=queue_size,
            max_streams_per_user=max_streams_per_user,
            heartbeat_seconds=heartbeat_seconds,
            max_tabs_per_user=max_tabs_per_user,
        )
        await manager.start()
        self.started.append(manager)
        return manager


@pytest.fixture
async def managers() -> AsyncIterator[Managers]:
    factory = Managers()
    try:
        yield factory
    finally:
        for manager in reversed(factory.started):
            await manager.stop()


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.005)


async def batch(client: Client) -> list[Event]:
    async with asyncio.timeout(WAIT):
        return await client.next_batch()


def chat(user_id: int, tenant_id: int = 1) -> Event:
    return Event(
        type=EventType.CHAT_MESSAGE,
        data={"for": user_id},
        channels=(f"user:{user_id}",),
        tenant_id=tenant_id,
    )


# -- heartbeat --------------------------------------------------------------------------


async def test_the_heartbeat_loop_pings_every_client_with_an_id_less_timestamped_ping(
    managers: Managers,
) -> None:
    manager = await managers(heartbeat_seconds=0.02)
    stream = (await manager.connect(user_id=1, tenant_id=1)).client
    tab = (await manager.connect(user_id=2, tenant_id=1, kind=ClientKind.TAB)).client
    for client in (stream, tab):
        events = await batch(client)
        assert events[0].type == EventType.PING and events[0].id is None
        datetime.fromisoformat(events[0].data["ts"])
    # It goes on beating.
    assert (await batch(stream))[0].type == EventType.PING


async def test_the_heartbeat_loop_closes_a_client_whose_transport_is_gone(
    managers: Managers,
) -> None:
    manager = await managers(heartbeat_seconds=0.02)
    gone: list[Client] = []
    manager.on_disconnect(gone.append)
    alive = [True]
    connection = await manager.connect(
        user_id=1, tenant_id=1, kind=ClientKind.TAB, transport_alive=lambda: alive[0]
    )
    client = connection.client
    assert (await batch(client))[0].type == EventType.PING
    alive[0] = False
    await until(lambda: client.closed)
    assert client.close_reason is CloseReason.DISCONNECTED
    assert gone == [client]
    assert manager.clients() == []


async def test_a_failing_transport_check_keeps_the_client_and_the_heartbeat(
    managers: Managers, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> bool:
        raise RuntimeError("check broke")

    manager = await managers(heartbeat_seconds=0.02)
    client = (await manager.connect(user_id=1, tenant_id=1, transport_alive=broken)).client
    with caplog.at_level(logging.ERROR, logger="app.realtime.manager"):
        assert (await batch(client))[0].type == EventType.PING
        assert (await batch(client))[0].type == EventType.PING
    assert not client.closed
    assert f"transport check of client {client.id} failed" in caplog.text


async def test_a_heartbeat_that_fails_is_logged_and_the_loop_beats_on(
    managers: Managers, caplog: pytest.LogCaptureFixture
) -> None:
    manager = await managers(heartbeat_seconds=0.02)
    fine = (await manager.connect(user_id=1, tenant_id=1)).client
    # A close callback that raises makes close_orphans() itself fail mid-heartbeat.
    doomed = (await manager.connect(user_id=2, tenant_id=1, transport_alive=lambda: False)).client

    def explode(client: Client) -> None:
        if client is doomed:
            raise RuntimeError("listener broke")

    manager.on_disconnect(explode)
    with caplog.at_level(logging.ERROR, logger="app.realtime.manager"):
        await until(lambda: "heartbeat failed" in caplog.text)
    assert doomed.closed
    assert (await batch(fine))[0].type == EventType.PING


async def test_close_orphans_closes_only_clients_whose_transport_is_gone(
    managers: Managers,
) -> None:
    manager = await managers()
    kept = (await manager.connect(user_id=1, tenant_id=1, transport_alive=lambda: True)).client
    unchecked = (await manager.connect(user_id=1, tenant_id=1)).client
    orphan = (await manager.connect(user_id=1, tenant_id=1, transport_alive=lambda: False)).client
    assert manager.close_orphans() == 1
    assert orphan.close_reason is CloseReason.DISCONNECTED
    assert not kept.closed and not unchecked.closed
    assert manager.close_orphans() == 0


async def test_stop_ends_the_heartbeat_and_closes_every_client_for_shutdown() -> None:
    manager = ConnectionManager(
        memory_broker(), queue_size=10, max_streams_per_user=10, heartbeat_seconds=0.02
    )
    await manager.start()
    client = (await manager.connect(user_id=1, tenant_id=1)).client
    assert (await batch(client))[0].type == EventType.PING
    await manager.stop()
    assert client.close_reason is CloseReason.SHUTDOWN
    assert manager.clients() == []


# -- connect ----------------------------------------------------------------------------


async def test_when_history_fails_connect_raises_and_releases_the_client_and_its_stream(
    managers: Managers,
) -> None:
    manager = await managers(
        HistoryFails(replay_buffer_size=10, replay_max_age_seconds=60), max_streams_per_user=1
    )
    gone: list[Client] = []
    manager.on_disconnect(gone.append)
    with pytest.raises(ConnectionError):
        await manager.connect(user_id=1, tenant_id=1, last_event_id="1-1")
    assert manager.clients() == []
    assert len(gone) == 1 and gone[0].closed
    assert manager.diagnostics()["totalClients"] == 0
    # The failed attempt holds no stream: the one allowed stream can still open.
    client = (await manager.connect(user_id=1, tenant_id=1)).client
    assert manager.clients() == [client]


async def test_when_history_fails_a_tab_is_released_too(managers: Managers) -> None:
    manager = await managers(
        HistoryFails(replay_buffer_size=10, replay_max_age_seconds=60), max_tabs_per_user=1
    )
    with pytest.raises(ConnectionError):
        await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB, last_event_id="1-1")
    await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)


async def test_closing_a_stream_frees_its_place_in_the_users_count(managers: Managers) -> None:
    manager = await managers(max_streams_per_user=1)
    first = (await manager.connect(user_id=1, tenant_id=1)).client
    with pytest.raises(TooManyStreams):
        await manager.connect(user_id=1, tenant_id=1)
    # Tabs and other users are not counted against user 1's streams.
    await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)
    await manager.connect(user_id=2, tenant_id=1)
    manager.disconnect(first)
    second = (await manager.connect(user_id=1, tenant_id=1)).client
    with pytest.raises(TooManyStreams):
        await manager.connect(user_id=1, tenant_id=1)
    manager.disconnect(second)
    manager.disconnect(second)  # twice: counted once
    await manager.connect(user_id=1, tenant_id=1)
    with pytest.raises(TooManyStreams):
        await manager.connect(user_id=1, tenant_id=1)


async def test_the_tab_limit_counts_a_users_tabs_and_frees_a_closed_ones_place(
    managers: Managers,
) -> None:
    manager = await managers(max_tabs_per_user=2, max_streams_per_user=1)
    tabs = [
        (await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)).client
        for _ in range(2)
    ]
    with pytest.raises(TooManyTabs):
        await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)
    # Streams and other users' tabs are not counted against user 1's tabs.
    await manager.connect(user_id=1, tenant_id=1)
    await manager.connect(user_id=2, tenant_id=1, kind=ClientKind.TAB)
    manager.disconnect(tabs[0])
    manager.disconnect(tabs[0])
    await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)
    with pytest.raises(TooManyTabs):
        await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)
    for tab in manager.clients():
        manager.disconnect(tab)
    for _ in range(2):
        await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)


async def test_without_a_tab_limit_tabs_are_unlimited(managers: Managers) -> None:
    manager = await managers(max_streams_per_user=1)
    for _ in range(5):
        await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)
    assert manager.diagnostics()["clientsByKind"] == {"tab": 5}


async def test_connect_and_disconnect_listeners_hear_each_client_once(managers: Managers) -> None:
    manager = await managers()
    came: list[Client] = []
    went: list[Client] = []
    manager.on_connect(came.append)
    manager.on_disconnect(went.append)
    client = (await manager.connect(user_id=1, tenant_id=1)).client
    assert came == [client] and went == []
    manager.disconnect(client, CloseReason.SESSION_ENDED)
    manager.disconnect(client)
    assert went == [client]
    assert client.close_reason is CloseReason.SESSION_ENDED


# -- replay -----------------------------------------------------------------------------


async def test_an_event_both_replayed_and_queued_during_connect_is_delivered_once(
    managers: Managers,
) -> None:
    manager = await managers()
    first = await manager.publish(chat(1))
    second = await manager.publish(chat(1))
    third = await manager.publish(chat(1))
    connection = await manager.connect(user_id=1, tenant_id=1, last_event_id=str(first.id))
    assert connection.backlog == [second, third]
    client = connection.client
    # The gap between registering and reading history: live copies of replayed events.
    client.offer(second)
    client.offer(third)
    fourth = await manager.publish(chat(1))
    assert await batch(client) == [fourth]


async def test_a_replay_at_the_live_edge_is_empty_and_filters_nothing(managers: Managers) -> None:
    manager = await managers()
    last = await manager.publish(chat(1))
    connection = await manager.connect(user_id=1, tenant_id=1, last_event_id=str(last.id))
    assert connection.backlog == []
    # Nothing was replayed, so an event the filter would drop is delivered: the client's
    # filter is untouched (an older id still passes).
    connection.client.offer(last)
    assert await batch(connection.client) == [last]
    diagnostics = manager.diagnostics()
    assert diagnostics["replays"] == 1 and diagnostics["replayedEvents"] == 0
    assert diagnostics["reconnects"] == 1 and diagnostics["resyncs"] == 0


async def test_the_backlog_keeps_only_what_the_client_may_see(managers: Managers) -> None:
    manager = await managers()
    start = await manager.publish(chat(1))
    await manager.publish(chat(1))
    typing = await manager.publish(
        Event(type=EventType.CHAT_TYPING, data={}, channels=("user:1",), tenant_id=1)
    )
    other_tenant = await manager.publish(chat(1, tenant_id=2))
    connection = await manager.connect(
        user_id=1,
        tenant_id=1,
        types=frozenset({EventType.CHAT_TYPING}),
        last_event_id=str(start.id),
    )
    assert connection.backlog == [typing]
    # Every replayed id is skipped, the other tenant's too.
    connection.client.offer(other_tenant)
    assert connection.client.take_batch() == []
    assert manager.diagnostics(1)["replayedEvents"] == 1


async def test_an_unknown_id_gets_a_resync_for_unknown_id(managers: Managers) -> None:
    manager = await managers()
    connection = await manager.connect(user_id=1, tenant_id=1, last_event_id="not-an-id")
    [resync] = connection.backlog
    assert resync.type == EventType.RESYNC and resync.id is None
    assert resync.data == {"reason": "unknown_id"}
    diagnostics = manager.diagnostics(1)
    assert diagnostics["resyncs"] == 1 and diagnostics["reconnects"] == 1
    assert diagnostics["replays"] == 0


async def test_an_id_of_another_history_gets_a_resync_for_history_unavailable(
    managers: Managers,
) -> None:
    manager = await managers()
    connection = await manager.connect(user_id=1, tenant_id=1, last_event_id="1-1")
    assert [e.data for e in connection.backlog] == [{"reason": "history_unavailable"}]


async def test_a_first_connect_is_no_reconnect(managers: Managers) -> None:
    manager = await managers()
    await manager.connect(user_id=1, tenant_id=1)
    diagnostics = manager.diagnostics()
    assert diagnostics["reconnects"] == 0 and diagnostics["resyncs"] == 0


# -- diagnostics ------------------------------------------------------------------------


async def test_diagnostics_count_publishing_delivery_drops_and_cuts_per_tenant(
    managers: Managers,
) -> None:
    manager = await managers(queue_size=2)
    slow = (await manager.connect(user_id=1, tenant_id=1)).client
    reader = (await manager.connect(user_id=2, tenant_id=1, kind=ClientKind.TAB)).client
    other = (await manager.connect(user_id=3, tenant_id=2)).client
    for _ in range(3):
        await manager.publish(chat(1))  # the third overflows slow's queue
    await manager.publish(chat(2))
    await manager.publish(chat(3, tenant_id=2))
    assert slow.close_reason is CloseReason.SLOW_CONSUMER
    await manager.publish(chat(1))  # to a closed client: no client, nothing dropped

    assert len(await batch(reader)) == 1
    assert len(await batch(other)) == 1
    reader.offer(chat(2))  # queued, not yet delivered
    tenant_1 = manager.diagnostics(1)
    assert tenant_1["totalClients"] == 1
    assert tenant_1["clientsByUser"] == {"2": 1}
    assert tenant_1["clientsByTenant"] == {"1": 1}
    assert tenant_1["clientsByKind"] == {"tab": 1}
    assert tenant_1["queuedEvents"] == 1
    assert tenant_1["eventsPublished"] == 5
    assert tenant_1["eventsDelivered"] == 1
    assert tenant_1["eventsDropped"] == 1
    assert tenant_1["slowConsumersCut"] == 1
    assert tenant_1["sessionsEnded"] == 0

    everyone = manager.diagnostics()
    assert everyone["totalClients"] == 2
    assert everyone["clientsByUser"] == {"2": 1, "3": 1}
    assert everyone["clientsByTenant"] == {"1": 1, "2": 1}
    assert everyone["clientsByKind"] == {"tab": 1, "stream": 1}
    assert everyone["eventsPublished"] == 6
    assert everyone["eventsDelivered"] == 2

    # A closed client's deliveries stay counted.
    manager.disconnect(reader)
    assert manager.diagnostics(1)["eventsDelivered"] == 1
    assert manager.diagnostics(1)["totalClients"] == 0


async def test_diagnostics_count_sessions_ended_and_close_where_says_how_many(
    managers: Managers,
) -> None:
    manager = await managers()
    doomed = [(await manager.connect(user_id=1, tenant_id=1)).client for _ in range(2)]
    kept = (await manager.connect(user_id=2, tenant_id=1)).client
    closed = manager.close_where(lambda c: c.user_id == 1, CloseReason.SESSION_ENDED)
    assert closed == 2
    assert all(c.close_reason is CloseReason.SESSION_ENDED for c in doomed)
    assert not kept.closed
    diagnostics = manager.diagnostics(1)
    assert diagnostics["sessionsEnded"] == 2 and diagnostics["slowConsumersCut"] == 0
    manager.disconnect(kept)
    assert manager.diagnostics(1)["sessionsEnded"] == 2


async def test_an_event_on_two_channels_reaches_each_client_once_and_drops_count_per_client(
    managers: Managers,
) -> None:
    manager = await managers(queue_size=1)
    one = (await manager.connect(user_id=1, tenant_id=1)).client
    two = (await manager.connect(user_id=2, tenant_id=1)).client
    both = Event(type=EventType.CHAT_MESSAGE, data={}, channels=("user:1", "user:2"), tenant_id=1)
    await manager.publish(both)
    again = Event(type=EventType.CHAT_MESSAGE, data={}, channels=("user:1", "user:2"), tenant_id=1)
    await manager.publish(again)
    assert one.closed and two.closed
    assert manager.diagnostics(1)["eventsDropped"] == 2


async def test_closing_one_of_two_streams_leaves_the_other_counted(managers: Managers) -> None:
    manager = await managers(max_streams_per_user=2)
    first = (await manager.connect(user_id=1, tenant_id=1)).client
    await manager.connect(user_id=1, tenant_id=1)
    manager.disconnect(first)
    await manager.connect(user_id=1, tenant_id=1)
    with pytest.raises(TooManyStreams):
        await manager.connect(user_id=1, tenant_id=1)


async def test_closing_one_of_two_tabs_leaves_the_other_counted(managers: Managers) -> None:
    manager = await managers(max_tabs_per_user=2)
    first = (await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)).client
    await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)
    manager.disconnect(first)
    await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)
    with pytest.raises(TooManyTabs):
        await manager.connect(user_id=1, tenant_id=1, kind=ClientKind.TAB)


async def test_an_event_on_no_channel_reaches_nobody_and_breaks_nothing(
    managers: Managers,
) -> None:
    manager = await managers()
    client = (await manager.connect(user_id=1, tenant_id=1)).client
    await manager.publish(Event(type=EventType.CHAT_MESSAGE, data={}, channels=(), tenant_id=1))
    assert client.queued == 0
    assert manager.diagnostics(1)["eventsPublished"] == 1


async def test_a_client_closed_on_one_of_its_channels_leaves_every_channel(
    managers: Managers,
) -> None:
    manager = await managers()
    gone = (await manager.connect(user_id=1, tenant_id=1)).client
    stays = (await manager.connect(user_id=1, tenant_id=1)).client
    manager.disconnect(gone)
    for channel in ("user:1", "tenant:1", "global"):
        await manager.publish(
            Event(type=EventType.CHAT_MESSAGE, data={}, channels=(channel,), tenant_id=1)
        )
    assert stays.queued == 3
    assert manager.diagnostics(1)["eventsDropped"] == 0


class Recording(MemoryBroker):
    """A memory broker that notes the lifecycle calls the manager makes (as a Redis broker
    needs them: connect before use, follow a tenant's log, disconnect at the end)."""

    def __init__(self) -> None:
        super().__init__(replay_buffer_size=10, replay_max_age_seconds=60)
        self.calls: list[str] = []

    async def connect(self) -> None:
        self.calls.append("connect")

    async def disconnect(self) -> None:
        self.calls.append("disconnect")

    async def follow(self, tenant_id: int) -> None:
        self.calls.append(f"follow {tenant_id}")

    def attach(self, listener: Callable[[Event], None]) -> None:
        self.calls.append("attach")
        super().attach(listener)

    def detach(self, listener: Callable[[Event], None]) -> None:
        self.calls.append("detach")
        super().detach(listener)


async def test_the_manager_drives_its_brokers_lifecycle_and_follows_each_clients_tenant() -> None:
    broker = Recording()
    manager = ConnectionManager(broker, queue_size=10, max_streams_per_user=10, heartbeat_seconds=5)
    await manager.start()
    assert broker.calls == ["connect", "attach"]
    await manager.connect(user_id=1, tenant_id=4)
    assert broker.calls[-1] == "follow 4"
    await manager.stop()
    assert broker.calls[-2:] == ["detach", "disconnect"]
    heartbeats = [t for t in asyncio.all_tasks() if t.get_name() == "sse-heartbeat"]
    assert heartbeats == []


async def test_without_shared_slots_a_stream_opens_without_any_warning(
    managers: Managers, caplog: pytest.LogCaptureFixture
) -> None:
    manager = await managers()
    with caplog.at_level(logging.WARNING, logger="app.realtime.manager"):
        client = (await manager.connect(user_id=1, tenant_id=1)).client
        manager.disconnect(client)
    assert caplog.records == []
