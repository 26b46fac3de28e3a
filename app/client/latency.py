"""Receive latency: how long events took from the server's publish to this client.

Every event carries `sentAt`, the moment the server published it in milliseconds since the
epoch; the client subtracts it from the moment it read the event. The figure includes the
network, any proxy's buffering, and the two machines' clock difference (keep them on NTP).
After a reconnect, replayed events count with their age: a figure that jumps once after a
drop is the replay, one that stays high is a slow path.
"""

from __future__ import annotations

import math
from collections import deque


class LatencyStats:
    """Figures in seconds: `count`, `last`, `mean` and `max` over every event measured, and
    quantiles (`p50`, `p99`, `quantile(q)`) over the last `WINDOW` of them."""

    WINDOW = 1024

    def __init__(self) -> None:
        self.count = 0
        self.last: float | None = None
        self.max: float | None = None
        self._total = 0.0
        self._recent: deque[float] = deque(maxlen=self.WINDOW)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.last = seconds
        self.max = seconds if self.max is None else max(self.max, seconds)
        self._total += seconds
        self._recent.append(seconds)

    @property
    def mean(self) -> float | None:
        return self._total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The nearest-rank quantile of the recent window (None before any event)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("a quantile is between 0 and 1")
        if not self._recent:
            return None
        ordered = sorted(self._recent)
        return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]

    @property
    def p50(self) -> float | None:
        return self.quantile(0.5)

    @property
    def p99(self) -> float | None:
        return self.quantile(0.99)

    def __repr__(self) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.1f} ms"

        return (
            f"LatencyStats(count={self.count}, last={ms(self.last)}, mean={ms(self.mean)}, "
            f"p50={ms(self.p50)}, p99={ms(self.p99)}, max={ms(self.max)})"
        )
