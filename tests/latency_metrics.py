"""Reading the publish-to-write histogram (`chat_event_delivery_seconds`) out of a /metrics
text, for the latency tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from app.realtime.latency import BOUNDS

HISTOGRAM = "chat_event_delivery_seconds"

Series = dict[str, float]  # "le=0.25" / "count" / "sum" -> value, for one label set


def histogram(text: str, transport: str, event_type: str) -> Series:
    """One series of the latency histogram in a /metrics text ({} if it has none yet)."""
    found: Series = {}
    for family in text_string_to_metric_families(text):
        if family.name != HISTOGRAM:
            continue
        for sample in family.samples:
            labels = dict(sample.labels)
            if (labels.get("transport"), labels.get("type")) != (transport, event_type):
                continue
            if sample.name.endswith("_bucket"):
                found[f"le={float(labels['le'])}"] = sample.value
            else:
                found[sample.name.rsplit("_", 1)[1]] = sample.value
    return found


def at_most(series: Series, seconds: float) -> float:
    """Observations of at most `seconds` (a bucket bound)."""
    assert seconds in BOUNDS
    return series.get(f"le={seconds}", 0.0)
