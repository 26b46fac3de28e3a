"""docs/OPERATIONS.md's recipe, "did bob's stream get event X, and if not, why?", followed
step by step on the JSON log of a real backend (scripts/serve, and `reflex run`), and
nothing else.

Bob gets X live, misses Y while disconnected and gets it replayed on resuming, never had W
sent to his channels (it is carol's), and had Z filtered out by his stream's `events=`.
`follow_the_recipe` reads only the log lines; the test knows the truth from the streams.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.logs import parse_lines
from app.realtime.ids import EventId
from tests.backend import (
    LAUNCHERS,
    Backend,
    bearer,
    conversation_titled,
    notify,
    open_stream,
    running_backend,
)

GOT_LIVE = "got it live"
GOT_BY_REPLAY = "got it by replay"
NOT_HIS_CHANNELS = "not sent to his channels"
FILTERED = "filtered out by his stream's events="
NO_STREAM = "no stream of his was open"
STILL_OPEN = "a stream of his is still open: its disconnect line is not written yet"


def follow_the_recipe(log: list[dict[str, Any]], event_id: str, user: int) -> str:
    """The steps of docs/OPERATIONS.md ("Did bob's stream get event X?"), in their order."""
    wanted = EventId.parse(event_id)
    assert wanted is not None
    # Step 1: the event.publish line of X: its type, channels and tenant.
    publish = next(e for e in log if e["event"] == "event.publish" and e["eventId"] == event_id)
    # Step 2: his streams in that tenant (a connection is pid and client), and their channels.
    connects = {
        _connection(e): e
        for e in log
        if e["event"] == "stream.connect" and e["user"] == user and e["tenant"] == publish["tenant"]
    }
    if not connects:
        return NO_STREAM
    if not set(publish["channels"]) & set(next(iter(connects.values()))["channels"]):
        return NOT_HIS_CHANNELS
    lines = {event: _by_connection(log, event, connects) for event in _STREAM_EVENTS}
    # Step 3: a stream whose delivered range holds X got it (a connection has no gaps); by
    # replay when X is in the replayed range of its stream.resume.
    for connection, end in lines["stream.disconnect"].items():
        if _within(wanted, end["firstDelivered"], end["lastDelivered"]):
            resume = lines["stream.resume"].get(connection)
            if resume is not None and _within(
                wanted, resume["replayedFirst"], resume["replayedLast"]
            ):
                return GOT_BY_REPLAY
            return GOT_LIVE
    # Step 4: none got it. A stream open when X was published: its filter, or how it ended.
    for connection, connect in connects.items():
        ended = lines["stream.disconnect"].get(connection)
        if ended is None:
            return STILL_OPEN
        if connect["ts"] <= publish["ts"] <= ended["ts"]:
            if connect["types"] is not None and publish["type"] not in connect["types"]:
                return FILTERED
            return f"open but not delivered: {ended['reason']}"
    return NO_STREAM


_STREAM_EVENTS = ("stream.disconnect", "stream.resume")


def _connection(line: dict[str, Any]) -> tuple[int, str]:
    return line["pid"], line["client"]


def _by_connection(
    log: list[dict[str, Any]], event: str, connects: dict[tuple[int, str], Any]
) -> dict[tuple[int, str], dict[str, Any]]:
    return {_connection(e): e for e in log if e["event"] == event and _connection(e) in connects}


def _within(wanted: EventId, first: str | None, last: str | None) -> bool:
    """`first <= wanted <= last` as event ids compare: epoch, then sequence (not as text)."""
    low, high = EventId.parse(first), EventId.parse(last)
    return low is not None and high is not None and low <= wanted <= high


@pytest.fixture(scope="module", params=LAUNCHERS)
def backend(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Backend]:
    """Under both starts: each configures the app's logging in its lifespan."""
    env = {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    workdir = tmp_path_factory.mktemp(f"recipe-{request.param}")
    with running_backend(workdir, env, launcher=request.param, backend_only=True) as server:
        yield server


def _log(backend: Backend) -> list[dict[str, Any]]:
    return parse_lines(backend.log_path.read_text().splitlines())


def _wait_for_disconnects(backend: Backend, user: int, count: int, timeout: float = 10.0) -> None:
    """Until the server has logged `count` stream.disconnect lines of `user` (it notices a
    closed stream at its next write: a heartbeat, every second here)."""
    deadline = time.monotonic() + timeout
    while True:
        ends = [e for e in _log(backend) if e["event"] == "stream.disconnect" and e["user"] == user]
        if len(ends) >= count:
            return
        assert time.monotonic() < deadline, f"{len(ends)} of {count} disconnects logged"
        time.sleep(0.05)


async def _user_id(http: httpx.AsyncClient, token: str) -> int:
    return int((await http.get("/api/me", headers=bearer(token))).json()["id"])


async def test_the_recipe_answers_for_each_way_an_event_goes(backend: Backend) -> None:
    async with httpx.AsyncClient(base_url=backend.url, timeout=10) as http:
        alice, bob, carol = (backend.token(name) for name in ("alice", "bob", "carol"))
        bob_id, carol_id = await _user_id(http, bob), await _user_id(http, carol)
        team = conversation_titled(backend, "alice", "Acme team")
        # X reaches bob's open stream; W is carol's alone (bob's stream sees the next one).
        async with open_stream(http, bob) as stream:
            await notify(http, alice, bob_id, "X")
            x = await stream.next()
            await notify(http, alice, carol_id, "W")
            await notify(http, alice, bob_id, "after W")
            last_seen = await stream.next()
            assert json.loads(last_seen.data)["title"] == "after W"
        # Y is published while bob has no stream; his resume replays it.
        _wait_for_disconnects(backend, bob_id, 1)
        await notify(http, alice, bob_id, "Y")
        async with open_stream(http, bob, headers={"Last-Event-ID": last_seen.id}) as stream:
            y = await stream.next()
            assert json.loads(y.data)["title"] == "Y"
        # Z (a chat message) goes to a stream that keeps notifications only.
        _wait_for_disconnects(backend, bob_id, 2)
        async with open_stream(http, bob, params={"events": "notification:new"}) as stream:
            sent = await http.post(
                f"/api/conversations/{team}/messages", headers=bearer(alice), json={"content": "Z"}
            )
            assert sent.status_code == 201, sent.text
            await notify(http, alice, bob_id, "after Z")  # delivered after Z was dispatched
            assert json.loads((await stream.next()).data)["title"] == "after Z"
        _wait_for_disconnects(backend, bob_id, 3)

    log = _log(backend)
    publishes = [e for e in log if e["event"] == "event.publish"]
    w_id = _published_id(publishes, "notification:new", f"user:{carol_id}")
    z_id = _published_id(publishes, "chat:message", f"user:{bob_id}")
    assert follow_the_recipe(log, x.id, bob_id) == GOT_LIVE
    assert follow_the_recipe(log, y.id, bob_id) == GOT_BY_REPLAY
    assert follow_the_recipe(log, w_id, bob_id) == NOT_HIS_CHANNELS
    assert follow_the_recipe(log, z_id, bob_id) == FILTERED


def _published_id(publishes: list[dict[str, Any]], event_type: str, channel: str) -> str:
    """The one event of that type published to that channel in this test."""
    (found,) = [e for e in publishes if e["type"] == event_type and channel in e["channels"]]
    return str(found["eventId"])
