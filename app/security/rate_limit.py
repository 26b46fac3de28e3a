"""Per-key token buckets: a burst is allowed, then a steady rate.

The contract (README, `RATE_LIMIT_*`): `burst` at once, then one every `60 / per_minute`
seconds, and a refusal's Retry-After is the time until the next token (1 s at the
defaults), so the page sends the messages it held back at the steady rate.

Hand-written on purpose, not the `limits` package (checked against limits 5.8.0):

- limits counts fixed windows, moving windows and sliding-window counters; it has no token
  bucket. The nearest window, `burst` per `burst * 60 / per_minute` seconds, keeps the burst
  and the long-run rate but refuses for the rest of the window once the burst is spent:
  Retry-After 20 s for messages and 10 s for typing and searches instead of 1 s, and then a
  whole new burst at once. Someone who pastes 25 lines would see the last five arrive 20 s
  later instead of one a second. Stacking windows ("60 per minute" and "20 per second")
  lets three bursts through in three seconds and then refuses for 57.
- What did not decide it: limits' async Redis storage can use our redis-py pool
  (`RedisStorage("async+redis://", implementation="redispy",
  connection_pool=client.connection_pool)`), so one pool per process would still hold.
- throttled-py has a token bucket, but its Redis script counts whole seconds and whole
  tokens (each take drops the part of a token refilled since the last one), and it connects
  from a server URL of its own instead of taking our client.

tests/test_limits_edges.py pins these edges for both classes.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


class RateLimiter(Protocol):
    async def take(self, key: str) -> int | None: ...


class TokenBucketLimiter:
    """`take(key)` returns None when allowed, else the seconds to wait before retrying.

    In memory, so per process: what runs without `REDIS_URL`. With it, app/runtime.py uses
    RedisTokenBucketLimiter and a limit holds across every process.
    """

    def __init__(
        self,
        *,
        per_minute: int,
        burst: int,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if per_minute <= 0 or burst <= 0:
            raise ValueError("a rate limit needs a positive rate and burst")
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._enabled = enabled
        self._clock = clock
        self._max_keys = max_keys
        # key -> (tokens left, when they were counted); oldest-used first, for eviction.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def take(self, key: str) -> int | None:
        if not self._enabled:
            return None
        now = self._clock()
        tokens, counted_at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - counted_at) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            self._buckets.move_to_end(key)
            return max(1, math.ceil((1.0 - tokens) / self._rate))
        self._buckets[key] = (tokens - 1.0, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return None


# KEYS: the bucket. ARGV: tokens per ms, burst, now (ms). Returns -1 when allowed, else the
# whole seconds to wait.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or burst)
local counted = tonumber(redis.call('HGET', KEYS[1], 'ts') or now)
tokens = math.min(burst, tokens + math.max(0, now - counted) * rate)
local allowed = tokens >= 1
if allowed then tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
if allowed then return -1 end
return math.max(1, math.ceil((1 - tokens) / rate / 1000))
"""


class RedisTokenBucketLimiter:
    """The same buckets kept in Redis, so a limit holds across every process."""

    def __init__(self, redis: Any, *, per_minute: int, burst: int, enabled: bool = True) -> None:
        if per_minute <= 0 or burst <= 0:
            raise ValueError("a rate limit needs a positive rate and burst")
        self._redis = redis
        self._rate_per_ms = per_minute / 60_000.0
        self._burst = burst
        self._enabled = enabled
        self._script = redis.register_script(_TAKE)

    async def take(self, key: str) -> int | None:
        if not self._enabled:
            return None
        try:
            wait = await self._script(
                keys=[f"chat:rate:{{{key}}}"],
                args=[repr(self._rate_per_ms), self._burst, int(time.time() * 1000)],
            )
        except (RedisError, OSError) as exc:
            # Chat keeps working through a Redis outage; the limit resumes with Redis.
            logger.warning("rate limit not checked, Redis unreachable: %s", exc)
            return None
        return None if int(wait) < 0 else int(wait)
