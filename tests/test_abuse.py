"""Load abuse against the real server: a stream-open loop, a typing flood, a message flood.

One private backend (`--backend-only`) serves the module with the product's default message
and typing limits and typing timings (the shared backend raises the limits so that other
tests never meet them). Each test floods as a different user, so their buckets never mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest

from app.settings import Settings
from tests.backend import TEST_ENV, Backend, Stream, open_stream, running_backend

DEFAULTS = Settings()
MAX_STREAMS = int(TEST_ENV["SSE_MAX_STREAMS_PER_USER"])
ABUSE_ENV = {
    "RATE_LIMIT_MESSAGES_PER_MINUTE": str(DEFAULTS.rate_limit_messages_per_minute),
    "RATE_LIMIT_MESSAGES_BURST": str(DEFAULTS.rate_limit_messages_burst),
    "RATE_LIMIT_TYPING_PER_MINUTE": str(DEFAULTS.rate_limit_typing_per_minute),
    "RATE_LIMIT_TYPING_BURST": str(DEFAULTS.rate_limit_typing_burst),
    "TYPING_THROTTLE_SECONDS": str(DEFAULTS.typing_throttle_seconds),
    "TYPING_EXPIRY_SECONDS": str(DEFAULTS.typing_expiry_seconds),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with running_backend(tmp_path_factory.mktemp("abuse"), ABUSE_ENV, backend_only=True) as backend:
        yield backend


@pytest.fixture
async def http(server: Backend) -> AsyncIterator[httpx.AsyncClient]:
    timeout = httpx.Timeout(10.0, read=30.0)
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=server.url, timeout=timeout, limits=limits) as client:
        yield client


@dataclass(frozen=True)
class Person:
    token: str
    id: int

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def people(server: Backend) -> dict[str, Person]:
    found = {}
    for name in ("alice", "bob", "carol"):
        token = server.token(name)
        me = httpx.get(
            f"{server.url}/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        found[name] = Person(token, me.json()["id"])
    return found


async def _direct_conversation(http: httpx.AsyncClient, me: Person, other: Person) -> int:
    response = await http.post(
        "/api/conversations", headers=me.auth, json={"participantIds": [other.id]}
    )
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


async def _post_at_once(
    http: httpx.AsyncClient, path: str, sender: Person, bodies: list[dict[str, object]]
) -> list[httpx.Response]:
    """One POST of `path` per body, all in flight together, as a flooding client sends."""
    return await asyncio.gather(*(http.post(path, headers=sender.auth, json=b) for b in bodies))


def _rate_limited(response: httpx.Response, code: str = "rate_limited") -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert response.headers["retry-after"].isdigit()
    assert int(response.headers["retry-after"]) >= 1


async def _events_until(stream: Stream, sentinel_type: str) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of every event before the first of `sentinel_type`, which ends the
    wait: a marker sent last proves nothing else is still on its way."""
    events: list[tuple[str, dict[str, Any]]] = []
    while True:
        event = await stream.next(10)
        if event.event == sentinel_type:
            return events
        events.append((event.event, json.loads(event.data)))


# -- streams opened in a loop ------------------------------------------------------------


