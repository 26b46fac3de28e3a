"""The per-user stream limit across processes: a leased slot per open stream, in Redis.

Each stream holds a member of `chat:streams:{u<id>}` whose score is when its lease ends;
the manager renews its streams' leases every heartbeat. A crashed process's slots run out
with their leases instead of locking the user out for good.
"""

from __future__ import annotations

import time
from typing import Any

# KEYS: the user's slots. ARGV: member, limit, now (ms), lease end (ms).
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) - tonumber(ARGV[3]))
return 1
"""


class RedisStreamSlots:
    def __init__(self, redis: Any, *, process: str, lease_seconds: float) -> None:
        self._redis = redis
        self._process = process
        self._lease_ms = int(lease_seconds * 1000)
        self._acquire = redis.register_script(_ACQUIRE)

    @staticmethod
    def _key(user_id: int) -> str:
        return f"chat:streams:{{u{user_id}}}"

    def _member(self, client_id: str) -> str:
        return f"{self._process}:{client_id}"

    async def acquire(self, user_id: int, client_id: str, limit: int) -> bool:
        now = int(time.time() * 1000)
        granted = await self._acquire(
            keys=[self._key(user_id)],
            args=[self._member(client_id), limit, now, now + self._lease_ms],
        )
        return bool(granted)

    async def release(self, user_id: int, client_id: str) -> None:
        await self._redis.zrem(self._key(user_id), self._member(client_id))

    async def renew(self, held: list[tuple[int, str]]) -> None:
        if not held:
            return
        until = int(time.time() * 1000) + self._lease_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id, client_id in held:
                key = self._key(user_id)
                pipe.zadd(key, {self._member(client_id): until}, xx=True)
                # The key outlives its newest lease, or a stream open longer than one lease
                # would lose its slot (and the user's limit across processes with it).
                pipe.pexpire(key, self._lease_ms)
            await pipe.execute()
