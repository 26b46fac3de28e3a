"""A pytest plugin (registered in tests/conftest.py) for the realtime unit tests: started
managers on in-memory brokers, stopped after (the `managers` fixture), and what a test reads
from a client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.realtime.broker.memory import MemoryBroker
from app.realtime.client import Client
from app.realtime.events import Event, EventType
from app.realtime.manager import ConnectionManager


class ManagerFactory:
    """Builds started managers and stops them all at teardown."""

    def __init__(self) -> None:
        self._started: list[ConnectionManager] = []

    async def __call__(
        self,
        *,
        broker: MemoryBroker | None = None,
        buffer_size: int = 100,
        max_age_seconds: float = 300.0,
        queue_size: int = 100,
        max_streams_per_user: int = 100,
    ) -> ConnectionManager:
        if broker is None:
            broker = MemoryBroker(
                replay_buffer_size=buffer_size, replay_max_age_seconds=max_age_seconds
            )
        manager = ConnectionManager(
            broker,
            queue_size=queue_size,
            max_streams_per_user=max_streams_per_user,
            heartbeat_seconds=0,
        )
        await manager.start()
        self._started.append(manager)
        return manager

    async def stop_all(self) -> None:
        for manager in reversed(self._started):
            await manager.stop()


@pytest.fixture
async def managers() -> AsyncIterator[ManagerFactory]:
    factory = ManagerFactory()
    try:
        yield factory
    finally:
        await factory.stop_all()


async def collect(client: Client, count: int, timeout: float = 5.0) -> list[Event]:
    """The next `count` events of `client`, pings left out (fails after `timeout` s)."""
    received: list[Event] = []
    async with asyncio.timeout(timeout):
        while len(received) < count:
            received.extend(e for e in await client.next_batch() if e.type != EventType.PING)
    return received
