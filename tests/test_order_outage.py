"""One conversation's order across two processes and a Redis outage.

Each process keeps its own outbox while Redis is away; when it is back both flush at once,
and one sender's messages, accepted alternately by the two processes, would reach consumers
interleaved by outbox rather than in the order they were accepted. The broker keeps a
conversation's order (app/realtime/broker/redis.py): every consumer, on either process,
sees the accepted messages in message id order, each once.

The test stops the session's redis-server and starts it again, empty (as
tests/test_scale_out.py does).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend import Backend, Stream, direct_conversation, open_stream, start_backend
from tests.redis_server import RedisServer

RUN_SECONDS = 60.0
OUTAGE_STARTS = 20.0
OUTAGE_ENDS = 35.0
PAUSE_BETWEEN_SENDS = 0.1


@pytest.fixture(scope="module")
def two_processes(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Backend]]:
    redis_server.flush()
    workdir: Path = tmp_path_factory.mktemp("order")
    env = {"REDIS_URL": redis_server.url, "RATE_LIMIT_ENABLED": "false"}
    backends: list[Backend] = []
    try:
        for _ in range(2):  # one after the other: the first creates the schema
            backends.append(start_backend(workdir, env, backend_only=True))
        yield backends
    finally:
        for backend in backends:
            backend.stop()
        if redis_server.process is None or redis_server.process.poll() is not None:
            redis_server.start()  # the test failed during the outage: back for the others


class Consumer:
    """Reads one stream into the message ids it received, in the order received."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.ids: list[int] = []
        self.other_events: list[str] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            event = await self.stream.next(timeout=3600)
            if event.event == "chat:message":
                self.ids.append(int(json.loads(event.data)["message"]["id"]))
            else:
                self.other_events.append(event.event)

    async def until(self, count: int, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        while len(self.ids) < count:
            if self._task.done():
                self._task.result()  # the stream ended: say why
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.ids)} of {count} messages in {timeout} s")
            await asyncio.sleep(0.05)
        return self.ids

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_one_senders_messages_reach_every_consumer_in_order_across_a_redis_outage(
    two_processes: list[Backend], redis_server: RedisServer
) -> None:
    timeout = httpx.Timeout(30.0, read=3600.0)
    clients = [httpx.AsyncClient(base_url=b.url, timeout=timeout) for b in two_processes]
    alice = two_processes[0].token("alice")
    bob = two_processes[1].token("bob")
    conversation = await direct_conversation(clients[0], alice, "bob")
    auth = {"Authorization": f"Bearer {alice}"}
    params = {"events": "chat:message"}
    accepted: list[int] = []
    refused = 0
    in_outage = [0, 0]  # accepted by each process while Redis was away
    async with (
        open_stream(clients[0], bob, params=params) as on_a,
        open_stream(clients[1], bob, params=params) as on_b,
    ):
        consumers = [Consumer(on_a), Consumer(on_b)]
        try:
            started = time.monotonic()
            redis_down = redis_back = False
            n = 0
            while (elapsed := time.monotonic() - started) < RUN_SECONDS:
                if not redis_down and elapsed >= OUTAGE_STARTS:
                    await asyncio.to_thread(redis_server.stop)
                    redis_down = True
                if redis_down and not redis_back and elapsed >= OUTAGE_ENDS:
                    await asyncio.to_thread(redis_server.start)  # empty: it kept nothing
                    redis_back = True
                response = await clients[n % 2].post(
                    f"/api/conversations/{conversation}/messages",
                    json={"content": f"message {n}"},
                    headers=auth,
                )
                n += 1
                assert response.status_code in (201, 503), response.text
                if response.status_code == 201:
                    accepted.append(int(response.json()["id"]))
                    if redis_down and not redis_back:
                        in_outage[(n - 1) % 2] += 1
                else:
                    refused += 1
                await asyncio.sleep(PAUSE_BETWEEN_SENDS)
            assert redis_down and redis_back
            received = [await c.until(len(accepted), timeout=60) for c in consumers]
            # Give a repeat its chance to show: the newest message again would follow it.
            marker = await clients[0].post(
                f"/api/conversations/{conversation}/messages",
                json={"content": "the end"},
                headers=auth,
            )
            assert marker.status_code == 201, marker.text
            accepted.append(int(marker.json()["id"]))
            received = [await c.until(len(accepted), timeout=30) for c in consumers]
        finally:
            for consumer in consumers:
                await consumer.close()
        for client in clients:
            await client.aclose()
    assert accepted == sorted(accepted)  # one sender, one message at a time
    # Both processes took messages during the outage, each into its own outbox.
    assert min(in_outage) > 10, (in_outage, refused)
    for ids, consumer in zip(received, consumers, strict=True):
        assert ids == accepted, [i for i, (x, y) in enumerate(zip(ids, accepted)) if x != y][:5]
        assert consumer.other_events == []  # no resync: nothing was lost to resume from
