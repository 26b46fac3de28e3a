"""Presence across processes: what each process knows of its own clients, kept in Redis.

Every process leases an entry per user it serves (`chat:{tN}:u<id>:conns`, member: the
process id, score: when the lease runs out) and renews it every `refresh_seconds`. One Lua
script ("settle") recomputes a user's status from all leases, their activity and choice,
and records it; only the process whose call changed the status announces it, so each real
change is announced exactly once however many processes look. Every process also sweeps
the tenants it knows of: a crashed process's leases run out, and its users turn offline
after the grace period instead of staying online forever.

Keys of one tenant share the hash tag `{tN}` (one Redis Cluster slot); the index of
tenants with presence (`chat:presence:tenants`) is the only cross-tenant key.

The Redis client is the process's one client (app/runtime.py): the tracker uses it and
never closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.db import Database
from app.domain.presence import (
    Background,
    ClientDrivenPresence,
    PresenceKey,
    Status,
    tenant_members,
)
from app.domain.principal import Principal
from app.realtime.client import Client
from app.realtime.events import PresenceUpdatePayload
from app.realtime.manager import ConnectionManager
from app.realtime.service import RealtimeService
from app.settings import Settings
from app.timeutil import iso, utcnow

logger = logging.getLogger(__name__)

TENANTS_INDEX = "chat:presence:tenants"

# KEYS: the user's leases, the tenant's status hash, the tenant's meta hash.
# ARGV: user id, now (ms), grace (ms), idle (ms).
# Returns {old, new} when the status changed, else false.
_SETTLE = """
local user = ARGV[1]
local now = tonumber(ARGV[2])
local alive = redis.call('ZCOUNT', KEYS[1], now, '+inf')
local new
if alive > 0 then
  local active = tonumber(redis.call('HGET', KEYS[3], 'a:' .. user) or '0')
  if redis.call('HGET', KEYS[3], 'w:' .. user) == '1' or now - active >= tonumber(ARGV[4]) then
    new = 'away'
  else
    new = 'online'
  end
else
  local left = tonumber(redis.call('HGET', KEYS[3], 'l:' .. user) or '0')
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if newest[2] and tonumber(newest[2]) > left then left = tonumber(newest[2]) end
  if now - left < tonumber(ARGV[3]) then
    return false
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  new = 'offline'
end
local old = redis.call('HGET', KEYS[2], user) or 'offline'
if old == new then
  return false
