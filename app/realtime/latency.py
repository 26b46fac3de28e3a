"""Publish-to-write latency: how long an event took from its publish to its hand-over to a
client's transport, by transport and event type (the seed design's "event latency").

Counted here, in plain lists, rather than with prometheus_client's Histogram: the stream
writer observes once per event per stream, thousands of times per event, and a Histogram's
lock and label lookup per observation would be most of the fan-out's cost. The writer
places one event once per pass (`place`), counts the streams that took it, and adds that
count to the event's bucket once (`Placement.count`); /metrics turns the lists into a
histogram at scrape time (app/metrics.py).

The clock is the wall clock (`time.time()`), the one `Event.published_at` is taken on, so an
event published by another process (through Redis) is measured from its publisher's
moment. Across machines that includes their clock skew; a negative figure (a clock behind
the publisher's) counts as 0.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from app.realtime.events import Event

# Upper bounds in seconds: half a millisecond (a write in the same turn as its publish) up to
# ten seconds (a consumer that stalled; SSE_WRITE_TIMEOUT_SECONDS cuts it at 10 by default).
BOUNDS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# A row: one count per bound, one for +Inf, then the sum of the seconds observed.
Row = list[float]
_SUM = len(BOUNDS) + 1


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one event's latency, measured at one moment, goes: its row and bucket."""

    row: Row
    slot: int
    seconds: float

    def count(self, times: int = 1) -> None:
        row = self.row
        row[self.slot] += times
        row[_SUM] += self.seconds * times


@dataclass(frozen=True, slots=True)
class LatencySeries:
    """One (transport, type) series as /metrics exports it."""

    transport: str
    type: str
    cumulative: list[tuple[str, int]]  # (le, observations <= le), +Inf last
    sum: float


class DeliveryLatency:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], Row] = {}

    def place(self, transport: str, event: Event, now: float) -> Placement:
        seconds = now - event.published_at
        seconds = max(seconds, 0.0)
        return Placement(self._row(transport, event.type), bisect_left(BOUNDS, seconds), seconds)

    def observe(self, transport: str, events: Iterable[Event], now: float) -> None:
        """Count each of `events` as handed over at `now`."""
        for event in events:
            self.place(transport, event, now).count()

    def _row(self, transport: str, event_type: str) -> Row:
        key = (transport, event_type)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = [0] * (_SUM + 1)
        return row

    def series(self) -> Iterator[LatencySeries]:
        labels = [_le(bound) for bound in BOUNDS] + ["+Inf"]
        for (transport, event_type), row in sorted(self._rows.items()):
            running, cumulative = 0, []
            for label, count in zip(labels, row[:_SUM], strict=True):
                running += int(count)
                cumulative.append((label, running))
            yield LatencySeries(transport, event_type, cumulative, float(row[_SUM]))


def _le(bound: float) -> str:
    return repr(bound)  # "0.0005", "1.0", "10.0": what prometheus_client writes for floats
