"""A connected client: one browser tab or one HTTP stream, with its bounded queue."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from app.realtime.events import Event
from app.realtime.ids import EventId

_next_client_number = itertools.count(1)


class ClientKind(StrEnum):
    STREAM = "stream"  # GET /api/sse
    TAB = "tab"  # a Reflex page's live state


class CloseReason(StrEnum):
    DISCONNECTED = "disconnected"
    SLOW_CONSUMER = "slow_consumer"
    SESSION_ENDED = "session_ended"  # token revoked or expired
    SHUTDOWN = "shutdown"


class Client:
    """Receives events through a bounded queue; never blocks the publisher.

    When the queue is full the client is closed rather than allowed to grow or to slow
    anyone else: its consumer reconnects and resumes with Last-Event-ID.
    """

    __slots__ = (
        "_cancel_transport",
        "_max_queue",
        "_on_close",
        "_on_ready",
        "_queue",
        "_ready_signalled",
        "_skip_upto",
        "_transport_alive",
        "_waiter",
        "channels",
        "close_reason",
        "connected_at",
        "delivered",
        "discarded",
        "first_delivered",
        "id",
        "kind",
        "last_delivered",
        "session_ref",
        "tenant_id",
        "types",
        "user_id",
    )

    def __init__(
        self,
        *,
        user_id: int,
        tenant_id: int,
        channels: frozenset[str],
        types: frozenset[str] | None,
        kind: ClientKind,
        max_queue: int,
        session_ref: Any = None,
        transport_alive: Callable[[], bool] | None = None,
    ) -> None:
        self.id = f"c{next(_next_client_number)}"
        self.user_id = user_id
        self.tenant_id = tenant_id
        self.channels = channels
        self.types = types
        self.kind = kind
        self.session_ref = session_ref
        self.connected_at = time.time()
        self.delivered = 0
        self.discarded = 0  # queued but never taken when it closed: lost with the cut
        # The first and last event ids taken for writing, replayed ones included (the
        # manager sets them for the backlog): the log's disconnect line shows them, and a
        # connection has no gaps (a full queue closes it), so they say which events it got
        # (docs/OPERATIONS.md's recipe).
        self.first_delivered: EventId | None = None
        self.last_delivered: EventId | None = None
        self.close_reason: CloseReason | None = None
        # A list, not a deque: an empty deque costs ~600 bytes, and idle streams are many.
        self._queue: list[Event] = []
        self._max_queue = max_queue
        self._waiter: asyncio.Future[None] | None = None
        self._skip_upto: EventId | None = None
        self._cancel_transport: Callable[[], None] | None = None
        self._on_close: Callable[[Client], None] | None = None
        # A push transport (the process's stream writer) instead of a reader awaiting
        # next_batch(): told once when events wait, not once per event.
        self._on_ready: Callable[[Client], None] | None = None
        self._ready_signalled = False
        # Asked by the manager's heartbeat: a transport that can end without its reader
        # being told (a Reflex tab's listener outlives the websocket it was started from)
        # says here whether it is still there.
        self._transport_alive = transport_alive

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def transport_alive(self) -> bool:
        """False once the transport is known to be gone (no check given: assumed there)."""
        return self._transport_alive is None or self._transport_alive()

    def offer(self, event: Event) -> bool:
        """Queue `event` for this client; False when it could not be queued."""
        if self.close_reason is not None:
            return False
        if len(self._queue) >= self._max_queue:
            self.close(CloseReason.SLOW_CONSUMER)
            return False
        self._queue.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        elif self._on_ready is not None and not self._ready_signalled:
            self._ready_signalled = True
            self._on_ready(self)
        return True

    def skip_through(self, last_replayed: EventId) -> None:
        """Live events up to this id were already replayed: do not deliver them twice."""
        self._skip_upto = last_replayed

    async def next_batch(self) -> list[Event]:
        """Every event queued so far, waiting for at least one; [] once the client is closed."""
        while True:
            while not self._queue:
                if self.close_reason is not None:
                    return []
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            if self.close_reason is not None:
                return []
            if batch := self.take_batch():  # all of it may have been replayed: wait for more
                return batch

    def take_batch(self) -> list[Event]:
        """Every event queued so far, without waiting (a push transport's read)."""
        self._ready_signalled = False
        if not self._queue or self.close_reason is not None:
            return []
        batch, self._queue = self._queue, []
        if self._skip_upto is not None:
            batch = self._without_replayed(batch, self._skip_upto)
            if not batch:  # all of it was replayed already
                return batch
        self.delivered += len(batch)
        tail = batch[-1].id
        if tail is None:  # a control event (ping, resync) last: rare, so off the fast path
            self._note_delivered(batch)
        else:
            self.last_delivered = tail
            if self.first_delivered is None:
                self._note_delivered(batch)
        return batch

    def _note_delivered(self, batch: list[Event]) -> None:
        ids = [event.id for event in batch if event.id is not None]
        if ids:
            self.last_delivered = ids[-1]
            if self.first_delivered is None:
                self.first_delivered = ids[0]

    def push_to(self, on_ready: Callable[[Client], None]) -> None:
        """Deliver by push: `on_ready(client)` once whenever events start waiting; the
        transport then takes them with take_batch()."""
        self._on_ready = on_ready
        if self._queue and not self._ready_signalled:
            self._ready_signalled = True
            on_ready(self)

    def _without_replayed(self, batch: list[Event], skip_upto: EventId) -> list[Event]:
        kept = [e for e in batch if e.id is None or e.id > skip_upto]
        if any(e.id is not None for e in kept):
            # Ids only grow: once a live event is past the replayed ones, stop checking.
            self._skip_upto = None
        return kept

    def bind_transport(self, cancel: Callable[[], None] | None) -> None:
        """How to abort the writer of this client's events if it is stuck when we close."""
        self._cancel_transport = cancel

    def on_close(self, callback: Callable[[Client], None]) -> None:
        self._on_close = callback

    def close(self, reason: CloseReason) -> None:
        if self.close_reason is not None:
            return
        self.close_reason = reason
        self.discarded = len(self._queue)
        self._queue.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        elif self._cancel_transport is not None:
            # Not waiting for events means the transport may be blocked writing to a peer
            # that does not read: cut it off instead of waiting for TCP to give up.
            self._cancel_transport()
        self._cancel_transport = None
        self._transport_alive = None  # nothing left to ask; drop what the check holds
        if self._on_close is not None:
            callback, self._on_close = self._on_close, None
            callback(self)
