"""How long to wait before the next connection attempt."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits `initial * factor**(n-1)` seconds,
    at most `max`, minus up to `jitter` (a fraction) of it at random so that many clients
    cut off together do not all come back in the same instant."""

    initial: float = 0.5
    max: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.max < self.initial or self.factor < 1:
            raise ValueError("Backoff needs 0 < initial <= max and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Backoff jitter is a fraction between 0 and 1")

    def delay(
        self, attempt: int, *, floor: float = 0.0, rng: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts failures, >= 1).

        `floor` is what the server asked for (`Retry-After`, or the stream's `retry:`): the
        client never comes back sooner, but never waits longer than `max` either, so a
        server's typo cannot park a bot for a day."""
        exponential = min(self.max, self.initial * self.factor ** max(attempt - 1, 0))
        jittered = exponential * (1 - self.jitter * rng())
        return max(jittered, min(floor, self.max))
