"""The composition root (app/runtime.py): what it wires, against a real redis-server.

With REDIS_URL the broker, presence, the rate limiters and the sign-in throttle share ONE
Redis client, so the process holds no connection outside that client's pool; the runtime
closes the pool after everyone has stopped. Without it nothing is built for Redis at all.
The session sweep is a domain rule that the runtime only schedules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlmodel import Session

from app.domain.errors import NotAuthenticated
from app.domain.presence import PresenceTracker
from app.domain.presence_redis import RedisPresenceTracker
from app.models import AuthToken
from app.realtime.broker import MemoryBroker
from app.realtime.broker.redis import RedisBroker
from app.realtime.client import Client, ClientKind, CloseReason
from app.realtime.events import EventType
from app.runtime import Runtime
from app.security.login_throttle import LoginThrottle, RedisLoginThrottle
from app.settings import Settings
from app.timeutil import utcnow
from tests.redis_server import RedisServer, start_redis

WAIT = 10.0


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module alone: every connection it lists is ours to count."""
    server = start_redis(tmp_path_factory.mktemp("composition-redis"))
    try:
        yield server
    finally:
        server.stop()


def _settings(tmp_path: Path, **changes: Any) -> Settings:
    return replace(Settings(), database_url=f"sqlite:///{tmp_path / 'chat.db'}", **changes)


@pytest.fixture
async def inspector(own_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    own_redis.flush()
    client = aioredis.from_url(own_redis.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def _others(inspector: aioredis.Redis) -> list[dict[str, Any]]:
    """The server's connections except the inspector's own."""
    me = await inspector.client_id()
    return [c for c in await inspector.client_list() if int(c["id"]) != me]


def _pool_size(client: aioredis.Redis) -> int:
    return sum(count for count, _ in client.connection_pool.get_connection_count())


async def _next_of(client: Client, event_type: str) -> None:
    async with asyncio.timeout(WAIT):
        while not any(e.type == event_type for e in await client.next_batch()):
            pass


async def _wait_for_key(inspector: aioredis.Redis, pattern: str) -> list[str]:
    async with asyncio.timeout(WAIT):
        while not (keys := [k async for k in inspector.scan_iter(match=pattern)]):
            await asyncio.sleep(0.05)
    return keys


async def test_with_redis_every_collaborator_works_through_one_pool_closed_at_stop(
    own_redis: RedisServer, inspector: aioredis.Redis, tmp_path: Path
) -> None:
    runtime = Runtime(_settings(tmp_path, redis_url=own_redis.url, sse_heartbeat_seconds=0))
    await runtime.start()
    try:
        assert runtime.redis is not None
        alice = (await runtime.accounts.sign_in("alice", "alice-pass", "127.0.0.1")).principal
        with pytest.raises(NotAuthenticated):  # the sign-in throttle counts it in Redis
            await runtime.accounts.sign_in("bob", "a guess", "127.0.0.1")
        stream = await runtime.manager.connect(  # a stream slot, and a presence lease
            user_id=alice.user_id,
            tenant_id=alice.tenant_id,
            kind=ClientKind.STREAM,
            session_ref=alice.token_id,
        )
        await _next_of(stream.client, EventType.PRESENCE_UPDATE)  # presence, via the broker
        views, _ = await runtime.conversations.list_for(alice)
        await runtime.messages.send(alice, views[0].id, "hello")  # a rate limit, a publish
        await _next_of(stream.client, EventType.CHAT_MESSAGE)

        tenant = "{t" + str(alice.tenant_id) + "}"
        for used_by, pattern in {
            "broker": f"chat:{tenant}:log",
            "stream slots": f"chat:streams:{{u{alice.user_id}}}",
            "presence": f"chat:{tenant}:u{alice.user_id}:conns",
            "rate limiter": "chat:rate:*message*",
            "sign-in throttle": "chat:login:*",
        }.items():
            assert await _wait_for_key(inspector, pattern), used_by

        # Every connection the server has from this process is one of the shared pool's
        # (the live feed's subscription included): no collaborator opened a pool of its own.
        connections = await _others(inspector)
        assert len(connections) >= 2  # the subscription, and one for commands
        assert len(connections) <= _pool_size(runtime.redis)
    finally:
        await runtime.stop()

    # Presence gave its lease back before the runtime closed the shared client...
    assert await inspector.zcard(f"chat:{tenant}:u{alice.user_id}:conns") == 0
    # ...and closing it closed every connection the process had.
    async with asyncio.timeout(WAIT):
        while await _others(inspector):
            await asyncio.sleep(0.05)


async def test_redis_or_memory_is_one_choice_for_every_collaborator(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    memory = Runtime(_settings(tmp_path))
    in_redis = Runtime(_settings(tmp_path, redis_url=own_redis.url))
    try:
        assert memory.redis is None
        assert isinstance(memory.broker, MemoryBroker)
        assert isinstance(memory.presence, PresenceTracker)
        assert isinstance(memory.throttle, LoginThrottle)
        assert in_redis.redis is not None
        assert isinstance(in_redis.broker, RedisBroker)
        assert isinstance(in_redis.presence, RedisPresenceTracker)
        assert isinstance(in_redis.throttle, RedisLoginThrottle)
    finally:
        await memory.stop()
        await in_redis.stop()


async def test_the_runtime_runs_the_session_sweep_every_heartbeat(tmp_path: Path) -> None:
    runtime = Runtime(_settings(tmp_path, sse_heartbeat_seconds=0.2))
    await runtime.start()
    try:
        bob = (await runtime.accounts.sign_in("bob", "bob-pass", "127.0.0.1")).principal
        stream = await runtime.manager.connect(
            user_id=bob.user_id,
            tenant_id=bob.tenant_id,
            kind=ClientKind.STREAM,
            types=frozenset({EventType.NOTIFICATION_NEW.value}),
            session_ref=bob.token_id,
        )
        # Revoked as another process would: only the database knows, no call here.
        with Session(runtime.db.engine) as session:
            token = session.get(AuthToken, bob.token_id)
            assert token is not None
            token.revoked_at = utcnow()
            session.add(token)
            session.commit()
        async with asyncio.timeout(WAIT):
            while not stream.client.closed:
                await stream.client.next_batch()
        assert stream.client.close_reason is CloseReason.SESSION_ENDED
    finally:
        await runtime.stop()