@contextlib.asynccontextmanager
async def _open_streams(
    http: httpx.AsyncClient, token: str, count: int
) -> AsyncIterator[list[Stream]]:
    """`count` streams of one user, open at the same time."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_stream(http, token)) for _ in range(count)]


def _server_processes(server: Backend) -> list[psutil.Process]:
    """The `reflex` launcher and everything it started (granian and its workers)."""
    assert server.process is not None
    launcher = psutil.Process(server.process.pid)
    return [launcher, *launcher.children(recursive=True)]


def _footprint(server: Backend) -> tuple[int, int]:
    """Open file descriptors and resident memory (bytes) of the whole server."""
    processes = _server_processes(server)
    return sum(p.num_fds() for p in processes), sum(p.memory_info().rss for p in processes)


async def test_stream_open_loop_gets_429_and_costs_no_descriptors_or_memory(
    server: Backend, http: httpx.AsyncClient, people: dict[str, Person]
) -> None:
    carol = people["carol"]
    attempts = 240
    # Each attempt on a new connection, as an abusive script would: the server must not
    # keep any of them.
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=fresh) as abuser:
        async with open_stream(abuser, carol.token):  # warm up whatever is lazily built
            pass
        fds_before, rss_before = _footprint(server)
        async with (
            open_stream(abuser, carol.token) as first,
            open_stream(abuser, carol.token),
            open_stream(abuser, carol.token),
        ):
            assert first.response.status_code == 200
            refused: list[httpx.Response] = []
            for _ in range(attempts // 24):  # 24 at once, ten times over
                refused += await asyncio.gather(
                    *(abuser.get("/api/sse", headers=carol.auth) for _ in range(24))
                )
            fds_during, rss_during = _footprint(server)
            diagnostics = await http.get("/api/sse/diagnostics", headers=people["alice"].auth)
        # All three closed: the slots are free again.
        async with _open_streams(abuser, carol.token, MAX_STREAMS) as again:
            assert [s.response.status_code for s in again] == [200] * MAX_STREAMS
    assert len(refused) == attempts
    for response in refused:
        _rate_limited(response, "too_many_streams")
    assert diagnostics.json()["clientsByUser"][str(carol.id)] == MAX_STREAMS
    # Three open streams and their connections, plus slack for the server's own churn.
    assert fds_during <= fds_before + 2 * MAX_STREAMS + 10
    assert rss_during - rss_before < 30 * 2**20
    fds_after, _ = _footprint(server)
    assert fds_after <= fds_before + 10


async def test_concurrent_stream_opens_admit_exactly_the_limit(
    server: Backend, people: dict[str, Person]
) -> None:
    carol = people["carol"]
    attempts = 20
    results: list[int] = []
    all_answered, release = asyncio.Event(), asyncio.Event()
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=fresh) as abuser:

        async def try_open() -> None:
            async with abuser.stream("GET", "/api/sse", headers=carol.auth) as response:
                results.append(response.status_code)
                if len(results) == attempts:
                    all_answered.set()
                await release.wait()  # an admitted stream stays open while the others try

        tasks = [asyncio.create_task(try_open()) for _ in range(attempts)]
        try:
            await asyncio.wait_for(all_answered.wait(), 10)
        finally:
            release.set()
            await asyncio.gather(*tasks)
    assert sorted(results) == [200] * MAX_STREAMS + [429] * (attempts - MAX_STREAMS)


# -- a typing flood ----------------------------------------------------------------------


async def test_typing_flood_is_throttled_to_one_announcement_and_then_refused(
    http: httpx.AsyncClient, people: dict[str, Person]
) -> None:
    alice, bob = people["alice"], people["bob"]
    conversation = await _direct_conversation(http, bob, alice)
    typing = f"/api/conversations/{conversation}/typing"
    flood = 30
    params = {"events": "chat:typing,chat:message"}
    async with open_stream(http, alice.token, params=params) as watcher:
        answers = await _post_at_once(http, typing, bob, [{"isTyping": True}] * flood)
        # A message ends the typing: its stop follows the message, and marks the end.
        sent = await http.post(
            f"/api/conversations/{conversation}/messages", headers=bob.auth, json={"content": "hi"}
        )
        assert sent.status_code == 201, sent.text
        before_message = await _events_until(watcher, "chat:message")
        stop = await watcher.next(10)
    accepted = [a for a in answers if a.status_code == 204]
    refused = [a for a in answers if a.status_code != 204]
    # The bucket's burst, plus what it refilled while the flood was in flight.
    assert DEFAULTS.rate_limit_typing_burst <= len(accepted) < DEFAULTS.rate_limit_typing_burst + 3
    for response in refused:
        _rate_limited(response)
    # However many were accepted within the throttle window, alice heard of it once.
    assert [(kind, data["userId"], data["isTyping"]) for kind, data in before_message] == [
        ("chat:typing", bob.id, True)
    ]
    assert stop.event == "chat:typing"
    assert json.loads(stop.data)["isTyping"] is False


# -- a message flood ---------------------------------------------------------------------


async def test_message_flood_gets_429_with_retry_after_and_stores_and_streams_only_the_accepted(
    http: httpx.AsyncClient, people: dict[str, Person]
) -> None:
    alice, bob = people["alice"], people["bob"]
    conversation = await _direct_conversation(http, alice, bob)
    messages = f"/api/conversations/{conversation}/messages"
    flood = 40
    params = {"events": "chat:message,notification:new"}
    async with open_stream(http, bob.token, params=params) as consumer:
        bodies: list[dict[str, object]] = [{"content": f"flood {n}"} for n in range(flood)]
        answers = await _post_at_once(http, messages, alice, bodies)
        # Notifications are not rate limited: one sent last marks the end of the stream.
        marker = await http.post(
            "/api/notifications", headers=alice.auth, json={"userId": bob.id, "title": "end"}
        )
        assert marker.status_code == 201, marker.text
        streamed = await _events_until(consumer, "notification:new")
    accepted = {a.json()["id"]: a.json()["content"] for a in answers if a.status_code == 201}
    refused = [n for n, a in enumerate(answers) if a.status_code != 201]
    burst = DEFAULTS.rate_limit_messages_burst
    assert burst <= len(accepted) < burst + 3
    for n in refused:
        _rate_limited(answers[n])
    # Every accepted message streamed exactly once, and nothing else.
    streamed_ids = Counter(data["message"]["id"] for _, data in streamed)
    assert streamed_ids == Counter(accepted.keys())
    # Stored: the accepted ones, and none of the refused.
    history = await http.get(messages, headers=bob.auth, params={"limit": "100"})
    stored = {m["id"]: m["content"] for m in history.json()["items"]}
    assert accepted.items() <= stored.items()
    assert not {f"flood {n}" for n in refused} & set(stored.values())
