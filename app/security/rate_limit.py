"""Per-key token buckets: a burst is allowed, then a steady rate."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucketLimiter:
    """`take(key)` returns None when allowed, else the seconds to wait before retrying.

    In memory, per process; the Redis issue moves it to Redis so limits hold across workers.
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

    def take(self, key: str) -> int | None:
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
