"""One soak consumer: a lineage of SSE connections that resumes with Last-Event-ID.

A consumer lives from its first connect to the end of the run. Between, the churn
controller drops its connection (a FIN or a RST) and it comes back after a short pause with
the id of the last event it processed, as a browser's EventSource does. It records what the
accounting needs: when it first existed, every event id (duplicates, order) and the
message id of every chat:message it got.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from enum import Enum

from app.realtime.ids import EventId
from bench.soak_sse import SseConnection, SseEvent, SseParser, StreamRefused, open_sse


@dataclass(frozen=True, slots=True)
class Identity:
    """A signed-in user in one tenant (carol has one per tenant)."""

    username: str
    user_id: int
    tenant_id: int
    token: str

    @property
    def label(self) -> str:
        return f"{self.username}@{self.tenant_id}"


class DropMode(Enum):
    CLEAN = "clean"  # FIN, like closing an EventSource
    ABRUPT = "abrupt"  # RST, like a crashed tab or a dead network


class Consumer:
    def __init__(
        self, index: int, identity: Identity, host: str, port: int, *, max_gap: float, seed: int
    ) -> None:
        self.index = index
        self.identity = identity
        self._host, self._port = host, port
        self._max_gap = max_gap
        self._rng = random.Random(seed)
        # Lifetime (monotonic seconds): the first request left / its headers came back.
        self.first_request_at: float | None = None
        self.started_at: float | None = None
        self.last_id: str | None = None
        self._last_order: EventId | None = None
        self._seen: set[str] = set()
        self.message_ids: Counter[int] = Counter()
        self.types: Counter[str] = Counter()
        self.duplicates = 0
        self.out_of_order = 0
        self.resyncs = 0
        self.connects = 0
        self.resumes = 0  # connects that sent a Last-Event-ID
        self.resumes_by_query = 0
        self.drops: Counter[str] = Counter()  # clean / abrupt, by the churn controller
        self.server_ends = 0  # the server (or the network) ended a stream we did not drop
        self.refused: Counter[int] = Counter()
        self.connect_errors = 0
        self.connected = False
        self.draining = False
        self._connection: SseConnection | None = None
        self._dropping: DropMode | None = None
        self._stopping = False

    # -- control (called by the churn controller and the run) ---------------------------

    @property
    def can_drop(self) -> bool:
        """Only a consumer that has an id to resume from: without one, a reconnect could
        not ask for what it missed (a real client would refetch over REST instead)."""
        return self.connected and self.last_id is not None and not self._stopping

    def drop(self, mode: DropMode) -> None:
        connection = self._connection
        if connection is None or self._dropping is not None:
            return
        self._dropping = mode
        self.drops[mode.value] += 1
        if mode is DropMode.CLEAN:
            connection.close_cleanly()
        else:
            connection.close_abruptly()

    def stop(self) -> None:
        self._stopping = True
        if self._connection is not None:
            self._connection.close_cleanly()

    # -- the connection loop --------------------------------------------------------------

    async def run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            if self.first_request_at is None:
                self.first_request_at = time.monotonic()
            by_query = self.last_id is not None and self._rng.random() < 0.5
            try:
                connection = await open_sse(
                    self._host,
                    self._port,
                    self.identity.token,
                    tenant=self.identity.tenant_id,
                    last_event_id=self.last_id,
                    id_in_query=by_query,
                )
            except StreamRefused as refused:
                self.refused[refused.status] += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 3.0)
                continue
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                self.connect_errors += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 3.0)
                continue
            backoff = 0.2
            if self._stopping:  # stop() came while this connect was on its way
                connection.close_cleanly()
                break
            if self.started_at is None:
                self.started_at = time.monotonic()
            self.connects += 1
            if self.last_id is not None:
                self.resumes += 1
                self.resumes_by_query += by_query
            self._connection, self.connected = connection, True
            try:
                await self._read(connection)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                pass  # our own close, or the server's: both end this connection
            finally:
                self._connection, self.connected = None, False
                connection.writer.transport.abort()
            if self._stopping:
                break
            if self._dropping is None:
                self.server_ends += 1
            self._dropping = None
            if not self.draining:
                await asyncio.sleep(self._rng.uniform(0, self._max_gap))

    async def _read(self, connection: SseConnection) -> None:
        parser = SseParser()
        while body := await connection.read_body():
            for event in parser.feed(body):
                self._record(event)

    def _record(self, event: SseEvent) -> None:
        self.types[event.type] += 1
        if event.type == "resync":
            self.resyncs += 1
        if event.id is None:
            return  # ping and resync carry no id and never move Last-Event-ID
        if event.id in self._seen:
            self.duplicates += 1
        else:
            self._seen.add(event.id)
        order = EventId.parse(event.id)
        if order is not None:
            if self._last_order is not None and order < self._last_order:
                self.out_of_order += 1
            else:
                self._last_order = order
        self.last_id = event.id
        if event.type == "chat:message":
            self.message_ids[int(json.loads(event.data)["message"]["id"])] += 1

    @property
    def user_id(self) -> int:
        return self.identity.user_id

    @property
    def tenant_id(self) -> int:
        return self.identity.tenant_id

    @property
    def events_with_id(self) -> int:
        return len(self._seen) + self.duplicates
