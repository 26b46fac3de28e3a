"""Prometheus metrics of one process, for GET /metrics.

The realtime figures are read from the connection manager at scrape time (it already counts
them for the diagnostics endpoint), and the publish-to-write latency from the lists the
transports keep (app/realtime/latency.py), so nothing is counted twice and the hot path
pays no lock. Only what has no other home is counted here: authentication failures and
HTTP requests (app/api/http_metrics.py). Every figure is
process-wide: no tenant id or count of one tenant appears, the endpoint may be scraped by a
shared monitoring system.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from app.domain.errors import DomainError, Forbidden, RateLimited, SignInBusy
from app.gc_pauses import GcPauses
from app.realtime.broker.base import Broker
from app.realtime.latency import DeliveryLatency
from app.realtime.manager import ConnectionManager
from app.realtime.writer import StreamWriter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# diagnostics() key -> (metric name without the _total suffix, help)
_COUNTERS: dict[str, tuple[str, str]] = {
    "eventsPublished": ("chat_events_published", "Events published by this process."),
    "eventsDelivered": ("chat_events_delivered", "Events handed to a client's transport."),
    "eventsDropped": ("chat_events_dropped", "Events a client could not take (it was cut off)."),
    "replays": ("chat_replays", "Reconnects resumed from the replay history."),
    "replayedEvents": ("chat_events_replayed", "Events sent again to resuming clients."),
    "resyncs": ("chat_resyncs", "Reconnects that could not resume and were told to resync."),
    "reconnects": ("chat_reconnects", "Connections that came with a Last-Event-ID."),
    "slowConsumersCut": ("chat_slow_consumers_cut", "Clients cut off for not reading."),
    "sessionsEnded": ("chat_sessions_ended", "Clients closed because their session ended."),
}

# RedisBroker.stats() key -> (metric, help): how a conversation's order was kept across
# processes (app/realtime/broker/redis.py).
_ORDER_COUNTERS: dict[str, tuple[str, str]] = {
    "orderGaps": ("chat_broker_order_gaps", "Messages whose predecessor had not gone out."),
    "orderFilled": ("chat_broker_order_filled", "Messages published early to fill such a gap."),
    "orderDuplicates": (
        "chat_broker_order_duplicates",
        "Publishes skipped: their message had gone out already.",
    ),
    "orderFillFailures": (
        "chat_broker_order_fill_failures",
        "Gaps the database could not fill: the message went out anyway, out of order.",
    ),
}


class _RealtimeCollector(Collector):
    def __init__(self, manager: ConnectionManager, broker: Broker, writer: StreamWriter) -> None:
        self._manager = manager
        self._broker = broker
        self._writer = writer

    def collect(self) -> Iterator[Metric]:
        figures = self._manager.diagnostics()
        clients = GaugeMetricFamily(
            "chat_connected_clients", "Connected clients by kind.", labels=["kind"]
        )
        for kind in ("stream", "tab"):
            clients.add_metric([kind], figures["clientsByKind"].get(kind, 0))
        yield clients
        yield GaugeMetricFamily(
            "chat_queued_events", "Events waiting in client queues.", value=figures["queuedEvents"]
        )
        yield GaugeMetricFamily(
            "chat_stalled_writes",
            "Streams whose last write waits for a peer that is not reading.",
            value=self._writer.stalled_writes(),
        )
        for key, (name, help_text) in _COUNTERS.items():
            yield CounterMetricFamily(name, help_text, value=figures[key])
        yield from _broker_metrics(self._broker.stats())
        # The writer's, which the tabs count into too (app/runtime.py gives both the one).
        yield _latency_histogram(self._writer.latency)


def _latency_histogram(latency: DeliveryLatency) -> Metric:
    histogram = HistogramMetricFamily(
        "chat_event_delivery_seconds",
        "Seconds from an event's publish to its hand-over to a client's transport "
        "(a stream's socket, a tab's websocket), by transport and event type.",
        labels=["transport", "type"],
    )
    for series in latency.series():
        histogram.add_metric([series.transport, series.type], series.cumulative, series.sum)
    return histogram


def _broker_metrics(stats: dict[str, Any]) -> Iterator[Metric]:
    info = GaugeMetricFamily("chat_broker_info", "The event broker in use.", labels=["broker"])
    info.add_metric([str(stats.get("broker", "unknown"))], 1)
    yield info
    if "outbox" in stats:
        yield GaugeMetricFamily(
            "chat_broker_outbox_events",
            "Events waiting for Redis to come back.",
            value=stats["outbox"],
        )
    for key, (name, help_text) in _ORDER_COUNTERS.items():
        if key in stats:
            yield CounterMetricFamily(name, help_text, value=stats[key])


class Metrics:
    def __init__(self, manager: ConnectionManager, broker: Broker, writer: StreamWriter) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._auth_failures = Counter(
            "chat_auth_failures",
            "Refused authentication attempts by reason.",
            ["reason"],
            registry=self.registry,
        )
        self._http_requests = Counter(
            "chat_http_requests",
            "HTTP requests by method, route template and status (a stream once, at opening).",
            ["method", "handler", "status"],
            registry=self.registry,
        )
        self._http_duration = Histogram(
            "chat_http_request_duration_seconds",
            "Time from a request's arrival to its response's start (a stream: its opening).",
            ["method", "handler"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.registry.register(_RealtimeCollector(manager, broker, writer))
        self._gc_pauses = GcPauses(self.registry)

    def auth_failure(self, reason: str) -> None:
        """reason: invalid_credentials, throttled, invalid_token, untrusted_origin, ..."""
        self._auth_failures.labels(reason).inc()

    def http_request(self, method: str, handler: str, status: int, seconds: float) -> None:
        """One request, counted when its response starts (app/api/http_metrics.py)."""
        self._http_requests.labels(method, handler, str(status)).inc()
        self._http_duration.labels(method, handler).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def close(self) -> None:
        """Stop measuring (the collector's callback would outlive this runtime)."""
        self._gc_pauses.close()


def sign_in_failure_reason(exc: DomainError) -> str:
    """The `reason` label of a refused sign-in."""
    if isinstance(exc, RateLimited):
        return "throttled"
    if isinstance(exc, SignInBusy):
        return "busy"
    if isinstance(exc, Forbidden):
        return "forbidden_tenant"
    return "invalid_credentials"
