"""The connection manager: every client of this process, whatever its transport.

HTTP streams and Reflex tabs register here the same way and receive the same Event
objects. Publishing goes through the broker, which hands each event back to the manager
of every process; the manager routes it to local clients by channel, checks visibility,
and queues it. Nothing here awaits a client: a slow one is cut off, never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.logs import log_event
from app.realtime.broker.base import Broker
from app.realtime.channels import channels_for
from app.realtime.client import Client, ClientKind, CloseReason
from app.realtime.events import Event, EventType, PingPayload, ResyncPayload
from app.realtime.ids import EventId
from app.realtime.publish_log import log_published
from app.realtime.tasks import cancel_and_wait
from app.realtime.visibility import may_see

logger = logging.getLogger(__name__)

ClientListener = Callable[[Client], None]


class TooManyStreams(Exception):
    """The user already holds the maximum number of streams."""


class TooManyTabs(Exception):
    """The user already holds the maximum number of tabs in this process."""


@dataclass(slots=True)
class TenantCounters:
    published: int = 0
    delivered: int = 0
    dropped: int = 0
    replays: int = 0
    replayed_events: int = 0
    resyncs: int = 0
    reconnects: int = 0
    slow_consumers_cut: int = 0
    sessions_ended: int = 0


@dataclass(slots=True)
class Connection:
    """A registered client and what it must receive before live events."""

    client: Client
    backlog: list[Event] = field(default_factory=list)


def _transport_gone(client: Client) -> bool:
    try:
        return not client.transport_alive()
    except Exception:  # a faulty check must not close a client, nor stop the heartbeat
        logger.exception("transport check of client %s failed", client.id)
        return False


def _log_disconnect(client: Client, queue_size: int) -> None:
    kind = client.kind.value
    reason = client.close_reason
    who: dict[str, Any] = {"user": client.user_id, "tenant": client.tenant_id, "client": client.id}
    if reason is CloseReason.SLOW_CONSUMER:
        # discarded == queueLimit: its queue filled; fewer: a write stalled past
        # SSE_WRITE_TIMEOUT_SECONDS.
        log_event(
            logger,
            f"{kind}.slow_consumer_cut",
            logging.WARNING,
            **who,
            discarded=client.discarded,
            queueLimit=queue_size,
        )
    elif reason is CloseReason.SESSION_ENDED:
        log_event(logger, f"{kind}.session_ended", **who)
    log_event(
        logger,
        f"{kind}.disconnect",
        **who,
        reason=reason,
        delivered=client.delivered,
        discarded=client.discarded,
        firstDelivered=client.first_delivered,
        lastDelivered=client.last_delivered,
        seconds=round(time.time() - client.connected_at, 3),
    )


def _log_resync(client: Client, reason: str, last_event_id: str | None) -> None:
    log_event(
        logger,
        f"{client.kind.value}.resync",
        logging.WARNING,
        user=client.user_id,
        tenant=client.tenant_id,
        client=client.id,
        reason=reason,
        lastEventId=last_event_id,
    )


def _log_live_resyncs(event: Event, candidates: Any) -> None:
    reason = str(event.data.get("reason", ""))
    for client in tuple(candidates):
        if may_see(client, event):
            _log_resync(client, reason, None)


class ConnectionManager:
    def __init__(
        self,
        broker: Broker,
        *,
        queue_size: int,
        max_streams_per_user: int,
        heartbeat_seconds: float,
        max_tabs_per_user: int | None = None,
    ) -> None:
        self.broker = broker
        self._queue_size = queue_size
        self._max_streams_per_user = max_streams_per_user
        # None: no limit. Tabs are counted in this process only: a tab holds a websocket
        # and its listener on the process that serves it.
        self._max_tabs_per_user = max_tabs_per_user
        self._heartbeat_seconds = heartbeat_seconds
        self._clients: dict[str, Client] = {}
        self._by_channel: dict[str, set[Client]] = defaultdict(set)
        self._streams_by_user: Counter[int] = Counter()
        self._tabs_by_user: Counter[int] = Counter()
        self._counters: defaultdict[int | None, TenantCounters] = defaultdict(TenantCounters)
        self._connect_listeners: list[ClientListener] = []
        self._disconnect_listeners: list[ClientListener] = []
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._slots = broker.stream_slots()
        self._releasing: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.connect()
        self.broker.attach(self._dispatch)
        if self._heartbeat_seconds > 0:
            self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name="sse-heartbeat")

    async def stop(self) -> None:
        await cancel_and_wait([self._heartbeat_task])
        self._heartbeat_task = None
        for client in list(self._clients.values()):
            client.close(CloseReason.SHUTDOWN)
        self.broker.detach(self._dispatch)
        await self.broker.disconnect()

    # -- clients ---------------------------------------------------------------------

    def on_connect(self, listener: ClientListener) -> None:
        """Called after a client is registered (presence tracking hooks in here)."""
        self._connect_listeners.append(listener)

    def on_disconnect(self, listener: ClientListener) -> None:
        self._disconnect_listeners.append(listener)

    async def connect(
        self,
        *,
        user_id: int,
        tenant_id: int,
        kind: ClientKind = ClientKind.STREAM,
        types: frozenset[str] | None = None,
        last_event_id: str | None = None,
        session_ref: Any = None,
        transport_alive: Callable[[], bool] | None = None,
    ) -> Connection:
        """Register a client, then gather what it missed since `last_event_id`.

        Registering first means nothing published from now on can be missed; events that
        are both in history and already queued are delivered once (see Client.skip_through).
        `transport_alive`, when given, is asked every heartbeat; the client is closed as
        soon as it answers False (see close_orphans).
        """
        if (
            kind is ClientKind.STREAM
            and self._streams_by_user[user_id] >= self._max_streams_per_user
        ):
            self._log_refused(kind, user_id, tenant_id)
            raise TooManyStreams(user_id)
        await self.broker.follow(tenant_id)
        # Checked after the last await before registering, so concurrent tabs of one user
        # cannot all pass the check first.
        if (
            kind is ClientKind.TAB
            and self._max_tabs_per_user is not None
            and self._tabs_by_user[user_id] >= self._max_tabs_per_user
        ):
            self._log_refused(kind, user_id, tenant_id)
            raise TooManyTabs(user_id)
        client = Client(
            user_id=user_id,
            tenant_id=tenant_id,
            channels=channels_for(user_id, tenant_id),
            types=types,
            kind=kind,
            max_queue=self._queue_size,
            session_ref=session_ref,
            transport_alive=transport_alive,
        )
        if kind is ClientKind.STREAM and not await self._slot_granted(client):
            self._log_refused(kind, user_id, tenant_id)
            raise TooManyStreams(user_id)  # counted across every process
        self._register(client)
        log_event(
            logger,
            f"{kind.value}.connect",
            user=user_id,
            tenant=tenant_id,
            client=client.id,
            channels=client.channels,
            types=types,
            lastEventId=last_event_id,
        )
        try:
            backlog = await self._backlog_for(client, last_event_id)
        except BaseException:
            self.disconnect(client)
            raise
        return Connection(client=client, backlog=backlog)

    @contextlib.asynccontextmanager
    async def connection(self, **kwargs: Any) -> AsyncIterator[Connection]:
        """`connect()` whose `finally` always disconnects, whatever happens in the block."""
        connection = await self.connect(**kwargs)
        try:
            yield connection
        finally:
            self.disconnect(connection.client)

    def disconnect(self, client: Client, reason: CloseReason = CloseReason.DISCONNECTED) -> None:
        client.close(reason)  # runs _unregister through the close callback

    def _register(self, client: Client) -> None:
        self._clients[client.id] = client
        for channel in client.channels:
            self._by_channel[channel].add(client)
        if client.kind is ClientKind.STREAM:
            self._streams_by_user[client.user_id] += 1
        elif client.kind is ClientKind.TAB:
            self._tabs_by_user[client.user_id] += 1
        client.on_close(self._unregister)
        for listener in self._connect_listeners:
            listener(client)

    def _unregister(self, client: Client) -> None:
        if self._clients.pop(client.id, None) is None:
            return
        for channel in client.channels:
            members = self._by_channel.get(channel)
            if members is not None:
                members.discard(client)
                if not members:
                    del self._by_channel[channel]
        if client.kind is ClientKind.STREAM:
            self._streams_by_user[client.user_id] -= 1
            if self._streams_by_user[client.user_id] <= 0:
                del self._streams_by_user[client.user_id]
            if self._slots is not None:
                self._release_slot(client)
        elif client.kind is ClientKind.TAB:
            self._tabs_by_user[client.user_id] -= 1
            if self._tabs_by_user[client.user_id] <= 0:
                del self._tabs_by_user[client.user_id]
        counters = self._counters[client.tenant_id]
        counters.delivered += client.delivered
        if client.close_reason is CloseReason.SLOW_CONSUMER:
            counters.slow_consumers_cut += 1
        elif client.close_reason is CloseReason.SESSION_ENDED:
            counters.sessions_ended += 1
        _log_disconnect(client, self._queue_size)
        for listener in self._disconnect_listeners:
            listener(client)

    async def _slot_granted(self, client: Client) -> bool:
        if self._slots is None:
            return True
        try:
            return await self._slots.acquire(client.user_id, client.id, self._max_streams_per_user)
        except Exception as exc:  # noqa: BLE001  # the shared count is down: the per-process limit holds
            logger.warning("stream slots unavailable (%s): per-process limit only", exc)
            return True

    def _release_slot(self, client: Client) -> None:
        slots = self._slots
        assert slots is not None

        async def release() -> None:
            try:
                await slots.release(client.user_id, client.id)
            except Exception as exc:  # noqa: BLE001  # its lease runs out by itself
                logger.warning("could not release a stream slot: %s", exc)

        with contextlib.suppress(RuntimeError):  # no loop at interpreter exit
            task = asyncio.get_running_loop().create_task(release())
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _backlog_for(self, client: Client, last_event_id: str | None) -> list[Event]:
        if last_event_id is None:
            return []
        counters = self._counters[client.tenant_id]
        counters.reconnects += 1
        after = EventId.parse(last_event_id)
        history = (
            None
            if after is None
            else await self.broker.history(client.channels, after, client.tenant_id)
        )
        if history is None:
            counters.resyncs += 1
            reason = "unknown_id" if after is None else "history_unavailable"
            _log_resync(client, reason, last_event_id)
            return [Event(type=EventType.RESYNC, data=ResyncPayload(reason=reason).to_data())]
        backlog = [event for event in history if may_see(client, event)]
        if history:
            client.skip_through(history[-1].id)  # type: ignore[arg-type]  # history has only published events, which have ids
        counters.replays += 1
        counters.replayed_events += len(backlog)
        if backlog:
            # Written before any live event, by the transport itself (not take_batch).
            client.first_delivered, client.last_delivered = backlog[0].id, backlog[-1].id
        log_event(
            logger,
            f"{client.kind.value}.resume",
            user=client.user_id,
            tenant=client.tenant_id,
            client=client.id,
            lastEventId=last_event_id,
            replayed=len(backlog),
            replayedFirst=backlog[0].id if backlog else None,
            replayedLast=backlog[-1].id if backlog else None,
        )
        return backlog

    def close_where(self, predicate: Callable[[Client], bool], reason: CloseReason) -> int:
        """Close every local client matching `predicate` (e.g. all streams of a token)."""
        doomed = [client for client in self._clients.values() if predicate(client)]
        for client in doomed:
            client.close(reason)
        return len(doomed)

    def close_orphans(self) -> int:
        """Close every client whose transport is known to be gone.

        A Reflex tab's listener is not always told when its websocket closes (one started
        by a direct call is not cancelled with the socket): without this it would keep its
        queue, its tab slot and the user's presence for as long as the process runs.
        """
        orphans = [client for client in self._clients.values() if _transport_gone(client)]
        for client in orphans:
            client.close(CloseReason.DISCONNECTED)
        return len(orphans)

    def clients(self) -> list[Client]:
        return list(self._clients.values())

    # -- events ----------------------------------------------------------------------

    async def publish(self, event: Event) -> Event:
        published = await self.broker.publish(event)
        self._counters[event.tenant_id].published += 1
        # INFO, once per event whatever the number of clients (docs/OPERATIONS.md: the
        # recipe starts from this line).
        if published.id is not None:  # else the broker logs it: queued, or a duplicate
            log_published(published)
        return published

    def _dispatch(self, event: Event) -> None:
        """Route one event from the broker to the local clients that may see it."""
        channels = event.channels
        if len(channels) == 1:
            candidates: Any = self._by_channel.get(channels[0], ())
        else:
            candidates = set()
            for channel in channels:
                candidates.update(self._by_channel.get(channel, ()))
        if event.id is None:  # a broker's own resync (a Redis failover): rare, logged per client
            _log_live_resyncs(event, candidates)
        dropped = 0
        # A full queue closes its client, which edits the routing table: iterate a copy.
        for client in tuple(candidates):
            if may_see(client, event) and not client.offer(event):
                dropped += 1
        if dropped:
            self._counters[event.tenant_id].dropped += dropped

    def _log_refused(self, kind: ClientKind, user_id: int, tenant_id: int) -> None:
        log_event(
            logger,
            f"{kind.value}.refused",
            logging.WARNING,
            user=user_id,
            tenant=tenant_id,
            reason=f"too_many_{kind.value}s",
        )

    def heartbeat(self) -> None:
        """Send one ping to every local client (control event: no id, never replayed)."""
        ping = Event(
            type=EventType.PING,
            data=PingPayload(ts=datetime.now(UTC).isoformat()).to_data(),
        )
        for client in tuple(self._clients.values()):
            client.offer(ping)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            try:
                # Orphans first: they must not be pinged, and their presence should start
                # its grace period now.
                self.close_orphans()
                self.heartbeat()
                if self._slots is not None:
                    await self._slots.renew(
                        [
                            (c.user_id, c.id)
                            for c in self._clients.values()
                            if c.kind is ClientKind.STREAM
                        ]
                    )
            except Exception:  # a heartbeat must never die for one bad client or a hiccup
                logger.exception("heartbeat failed")

    # -- diagnostics -----------------------------------------------------------------

    def diagnostics(self, tenant_id: int | None = None) -> dict[str, Any]:
        """Counts for one tenant, or for the whole process when `tenant_id` is None."""
        clients = [
            c for c in self._clients.values() if tenant_id is None or c.tenant_id == tenant_id
        ]
        by_user: Counter[str] = Counter(str(c.user_id) for c in clients)
        by_tenant: Counter[str] = Counter(str(c.tenant_id) for c in clients)
        by_kind: Counter[str] = Counter(c.kind.value for c in clients)
        totals = TenantCounters()
        for key, counters in self._counters.items():
            if tenant_id is not None and key != tenant_id:
                continue
            for name in TenantCounters.__slots__:
                setattr(totals, name, getattr(totals, name) + getattr(counters, name))
        totals.delivered += sum(c.delivered for c in clients)
        return {
            "totalClients": len(clients),
            "clientsByUser": dict(by_user),
            "clientsByTenant": dict(by_tenant),
            "clientsByKind": dict(by_kind),
            "queuedEvents": sum(c.queued for c in clients),
            "eventsPublished": totals.published,
            "eventsDelivered": totals.delivered,
            "eventsDropped": totals.dropped,
            "replays": totals.replays,
            "replayedEvents": totals.replayed_events,
            "resyncs": totals.resyncs,
            "reconnects": totals.reconnects,
            "slowConsumersCut": totals.slow_consumers_cut,
            "sessionsEnded": totals.sessions_ended,
        }
