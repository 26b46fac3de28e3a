"""The garbage collector's pauses as /metrics shows them, and the frozen start-up heap."""

from __future__ import annotations

import gc
import re
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from app.gc_pauses import GcPauses, freeze_startup_heap


@pytest.fixture
def pauses() -> Iterator[tuple[GcPauses, CollectorRegistry]]:
    registry = CollectorRegistry(auto_describe=False)
    recorder = GcPauses(registry)
    yield recorder, registry
    recorder.close()


def _sample(registry: CollectorRegistry, name: str, labels: str) -> float:
    text = generate_latest(registry).decode()
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} missing:\n{text}"
    return float(match.group(1))


def test_a_full_collection_is_counted_with_its_pause(
    pauses: tuple[GcPauses, CollectorRegistry],
) -> None:
    _, registry = pauses
    full = '{generation="2"}'
    before = _sample(registry, "chat_gc_pause_seconds_count", full)
    gc.collect()
    assert _sample(registry, "chat_gc_pause_seconds_count", full) == before + 1
    assert _sample(registry, "chat_gc_pause_seconds_sum", full) > 0
    # Cumulative buckets: the +Inf one holds every collection of the generation.
    assert (
        _sample(registry, "chat_gc_pause_seconds_bucket", '{generation="2",le="+Inf"}')
        == before + 1
    )


def test_a_scrape_during_collections_does_not_block(
    pauses: tuple[GcPauses, CollectorRegistry],
) -> None:
    # Collections forced at nearly every allocation while the registry renders. The callback
    # takes no lock, so a collection that starts inside a scrape's critical section cannot
    # wait on the scrape (prometheus_client's locks are not reentrant). Run in a thread so
    # that a callback that blocks fails here instead of hanging the suite.
    _, registry = pauses
    thresholds = gc.get_threshold()
    finished = threading.Event()

    def scrape_repeatedly() -> None:
        gc.set_threshold(1)
        try:
            for _ in range(200):
                generate_latest(registry)
        finally:
            gc.set_threshold(*thresholds)
        finished.set()

    worker = threading.Thread(target=scrape_repeatedly, daemon=True)
    worker.start()
    assert finished.wait(timeout=30), "a scrape and a collection blocked each other"
    assert _sample(registry, "chat_gc_pause_seconds_count", '{generation="0"}') > 0


def test_closing_stops_the_measurements(pauses: tuple[GcPauses, CollectorRegistry]) -> None:
    recorder, registry = pauses
    recorder.close()
    before = _sample(registry, "chat_gc_pause_seconds_count", '{generation="2"}')
    gc.collect()
    assert _sample(registry, "chat_gc_pause_seconds_count", '{generation="2"}') == before


def test_the_start_up_heap_is_frozen() -> None:
    try:
        assert freeze_startup_heap() > 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
