"""Refuses sign-in for a while after repeated failures for one username or one address."""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol


class SignInThrottle(Protocol):
    async def retry_after(self, keys: Iterable[str]) -> int | None: ...
    async def record_failure(self, keys: Iterable[str]) -> None: ...
    async def record_success(self, key: str) -> None: ...


class LoginThrottle:
    """A sliding window of failure times per key (`user:<name>`, `ip:<address>`).

    In memory, per process; the Redis issue moves it to Redis so limits hold across workers.
    """

    def __init__(
        self,
        *,
        max_failures: int,
        max_failures_per_address: int,
        window_seconds: float,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._max_failures = max_failures
        self._max_failures_per_address = max_failures_per_address
        self._window = window_seconds
        self._enabled = enabled
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def limit_for(self, key: str) -> int:
        # An address is shared by many people (offices, NAT): it gets its own, larger limit.
        return self._max_failures_per_address if key.startswith("ip:") else self._max_failures

    async def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds until a new attempt is allowed, or None when it is allowed now."""
        if not self._enabled:
            return None
        now = self._clock()
        waits = []
        for key in keys:
            times = self._recent(key, now)
            if times is not None and len(times) >= self.limit_for(key):
                waits.append(times[0] + self._window - now)
        return max(1, math.ceil(max(waits))) if waits else None

    async def record_failure(self, keys: Iterable[str]) -> None:
        if not self._enabled:
            return
        now = self._clock()
        for key in keys:
            times = self._recent(key, now)
            if times is None:
                if len(self._failures) >= self._max_keys:
                    self._forget_oldest()
                times = self._failures[key] = deque()
            times.append(now)
            self._failures.move_to_end(key)
            while len(times) > self.limit_for(key):
                times.popleft()

    async def record_success(self, key: str) -> None:
        self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def _forget_oldest(self) -> None:
        # Bounded memory under a spray of usernames: drop the key that failed longest ago.
        self._failures.popitem(last=False)


class RedisLoginThrottle:
    """The same sliding windows in Redis (a sorted set of failure times per key), so a
    guesser cannot spread attempts over several processes."""

    def __init__(
        self,
        redis: Any,
        *,
        max_failures: int,
        max_failures_per_address: int,
        window_seconds: float,
        enabled: bool = True,
    ) -> None:
        self._redis = redis
        self._max_failures = max_failures
        self._max_failures_per_address = max_failures_per_address
        self._window_ms = int(window_seconds * 1000)
        self._enabled = enabled

    def limit_for(self, key: str) -> int:
        return self._max_failures_per_address if key.startswith("ip:") else self._max_failures

    @staticmethod
    def _key(key: str) -> str:
        return f"chat:login:{{{key}}}"

    async def retry_after(self, keys: Iterable[str]) -> int | None:
        if not self._enabled:
            return None
        now = int(time.time() * 1000)
        waits = []
        for key in keys:
            name = self._key(key)
            await self._redis.zremrangebyscore(name, "-inf", now - self._window_ms)
            if await self._redis.zcard(name) >= self.limit_for(key):
                oldest = await self._redis.zrange(name, 0, 0, withscores=True)
                waits.append((oldest[0][1] + self._window_ms - now) / 1000)
        return max(1, math.ceil(max(waits))) if waits else None

    async def record_failure(self, keys: Iterable[str]) -> None:
        if not self._enabled:
            return
        now = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                name = self._key(key)
                pipe.zadd(name, {f"{now}:{uuid.uuid4().hex[:8]}": now})
                pipe.zremrangebyscore(name, "-inf", now - self._window_ms)
                pipe.pexpire(name, self._window_ms)
            await pipe.execute()

    async def record_success(self, key: str) -> None:
        await self._redis.delete(self._key(key))
