"""Refuses sign-in for a while after repeated failures for one username or one address."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable


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

    def retry_after(self, keys: Iterable[str]) -> int | None:
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

    def record_failure(self, keys: Iterable[str]) -> None:
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

    def record_success(self, key: str) -> None:
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
