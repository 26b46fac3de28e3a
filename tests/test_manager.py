"""The connection manager: routing, isolation, filters, back-pressure, lifecycle, diagnostics."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.realtime.broker.memory import MemoryBroker
from app.realtime.channels import GLOBAL, tenant_channel, user_channel
from app.realtime.client import Client, ClientKind, CloseReason
from app.realtime.events import (
    ChatMessageBody,
    ChatMessagePayload,
    ChatTypingPayload,
    ChatUnreadCountPayload,
    Event,
    EventType,
    PresenceUpdatePayload,
)
from app.realtime.manager import ConnectionManager, TooManyStreams
from app.realtime.service import RealtimeService
from tests.realtime_helpers import ManagerFactory

WAIT = 1.0  # seconds any single wait for an event may take


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
async def manager(managers: ManagerFactory) -> ConnectionManager:
    return await managers()


async def connect(
    manager: ConnectionManager,
    user_id: int,
    tenant_id: int = 1,
    *,
    kind: ClientKind = ClientKind.STREAM,
    types: frozenset[str] | None = None,
    session_ref: Any = None,
) -> Client:
    connection = await manager.connect(
        user_id=user_id, tenant_id=tenant_id, kind=kind, types=types, session_ref=session_ref
    )
    assert connection.backlog == []
    return connection.client


async def receive(client: Client) -> list[Event]:
    """One `next_batch()`, awaited inline as the SSE transport does, with a timeout."""
    async with asyncio.timeout(WAIT):
        return await client.next_batch()


def types_of(events: list[Event]) -> list[str]:
    return [event.type for event in events]


def event(*channels: str, tenant_id: int | None = 1, type: str = EventType.CHAT_MESSAGE) -> Event:
    return Event(type=type, data={}, channels=channels, tenant_id=tenant_id)


def chat_message(sender_id: int) -> ChatMessagePayload:
    return ChatMessagePayload(
        conversation_id=10,
        message=ChatMessageBody(
            id=100,
            conversation_id=10,
            content="hello",
            sender_id=sender_id,
            sender_name=f"user {sender_id}",
            created_at="2024-01-01T00:00:00+00:00",
        ),
    )


def typing(user_id: int) -> ChatTypingPayload:
    return ChatTypingPayload(
        conversation_id=10, user_id=user_id, user_name="typist", is_typing=True
    )


def unread() -> ChatUnreadCountPayload:
    return ChatUnreadCountPayload(conversation_id=10, count=3, total=5)


def presence(user_id: int) -> PresenceUpdatePayload:
    return PresenceUpdatePayload(
        user_id=user_id, user_name="someone", status="online", last_seen=None
    )


# -- routing ---------------------------------------------------------------------------


async def test_chat_message_reaches_every_participant_including_the_senders_tabs(
    manager: ConnectionManager,
) -> None:
    service = RealtimeService(manager)
    sender_stream = await connect(manager, 1)
    sender_tab = await connect(manager, 1, kind=ClientKind.TAB)
    participants = [await connect(manager, 2), await connect(manager, 3)]
    outsider = await connect(manager, 4)

    sent = await service.emit_chat_message(
        tenant_id=1, participant_ids=[1, 2, 3], payload=chat_message(sender_id=1)
    )

    assert sent is not None
    for client in (sender_stream, sender_tab, *participants):
        assert await receive(client) == [sent]
    assert outsider.queued == 0


async def test_typing_reaches_the_other_participants_but_not_the_typist(
    manager: ConnectionManager,
) -> None:
    service = RealtimeService(manager)
    typist = await connect(manager, 1)
    others = [await connect(manager, 2), await connect(manager, 3)]

    sent = await service.emit_typing(tenant_id=1, recipient_ids=[1, 2, 3], payload=typing(1))

    assert sent is not None
    assert sent.channels == (user_channel(2), user_channel(3))
    for client in others:
        assert await receive(client) == [sent]
    assert typist.queued == 0


async def test_unread_count_reaches_only_its_user(manager: ConnectionManager) -> None:
    service = RealtimeService(manager)
    owner = await connect(manager, 2)
    others = [await connect(manager, 1), await connect(manager, 3)]

    sent = await service.emit_unread_count(tenant_id=1, user_id=2, payload=unread())

    assert sent is not None
    assert await receive(owner) == [sent]
    assert [client.queued for client in others] == [0, 0]


async def test_presence_reaches_every_client_of_the_tenant_and_no_other_tenant(
    manager: ConnectionManager,
) -> None:
    service = RealtimeService(manager)
    tenant_one = [await connect(manager, 1), await connect(manager, 2, kind=ClientKind.TAB)]
    tenant_two = await connect(manager, 3, tenant_id=2)

    sent = await service.emit_presence(tenant_id=1, payload=presence(1))

    assert sent is not None
    assert sent.channels == (tenant_channel(1),)
    for client in tenant_one:
        assert await receive(client) == [sent]
    assert tenant_two.queued == 0


async def test_an_event_on_several_channels_of_a_client_reaches_it_once(
    manager: ConnectionManager,
) -> None:
    client = await connect(manager, 1)
    colleague = await connect(manager, 2)

    sent = await manager.publish(event(user_channel(1), tenant_channel(1), GLOBAL))

    assert await receive(client) == [sent]
    assert await receive(colleague) == [sent]


async def test_a_participant_listed_twice_gets_the_message_once(manager: ConnectionManager) -> None:
    service = RealtimeService(manager)
    client = await connect(manager, 2)

    sent = await service.emit_chat_message(
        tenant_id=1, participant_ids=[2, 1, 2], payload=chat_message(sender_id=1)
    )

    assert await receive(client) == [sent]


# -- tenant isolation ------------------------------------------------------------------


async def test_an_event_of_tenant_1_on_a_shared_user_channel_reaches_only_the_tenant_1_client(
    manager: ConnectionManager,
) -> None:
    service = RealtimeService(manager)
    as_tenant_one = await connect(manager, 1, tenant_id=1)
    as_tenant_two = await connect(manager, 1, tenant_id=2)
    assert user_channel(1) in as_tenant_one.channels & as_tenant_two.channels

    raw = await manager.publish(event(user_channel(1), tenant_id=1))
    emitted = await service.emit_unread_count(tenant_id=1, user_id=1, payload=unread())

    assert await receive(as_tenant_one) == [raw, emitted]
    assert as_tenant_two.queued == 0


async def test_an_event_without_tenant_reaches_every_membership(manager: ConnectionManager) -> None:
    as_tenant_one = await connect(manager, 1, tenant_id=1)
    as_tenant_two = await connect(manager, 1, tenant_id=2)

    announcement = await manager.publish(event(GLOBAL, tenant_id=None))

    assert await receive(as_tenant_one) == [announcement]
    assert await receive(as_tenant_two) == [announcement]


# -- server-side type filter -----------------------------------------------------------


async def test_when_filtered_to_chat_messages_then_only_those_pings_and_resync_arrive(
    manager: ConnectionManager,
) -> None:
    service = RealtimeService(manager)
    only_messages = frozenset({EventType.CHAT_MESSAGE.value})
    connection = await manager.connect(
        user_id=1, tenant_id=1, types=only_messages, last_event_id="not-an-id"
    )
    client = connection.client

    await service.emit_typing(tenant_id=1, recipient_ids=[1], payload=typing(2))
    message = await service.emit_chat_message(
        tenant_id=1, participant_ids=[1, 2], payload=chat_message(sender_id=2)
    )
    await service.emit_unread_count(tenant_id=1, user_id=1, payload=unread())
    await service.emit_presence(tenant_id=1, payload=presence(2))
    manager.heartbeat()

    assert types_of(connection.backlog) == [EventType.RESYNC]
    batch = await receive(client)
    assert types_of(batch) == [EventType.CHAT_MESSAGE, EventType.PING]
    assert batch[0] is message


# -- slow consumers --------------------------------------------------------------------


async def test_a_slow_consumer_is_cut_off_without_holding_back_a_fast_one(
    managers: ManagerFactory,
) -> None:
    queue_size = 5
    manager = await managers(queue_size=queue_size)
    slow = await connect(manager, 1)  # never reads
    fast = await connect(manager, 2)
    assert manager.diagnostics()["totalClients"] == 2

    for n in range(queue_size * 3):
        async with asyncio.timeout(0):  # the publish may not wait for anything, let alone `slow`
            sent = await manager.publish(event(tenant_channel(1)))
        assert slow.queued <= queue_size, f"after publish {n}"
        assert await receive(fast) == [sent], f"after publish {n}"

    assert slow.close_reason is CloseReason.SLOW_CONSUMER
    assert fast.close_reason is None
    diagnostics = manager.diagnostics()
    assert diagnostics["totalClients"] == 1
    assert diagnostics["clientsByUser"] == {"2": 1}
    assert diagnostics["slowConsumersCut"] == 1
    async with asyncio.timeout(0):  # immediately: a closed client never waits
        assert await slow.next_batch() == []


async def test_a_client_whose_queue_fills_is_closed_on_the_next_event_not_before(
    managers: ManagerFactory,
) -> None:
    manager = await managers(queue_size=2)
    slow = await connect(manager, 1)

    await manager.publish(event(user_channel(1)))
    await manager.publish(event(user_channel(1)))
    assert slow.queued == 2
    assert not slow.closed

    await manager.publish(event(user_channel(1)))

    assert slow.close_reason is CloseReason.SLOW_CONSUMER
    assert slow.queued == 0
    assert manager.diagnostics()["eventsDropped"] == 1


# -- per-user stream limit -------------------------------------------------------------


async def test_the_stream_limit_refuses_a_third_stream_but_not_tabs_or_other_users(
    managers: ManagerFactory,
) -> None:
    manager = await managers(max_streams_per_user=2)
    first = await connect(manager, 1)
    await connect(manager, 1)

    with pytest.raises(TooManyStreams):
        await connect(manager, 1)
    assert manager.diagnostics()["totalClients"] == 2

    for _ in range(3):
        await connect(manager, 1, kind=ClientKind.TAB)
    await connect(manager, 2)
    await connect(manager, 1, tenant_id=2, kind=ClientKind.TAB)
    with pytest.raises(TooManyStreams):
        await connect(manager, 1, tenant_id=2)  # the limit is per user, whatever the tenant

    manager.disconnect(first)
    third = await connect(manager, 1)

    assert not third.closed
    assert manager.diagnostics()["clientsByKind"] == {"stream": 3, "tab": 4}


async def test_a_stream_cut_off_for_being_slow_frees_its_slot(managers: ManagerFactory) -> None:
    manager = await managers(queue_size=1, max_streams_per_user=1)
    slow = await connect(manager, 1)
    await manager.publish(event(user_channel(1)))
    await manager.publish(event(user_channel(1)))
    assert slow.close_reason is CloseReason.SLOW_CONSUMER

    replacement = await connect(manager, 1)

    assert not replacement.closed


# -- heartbeat -------------------------------------------------------------------------


async def test_heartbeat_queues_one_ping_without_id_for_every_client(
    manager: ConnectionManager,
) -> None:
    clients = [
        await connect(manager, 1),
        await connect(manager, 1, kind=ClientKind.TAB),
        await connect(manager, 2, tenant_id=2),
        await connect(manager, 3, types=frozenset({EventType.NOTIFICATION_NEW.value})),
    ]

    manager.heartbeat()

    assert [client.queued for client in clients] == [1, 1, 1, 1]
    for client in clients:
        (ping,) = await receive(client)
        assert ping.type == EventType.PING
        assert ping.id is None


# -- lifecycle -------------------------------------------------------------------------


async def test_connection_block_disconnects_in_its_finally_even_when_the_block_raises(
    manager: ConnectionManager,
) -> None:
    connected: list[Client] = []
    disconnected: list[Client] = []
    manager.on_connect(connected.append)
    manager.on_disconnect(disconnected.append)

    with pytest.raises(RuntimeError, match="boom"):
        async with manager.connection(user_id=1, tenant_id=1) as connection:
            client = connection.client
            assert manager.diagnostics()["totalClients"] == 1
            raise RuntimeError("boom")

    assert client.close_reason is CloseReason.DISCONNECTED
    assert manager.diagnostics()["totalClients"] == 0
    assert connected == [client]
    assert disconnected == [client]


async def test_connection_block_disconnects_once_on_normal_exit(manager: ConnectionManager) -> None:
    disconnected: list[Client] = []
    manager.on_disconnect(disconnected.append)

    async with manager.connection(user_id=1, tenant_id=1) as connection:
        manager.disconnect(connection.client)  # an early disconnect inside the block

    assert disconnected == [connection.client]
    assert manager.clients() == []


async def test_close_where_closes_only_matching_clients_and_wakes_their_readers(
    manager: ConnectionManager,
) -> None:
    doomed = [await connect(manager, 1, session_ref=7), await connect(manager, 2, session_ref=7)]
    survivors = [await connect(manager, 1, session_ref=8), await connect(manager, 3)]
    waiting = asyncio.create_task(doomed[0].next_batch())

    closed = manager.close_where(lambda c: c.session_ref == 7, CloseReason.SESSION_ENDED)

    assert closed == 2
    assert await asyncio.wait_for(waiting, WAIT) == []
    assert [client.close_reason for client in doomed] == [CloseReason.SESSION_ENDED] * 2
    assert [client.closed for client in survivors] == [False, False]
    assert set(manager.clients()) == set(survivors)
    assert manager.diagnostics()["sessionsEnded"] == 2


async def test_close_where_wakes_a_reader_that_is_already_waiting(
    manager: ConnectionManager,
) -> None:
    client = await connect(manager, 1, session_ref=7)

    # Closes only once next_batch() suspends: the reader is waiting when it is woken.
    asyncio.get_running_loop().call_soon(
        manager.close_where, lambda c: c.session_ref == 7, CloseReason.SESSION_ENDED
    )
    batch = await receive(client)

    assert batch == []
    assert client.close_reason is CloseReason.SESSION_ENDED


# -- diagnostics -----------------------------------------------------------------------


async def test_diagnostics_of_a_tenant_count_only_that_tenant(manager: ConnectionManager) -> None:
    reader = await connect(manager, 1, tenant_id=1)
    await connect(manager, 2, tenant_id=1, kind=ClientKind.TAB)
    resyncing = await manager.connect(user_id=3, tenant_id=2, last_event_id="garbage")
    await connect(manager, 4, tenant_id=2, session_ref="revoked")
    manager.close_where(lambda c: c.session_ref == "revoked", CloseReason.SESSION_ENDED)

    for _ in range(2):
        await manager.publish(event(tenant_channel(1), tenant_id=1))
    for _ in range(3):
        await manager.publish(event(tenant_channel(2), tenant_id=2))
    assert len(await receive(reader)) == 2
    await manager.publish(event(GLOBAL, tenant_id=None))
    assert len(resyncing.backlog) == 1

    assert manager.diagnostics(1) == {
        "totalClients": 2,
        "clientsByUser": {"1": 1, "2": 1},
        "clientsByTenant": {"1": 2},
        "clientsByKind": {"stream": 1, "tab": 1},
        "queuedEvents": 1 + 3,
        "eventsPublished": 2,
        "eventsDelivered": 2,
        "eventsDropped": 0,
        "replays": 0,
        "replayedEvents": 0,
        "resyncs": 0,
        "reconnects": 0,
        "slowConsumersCut": 0,
        "sessionsEnded": 0,
    }
    assert manager.diagnostics(2) == {
        "totalClients": 1,
        "clientsByUser": {"3": 1},
        "clientsByTenant": {"2": 1},
        "clientsByKind": {"stream": 1},
        "queuedEvents": 4,
        "eventsPublished": 3,
        "eventsDelivered": 0,
        "eventsDropped": 0,
        "replays": 0,
        "replayedEvents": 0,
        "resyncs": 1,
        "reconnects": 1,
        "slowConsumersCut": 0,
        "sessionsEnded": 1,
    }
    assert manager.diagnostics() == {
        "totalClients": 3,
        "clientsByUser": {"1": 1, "2": 1, "3": 1},
        "clientsByTenant": {"1": 2, "2": 1},
        "clientsByKind": {"stream": 2, "tab": 1},
        "queuedEvents": 8,
        "eventsPublished": 6,
        "eventsDelivered": 2,
        "eventsDropped": 0,
        "replays": 0,
        "replayedEvents": 0,
        "resyncs": 1,
        "reconnects": 1,
        "slowConsumersCut": 0,
        "sessionsEnded": 1,
    }


async def test_diagnostics_of_a_tenant_without_clients_is_all_zero(
    manager: ConnectionManager,
) -> None:
    await connect(manager, 1, tenant_id=1)
    await manager.publish(event(tenant_channel(1), tenant_id=1))

    diagnostics = manager.diagnostics(3)

    assert diagnostics["totalClients"] == 0
    assert diagnostics["clientsByUser"] == {}
    assert diagnostics["queuedEvents"] == 0
    assert diagnostics["eventsPublished"] == 0


# -- several processes on one broker ---------------------------------------------------


async def test_two_managers_on_one_broker_each_deliver_an_event_once_to_their_own_clients(
    managers: ManagerFactory,
) -> None:
    broker = MemoryBroker(replay_buffer_size=100, replay_max_age_seconds=300.0)
    process_a = await managers(broker=broker)
    process_b = await managers(broker=broker)
    on_a = await connect(process_a, 1)
    on_b = await connect(process_b, 1)
    colleague_on_b = await connect(process_b, 2)

    from_a = await process_a.publish(event(user_channel(1), tenant_channel(1)))
    from_b = await process_b.publish(event(user_channel(1)))

    assert await receive(on_a) == [from_a, from_b]
    assert await receive(on_b) == [from_a, from_b]
    assert await receive(colleague_on_b) == [from_a]
    assert process_a.clients() == [on_a]
    assert set(process_b.clients()) == {on_b, colleague_on_b}


async def test_stopping_one_manager_leaves_the_other_attached(managers: ManagerFactory) -> None:
    broker = MemoryBroker(replay_buffer_size=100, replay_max_age_seconds=300.0)
    process_a = ConnectionManager(
        broker, queue_size=10, max_streams_per_user=10, heartbeat_seconds=0
    )
    await process_a.start()
    process_b = await managers(broker=broker)
    on_a = await connect(process_a, 1)
    on_b = await connect(process_b, 1)

    await process_a.stop()
    sent = await process_b.publish(event(user_channel(1)))

    assert on_a.close_reason is CloseReason.SHUTDOWN
    assert await receive(on_b) == [sent]
