"""The garbage collector of a process that holds thousands of streams.

A full collection walks every container object the process holds, and every stream waits
for it: with 5,000 streams connecting, full collections took 143 to 247 ms here. Two
things keep that in check and in view:

- `freeze_startup_heap()`: what is alive once the app has started (the framework, the
  compiled pages, the runtime) lives as long as the process. Frozen, no collection walks
  it again: the same full collections took 35 to 121 ms.
- `GcPauses`: how long collections take, by generation, for /metrics, so that such pauses
  are seen in production rather than guessed at from latency.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

_PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_GENERATIONS = 3


def freeze_startup_heap() -> int:
    """Collect start-up garbage, then move everything still alive out of the collector's
    reach. Returns how many objects are frozen."""
    gc.collect()  # garbage of the start-up is freed, not frozen
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses(Collector):
    """Collection pauses by generation (a histogram) and the frozen object count.

    The collector's callback keeps its counts in plain lists and touches no
    prometheus_client object: a collection can start in any thread at any allocation,
    also while that thread holds one of prometheus_client's locks (a scrape copying its
    children, say), and those locks are not reentrant. The figures become metrics only
    when /metrics is read.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        # Per generation: a count per bucket (the last one past the largest bound) and a sum.
        self._counts = [[0] * (len(_PAUSE_BUCKETS) + 1) for _ in range(_GENERATIONS)]
        self._sums = [0.0] * _GENERATIONS
        self._started = 0.0
        registry.register(self)
        gc.callbacks.append(self._on_collection)

    def collect(self) -> Iterator[Metric]:
        pauses = HistogramMetricFamily(
            "chat_gc_pause_seconds",
            "Garbage collections by generation and how long each paused the process.",
            labels=["generation"],
        )
        bounds = [*(repr(bound) for bound in _PAUSE_BUCKETS), "+Inf"]
        for generation in range(_GENERATIONS):
            cumulative, buckets = 0, []
            for bound, count in zip(bounds, self._counts[generation], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            pauses.add_metric([str(generation)], buckets, self._sums[generation])
        yield pauses
        yield GaugeMetricFamily(
            "chat_gc_frozen_objects",
            "Objects frozen after start-up, which no collection walks.",
            value=gc.get_freeze_count(),
        )

    def close(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        elapsed = time.perf_counter() - self._started
        generation = info["generation"]
        self._sums[generation] += elapsed
        self._counts[generation][bisect_left(_PAUSE_BUCKETS, elapsed)] += 1
