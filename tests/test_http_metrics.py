"""Per-route HTTP metrics on GET /metrics, on both starts: counted by method, route template
and status; an event stream once per connection, however many events it carries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.backend import Backend, open_stream, running_backend

MESSAGES = "/api/conversations/{conversation_id}/messages"
Key = tuple[str, tuple[tuple[str, str], ...]]  # a sample's name and sorted labels


# The module's own `backend` (conftest's `http` talks to it), once per start.
@pytest.fixture(scope="module", params=["serve", "reflex"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    workdir: Path = tmp_path_factory.mktemp(f"http-metrics-{request.param}")
    with running_backend(workdir, launcher=request.param, backend_only=True) as backend:
        yield backend


async def samples(http: httpx.AsyncClient) -> dict[Key, float]:
    """Every sample of the chat_http_* families, by name and labels."""
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    found: dict[Key, float] = {}
    for family in text_string_to_metric_families(response.text):
        if family.name.startswith("chat_http_"):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def requests(method: str, handler: str, status: int) -> Key:
    labels = {"method": method, "handler": handler, "status": str(status)}
    return ("chat_http_requests_total", tuple(sorted(labels.items())))


def timed(method: str, handler: str) -> Key:
    labels = {"method": method, "handler": handler}
    return ("chat_http_request_duration_seconds_count", tuple(sorted(labels.items())))


def grew(before: dict[Key, float], after: dict[Key, float], key: Key) -> float:
    return float(after.get(key, 0.0) - before.get(key, 0.0))


async def test_requests_are_counted_by_route_template_and_status(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    token = backend.token("alice")
    auth = {"Authorization": f"Bearer {token}"}
    listed = (await http.get("/api/conversations", headers=auth)).json()["items"]
    conversation = listed[0]["id"]
    before = await samples(http)
    for _ in range(3):
        ok = await http.get(f"/api/conversations/{conversation}/messages", headers=auth)
        assert ok.status_code == 200
    assert (await http.get("/api/conversations/999999/messages", headers=auth)).status_code == 404
    assert (await http.get(f"/api/conversations/{conversation}/messages")).status_code == 401
    for path in ("/api/no-such-thing", "/api/x/1/y", "/api/x/2/y"):
        assert (await http.get(path, headers=auth)).status_code == 404
    after = await samples(http)
    assert grew(before, after, requests("GET", MESSAGES, 200)) == 3
    assert grew(before, after, requests("GET", MESSAGES, 404)) == 1
    assert grew(before, after, requests("GET", MESSAGES, 401)) == 1
    assert grew(before, after, timed("GET", MESSAGES)) == 5
    assert grew(before, after, requests("GET", "unmatched", 404)) == 3
    # Labels carry templates, never the raw paths with their ids.
    assert not any(str(conversation) in dict(labels).get("handler", "") for _, labels in after)
    assert not any("no-such-thing" in dict(labels).get("handler", "") for _, labels in after)


async def test_a_stream_is_counted_once_per_connection_however_many_events_it_carries(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    alice, bob = backend.token("alice"), backend.token("bob")
    auth = {"Authorization": f"Bearer {alice}"}
    listed = (await http.get("/api/conversations", headers=auth)).json()["items"]
    direct = next(c["id"] for c in listed if c["kind"] == "direct")
    before = await samples(http)
    async with open_stream(http, bob, params={"events": "chat:message"}) as stream:
        for n in range(5):
            sent = await http.post(
                f"/api/conversations/{direct}/messages", json={"content": f"n{n}"}, headers=auth
            )
            assert sent.status_code == 201
            event = await stream.next(10)
            assert json.loads(event.data)["message"]["content"] == f"n{n}"
        during = await samples(http)
    after = await samples(http)
    for figures in (during, after):
        assert grew(before, figures, requests("GET", "/api/sse", 200)) == 1
        assert grew(before, figures, timed("GET", "/api/sse")) == 1
        assert grew(before, figures, requests("POST", MESSAGES, 201)) == 5


async def test_the_broker_s_order_keeping_is_counted_with_redis_only(
    http: httpx.AsyncClient,
) -> None:
    text = (await http.get("/metrics")).text
    # These servers run on the in-memory broker, which has no cross-process order to keep.
    assert "chat_broker_order_gaps_total" not in text
    assert 'chat_broker_info{broker="memory"} 1.0' in text