end
redis.call('HSET', KEYS[2], user, new)
redis.call('HSET', KEYS[3], 's:' .. user, now)
return {old, new}
"""


def _keys(tenant_id: int, user_id: int) -> tuple[str, str, str]:
    tag = "{t" + str(tenant_id) + "}"
    return f"chat:{tag}:u{user_id}:conns", f"chat:{tag}:status", f"chat:{tag}:meta"


def _now_ms() -> int:
    return int(time.time() * 1000)


T = TypeVar("T")


async def _reply(command: Awaitable[T] | T) -> T:
    """The reply of one command. redis-py types its commands `Awaitable[T] | T` (one
    signature for its sync and async clients); the asyncio client always returns the
    awaitable."""
    return await cast("Awaitable[T]", command)


class RedisPresenceTracker(ClientDrivenPresence):
    """Presence of every process's clients, in Redis: each real change announced once."""

    def __init__(
        self,
        manager: ConnectionManager,
        service: RealtimeService,
        db: Database,
        settings: Settings,
        redis: aioredis.Redis,
    ) -> None:
        super().__init__(manager, service, db)
        self._redis = redis
        self._settle_script = self._redis.register_script(_SETTLE)
        self._process = uuid.uuid4().hex
        self._grace_ms = int(settings.presence_grace_seconds * 1000)
        self._idle_ms = int(settings.presence_idle_seconds * 1000)
        self._refresh = max(0.2, min(settings.sse_heartbeat_seconds or 5.0, 5.0))
        self._lease_ms = int(self._refresh * 3000)
        self._local: Counter[PresenceKey] = Counter()
        # Where this process holds a lease in Redis; `_local` loses a key before its lease
        # goes, and the manager closes every client before presence stops.
        self._leased: set[PresenceKey] = set()
        self._work: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()

    def _background(self) -> Background:
        return {
            "presence-redis-work": self._run_work,
            "presence-redis-sweep": self._renew_and_sweep,
        }

    async def _stopped(self) -> None:
        # Give up our leases at once: a clean shutdown is not a crash. Marked as left now, so
        # the other processes still wait out the grace period (tabs reconnect elsewhere).
        if not self._leased:
            return
        now = _now_ms()
        with contextlib.suppress(RedisError, OSError):
            async with self._redis.pipeline(transaction=False) as pipe:
                for tenant_id, user_id in self._leased:
                    conns, _, meta = _keys(tenant_id, user_id)
                    pipe.zrem(conns, self._process)
                    pipe.hset(meta, f"l:{user_id}", str(now))
                await pipe.execute()
        self._leased.clear()

    # -- what changes presence (called synchronously by the manager) ----------------

    def _client_connected(self, client: Client) -> None:
        key = (client.tenant_id, client.user_id)
        self._local[key] += 1
        if self._local[key] == 1:
            self._work.put_nowait(lambda: self._arrived(key))

    def _client_disconnected(self, client: Client) -> None:
        key = (client.tenant_id, client.user_id)
        self._local[key] -= 1
        if self._local[key] <= 0:
            del self._local[key]
            self._work.put_nowait(lambda: self._left(key))

    def touch(self, principal: Principal) -> None:
        key = (principal.tenant_id, principal.user_id)
        self._work.put_nowait(lambda: self._set_meta(key, "a", str(_now_ms())))

    def choose(self, principal: Principal, status: Status) -> Status:
        key = (principal.tenant_id, principal.user_id)
        self._work.put_nowait(
            lambda: self._set_meta(key, "w", "1" if status is Status.AWAY else "0")
        )
        return status if key in self._local else Status.OFFLINE

    # -- Redis work, one at a time, in order -------------------------------------------

    async def _run_work(self) -> None:
        while True:
            job = await self._work.get()
            try:
                await job()
            except (RedisError, OSError) as exc:
                logger.warning("presence update postponed, Redis unreachable: %s", exc)
            except Exception:
                logger.exception("presence update failed")

    async def _arrived(self, key: PresenceKey) -> None:
        tenant_id, user_id = key
        conns, _, meta = _keys(tenant_id, user_id)
        now = _now_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(conns, {self._process: now + self._lease_ms})
            pipe.hset(meta, f"a:{user_id}", str(now))
            pipe.sadd(TENANTS_INDEX, tenant_id)
            await pipe.execute()
        self._leased.add(key)
        await self._settle(key)

    async def _left(self, key: PresenceKey) -> None:
        if key in self._local:
            return  # came back meanwhile (a reload)
        tenant_id, user_id = key
        conns, _, meta = _keys(tenant_id, user_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(conns, self._process)
            pipe.hset(meta, f"l:{user_id}", str(_now_ms()))
            await pipe.execute()
        self._leased.discard(key)
        delay = self._grace_ms / 1000 + 0.05
        self._later(delay, lambda: self._work.put_nowait(lambda: self._settle(key)))

    async def _set_meta(self, key: PresenceKey, field: str, value: str) -> None:
        _, _, meta = _keys(*key)
        await _reply(self._redis.hset(meta, f"{field}:{key[1]}", value))
        await self._settle(key)

    async def _settle(self, key: PresenceKey) -> None:
        tenant_id, user_id = key
        changed = await self._settle_script(
            keys=list(_keys(tenant_id, user_id)),
            args=[user_id, _now_ms(), self._grace_ms, self._idle_ms],
        )
        if changed:
            await self._announcer.announce(key, Status(changed[1]), utcnow())

    async def _renew_and_sweep(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            self._work.put_nowait(self._renew_and_sweep_once)

    async def _renew_and_sweep_once(self) -> None:
        now = _now_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            for tenant_id, user_id in self._local:
                pipe.zadd(_keys(tenant_id, user_id)[0], {self._process: now + self._lease_ms})
            await pipe.execute()
        for tenant_id in await _reply(self._redis.smembers(TENANTS_INDEX)):
            statuses = await _reply(self._redis.hgetall(_keys(int(tenant_id), 0)[1]))
            for user_id, status in statuses.items():
                if status != Status.OFFLINE.value:
                    await self._settle((int(tenant_id), int(user_id)))

    # -- reading ---------------------------------------------------------------------

    async def snapshot(self, tenant_id: int) -> list[PresenceUpdatePayload]:
        members = await tenant_members(self._db, tenant_id)
        _, status_key, meta_key = _keys(tenant_id, 0)
        statuses = await _reply(self._redis.hgetall(status_key))
        seen = await _reply(
            self._redis.hmget(meta_key, [f"s:{user_id}" for user_id, _, _ in members])
        )
        result = []
        for (user_id, name, stored), seen_ms in zip(members, seen, strict=True):
            status = statuses.get(str(user_id), Status.OFFLINE.value)
            if status != Status.OFFLINE.value:
                last_seen: datetime | None = utcnow()
            elif seen_ms is not None:
                last_seen = datetime.fromtimestamp(int(seen_ms) / 1000, UTC)
            else:
                last_seen = stored
            result.append(
                PresenceUpdatePayload(
                    user_id=user_id, user_name=name, status=status, last_seen=iso(last_seen)
                )
            )
        return result
