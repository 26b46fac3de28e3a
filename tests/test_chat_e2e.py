"""Chat over REST and `/api/sse` against the real backend process: messages, unread counts,
presence, typing, ordering under concurrent sends, edits and deletes, and bad input.

The backend is shared with the rest of the suite, so every test reads the current state over
REST first and asserts changes relative to it; contents carry a per-test tag so they never
collide with anyone else's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from httpx_sse import ServerSentEvent

from tests.backend import TEST_ENV, Backend, Stream, open_stream
from tests.backend import bearer as _auth
from tests.backend import cached_token as _token
from tests.wire import payload

# Against the shared server on SQLite and on PostgreSQL (tests/databases.py).
pytestmark = pytest.mark.databases("sqlite", "postgres")

T = TypeVar("T")

MESSAGE_KEYS = {
    "id",
    "conversationId",
    "content",
    "senderId",
    "senderName",
    "createdAt",
    "editedAt",
    "deleted",
}
PRESENCE_KEYS = {"userId", "userName", "status", "lastSeen"}
MISSING_ID = 999_999_999
GRACE_SECONDS = float(TEST_ENV["PRESENCE_GRACE_SECONDS"])
TYPING_EXPIRY_SECONDS = float(TEST_ENV["TYPING_EXPIRY_SECONDS"])
TYPING_THROTTLE_SECONDS = float(TEST_ENV["TYPING_THROTTLE_SECONDS"])
MESSAGE_MAX_CHARS = 4000  # Settings.message_max_chars (not overridden in TEST_ENV)


# -- helpers -----------------------------------------------------------------------------


def _tag() -> str:
    return uuid.uuid4().hex[:10]


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json() if response.content else None


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    return error


def _data(event: ServerSentEvent, event_type: str) -> dict[str, Any]:
    assert event.event == event_type, f"expected {event_type}, got {event.event}: {event.data}"
    assert event.id, "a chat event carries an id"
    return payload(event.data)  # and its sentAt, a recent moment in milliseconds


async def _me(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    return _ok(await http.get("/api/me", headers=_auth(token)))


async def _conversations(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    return _ok(await http.get("/api/conversations", headers=_auth(token)))


async def _direct_id(http: httpx.AsyncClient, token: str, a: str, b: str) -> int:
    listing = await _conversations(http, token)
    matches = [
        c["id"]
        for c in listing["items"]
        if c["kind"] == "direct" and {p["username"] for p in c["participants"]} == {a, b}
    ]
    assert len(matches) == 1, listing
    return matches[0]


async def _team_id(http: httpx.AsyncClient, token: str) -> int:
    listing = await _conversations(http, token)
    matches = [
        c["id"] for c in listing["items"] if c["kind"] == "group" and c["title"] == "Acme team"
    ]
    assert len(matches) == 1, listing
    return matches[0]


async def _send(
    http: httpx.AsyncClient, token: str, conversation_id: int, content: str
) -> dict[str, Any]:
    response = await http.post(
        f"/api/conversations/{conversation_id}/messages",
        headers=_auth(token),
        json={"content": content},
    )
    return _ok(response, 201)


async def _read(http: httpx.AsyncClient, token: str, conversation_id: int) -> dict[str, Any]:
    return _ok(await http.post(f"/api/conversations/{conversation_id}/read", headers=_auth(token)))


async def _typing(
    http: httpx.AsyncClient, token: str, conversation_id: int, is_typing: bool
) -> None:
    response = await http.post(
        f"/api/conversations/{conversation_id}/typing",
        headers=_auth(token),
        json={"isTyping": is_typing},
    )
    assert response.status_code == 204, response.text


async def _history_page(
    http: httpx.AsyncClient, token: str, conversation_id: int, **params: int
) -> dict[str, Any]:
    response = await http.get(
        f"/api/conversations/{conversation_id}/messages",
        headers=_auth(token),
        params={k: str(v) for k, v in params.items()},
    )
    return _ok(response)


async def _history_back_to(
    http: httpx.AsyncClient, token: str, conversation_id: int, oldest_id: int
) -> list[dict[str, Any]]:
    """Newest first, paged with before/limit=100, until the page holding `oldest_id`."""
    items: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        params = {"limit": 100} if before is None else {"limit": 100, "before": before}
        page = await _history_page(http, token, conversation_id, **params)
        ids = [m["id"] for m in page["items"]]
        assert ids == sorted(ids, reverse=True), "a page is newest first"
        assert len(ids) <= 100
        if before is not None:
            assert all(i < before for i in ids), "`before` pages strictly older"
        items.extend(page["items"])
        if not page["hasMore"] or ids[-1] <= oldest_id:
            return items
        before = ids[-1]


async def _notify(http: httpx.AsyncClient, admin_token: str, user_id: int, title: str) -> None:
    response = await http.post(
        "/api/notifications", headers=_auth(admin_token), json={"userId": user_id, "title": title}
    )
    _ok(response, 201)


async def _create(
    http: httpx.AsyncClient, token: str, participant_ids: list[int], title: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"participantIds": participant_ids}
    if title is not None:
        body["title"] = title
    return await http.post("/api/conversations", headers=_auth(token), json=body)


async def _choose(http: httpx.AsyncClient, token: str, status: str) -> dict[str, Any]:
    return _ok(await http.put("/api/presence", headers=_auth(token), json={"status": status}))


async def _presence(http: httpx.AsyncClient, token: str) -> dict[int, dict[str, Any]]:
    items = _ok(await http.get("/api/presence", headers=_auth(token)))["items"]
    return {item["userId"]: item for item in items}


async def _eventually(
    check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 10.0
) -> T:
    """Poll a REST condition until it holds, with a deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _next_presence_of(stream: Stream, user_id: int, timeout: float = 10.0) -> dict[str, Any]:
    """The next presence update about `user_id`; other people's comings and goings skipped."""
    deadline = time.monotonic() + timeout
    while True:
        event = await stream.next(max(0.01, deadline - time.monotonic()), presence=True)
        data = _data(event, "presence:update")
        if data["userId"] == user_id:
            return data


# -- 1. messages and unread counts reach exactly the participants ------------------------


async def test_message_reaches_participants_with_unread_counts_and_nobody_else(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    carol, dave = _token(backend, "carol"), _token(backend, "dave")
    alice_me, bob_me, dave_me = await _me(http, alice), await _me(http, bob), await _me(http, dave)
    direct = await _direct_id(http, alice, "alice", "bob")
    team = await _team_id(http, alice)
    # Start from a known point: both have read the 1:1.
    await _read(http, alice, direct)
    await _read(http, bob, direct)
    tag = _tag()

    async with (
        open_stream(http, alice) as alice_stream,
        open_stream(http, bob) as bob_tab1,
        open_stream(http, bob) as bob_tab2,
        open_stream(http, carol) as carol_stream,
        open_stream(http, dave) as dave_stream,
    ):
        sent = await _send(http, alice, direct, f"hello bob {tag}")

        unreads: list[dict[str, Any]] = []
        for tab in (bob_tab1, bob_tab2):
            # In this order: the message, then the count it raised.
            message = _data(await tab.next(), "chat:message")
            unreads.append(_data(await tab.next(), "chat:unread-count"))
            assert message == {"conversationId": direct, "message": sent}
        unread = unreads[0]
        assert unreads[1] == unread
        assert set(unread) == {"conversationId", "count", "total"}
        assert unread["conversationId"] == direct and unread["count"] == 1
        # The sender's own stream (her other tabs) gets the message too.
        assert _data(await alice_stream.next(), "chat:message") == {
            "conversationId": direct,
            "message": sent,
        }
        bob_listing = await _conversations(http, bob)
        assert unread["total"] == bob_listing["totalUnread"]
        assert next(c for c in bob_listing["items"] if c["id"] == direct)["unreadCount"] == 1

        answer = await _read(http, bob, direct)
        for tab in (bob_tab1, bob_tab2):
            read = _data(await tab.next(), "chat:unread-count")
            assert read == answer
        assert answer["conversationId"] == direct and answer["count"] == 0
        assert answer["total"] == (await _conversations(http, bob))["totalUnread"]

        # Sentinels: the first thing carol (Acme, not in the 1:1) and dave (Globex) see is
        # something sent to them afterwards, so neither got the 1:1's message or counts.
        team_sentinel = await _send(http, alice, team, f"team sentinel {tag}")
        carol_first = _data(await carol_stream.next(), "chat:message")
        await _notify(http, dave, dave_me["id"], f"dave sentinel {tag}")
        dave_first = _data(await dave_stream.next(), "notification:new")
    assert carol_first == {"conversationId": team, "message": team_sentinel}
    assert dave_first["title"] == f"dave sentinel {tag}"

    assert set(sent) == MESSAGE_KEYS
    assert sent["conversationId"] == direct
    assert sent["content"] == f"hello bob {tag}"
    assert (sent["senderId"], sent["senderName"]) == (alice_me["id"], alice_me["displayName"])
    assert sent["createdAt"].endswith("Z")
    direct_item = next(c for c in bob_listing["items"] if c["id"] == direct)
    assert bob_me["id"] in {p["id"] for p in direct_item["participants"]}
    newest = (await _history_page(http, bob, direct, limit=1))["items"][0]
    assert newest == sent


async def test_other_tenant_gets_the_same_404_for_a_foreign_conversation_as_for_none(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, dave = _token(backend, "alice"), _token(backend, "dave")
    direct = await _direct_id(http, alice, "alice", "bob")
    newest_before = (await _history_page(http, alice, direct, limit=1))["items"]

    async def attempts(conversation_id: int) -> list[httpx.Response]:
        base = f"/api/conversations/{conversation_id}"
        headers = _auth(dave)
        return [
            await http.get(base, headers=headers),
            await http.get(f"{base}/messages", headers=headers),
            await http.post(f"{base}/messages", headers=headers, json={"content": "from dave"}),
            await http.post(f"{base}/read", headers=headers),
            await http.post(f"{base}/typing", headers=headers, json={"isTyping": True}),
        ]

    foreign, missing = await attempts(direct), await attempts(MISSING_ID)
    for theirs, nobodys in zip(foreign, missing, strict=True):
        assert _error(theirs, 404) == _error(nobodys, 404)
        assert theirs.json() == nobodys.json()
        assert theirs.json()["error"]["code"] == "not_found"
    # And nothing was stored by the refused send.
    assert (await _history_page(http, alice, direct, limit=1))["items"] == newest_before


# -- 2. presence -----------------------------------------------------------------------


async def test_presence_one_update_each_way_across_two_streams_and_the_grace_period(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    alice_id, bob_id = (await _me(http, alice))["id"], (await _me(http, bob))["id"]

    async def bob_offline() -> dict[str, Any] | None:
        entry = (await _presence(http, alice))[bob_id]
        return entry if entry["status"] == "offline" else None

    await _eventually(bob_offline, "bob to be offline before the test")

    async def bob_stream_count(expected: int) -> bool | None:
        response = await http.get("/api/sse/diagnostics", headers=_auth(alice))
        count = _ok(response)["clientsByUser"].get(str(bob_id), 0)
        return True if count == expected else None

    bob_events: list[dict[str, Any]] = []
    async with open_stream(http, alice, params={"events": "presence:update"}) as watcher:
        alice_entry = (await _presence(http, alice))[alice_id]
        assert alice_entry["status"] == "online"
        async with open_stream(http, bob):
            async with open_stream(http, bob):
                # An "offline" for bob's clients of an earlier test may still be on its way
                # (the status changes at once, the announcement follows its last-seen write):
                # it is not this test's.
                first = await _next_presence_of(watcher, bob_id)
                while first["status"] == "offline":
                    first = await _next_presence_of(watcher, bob_id)
                bob_events.append(first)
                await _eventually(lambda: bob_stream_count(2), "bob's two streams")
            # One of two closed: the server has noticed, and well past the grace period
            # (three heartbeats on alice's stream) no update about bob has come.
            await _eventually(lambda: bob_stream_count(1), "bob's closed stream to be gone")
            pings = 0
            while pings < 3:
                event = await watcher.next(5, pings=True, presence=True)
                if event.event == "ping":
                    pings += 1
                elif _data(event, "presence:update")["userId"] == bob_id:
                    bob_events.append(payload(event.data))
            assert (await _presence(http, alice))[bob_id]["status"] == "online"
        # Both closed: after the grace period, one offline update.
        closed_at = time.monotonic()
        while not bob_events or bob_events[-1]["status"] != "offline":
            bob_events.append(await _next_presence_of(watcher, bob_id, timeout=GRACE_SECONDS + 5))
        offline_after = time.monotonic() - closed_at
        snapshot = await _presence(http, alice)

    assert [e["status"] for e in bob_events] == ["online", "offline"]
    for update in bob_events:  # not `event`: above, that name is a ServerSentEvent
        assert set(update) == PRESENCE_KEYS
        assert (update["userId"], update["userName"]) == (bob_id, "Bob")
    offline = bob_events[-1]
    assert offline["lastSeen"] and offline["lastSeen"].endswith("Z")
    assert offline_after >= GRACE_SECONDS * 0.9, "offline came before the grace period ran out"
    assert snapshot[bob_id]["status"] == "offline"
    assert snapshot[bob_id]["lastSeen"] == offline["lastSeen"]
    assert set(snapshot[bob_id]) == PRESENCE_KEYS


async def test_choosing_away_and_back_online_is_seen_by_the_tenant(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    bob_id = (await _me(http, bob))["id"]
    async with (
        open_stream(http, alice, params={"events": "presence:update"}) as watcher,
        open_stream(http, bob),
    ):

        async def bob_online() -> bool | None:
            status = (await _presence(http, alice))[bob_id]["status"]
            return True if status == "online" else None

        await _eventually(bob_online, "bob online once his stream is open")
        chosen = await _choose(http, bob, "away")
        # Bob may have just come online (one update), then the away.
        seen = [await _next_presence_of(watcher, bob_id)]
        while seen[-1]["status"] != "away":
            seen.append(await _next_presence_of(watcher, bob_id))
        away_listed = (await _presence(http, alice))[bob_id]["status"]
        back = await _choose(http, bob, "online")
        back_event = await _next_presence_of(watcher, bob_id)
        online_listed = (await _presence(http, alice))[bob_id]["status"]
    assert chosen == {"userId": bob_id, "status": "away"}
    assert [e["status"] for e in seen] in (["away"], ["online", "away"])
    assert away_listed == "away"
    assert back == {"userId": bob_id, "status": "online"}
    assert back_event["status"] == "online"
    assert online_listed == "online"


# -- 3. typing ---------------------------------------------------------------------------


async def test_typing_reaches_the_other_participant_only_and_stops_by_itself(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    bob_id = (await _me(http, bob))["id"]
    direct = await _direct_id(http, alice, "alice", "bob")
    await _typing(http, bob, direct, False)  # no typing left over from earlier tests
    tag = _tag()
    async with open_stream(http, alice) as alice_stream, open_stream(http, bob) as bob_stream:
        started = time.monotonic()
        await _typing(http, bob, direct, True)
        start = _data(await alice_stream.next(), "chat:typing")
        stop = _data(await alice_stream.next(timeout=TYPING_EXPIRY_SECONDS + 5), "chat:typing")
        stopped_after = time.monotonic() - started
        # Bob's own stream got neither: the first thing it carries is this notification.
        await _notify(http, alice, bob_id, f"bob sentinel {tag}")
        bob_first = _data(await bob_stream.next(), "notification:new")
    assert start == {
        "conversationId": direct,
        "userId": bob_id,
        "userName": "Bob",
        "isTyping": True,
    }
    assert stop == {**start, "isTyping": False}
    # The server's own expiry ended it, not something immediate.
    assert stopped_after >= TYPING_EXPIRY_SECONDS * 0.9
    assert bob_first["title"] == f"bob sentinel {tag}"


async def test_repeated_typing_within_the_throttle_is_announced_once(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    direct = await _direct_id(http, alice, "alice", "bob")
    await _typing(http, bob, direct, False)
    async with open_stream(http, alice, params={"events": "chat:typing"}) as alice_stream:
        started = time.monotonic()
        await _typing(http, bob, direct, True)
        await _typing(http, bob, direct, True)
        await _typing(http, bob, direct, True)
        repeats_took = time.monotonic() - started
        first = _data(await alice_stream.next(), "chat:typing")
        following = _data(await alice_stream.next(timeout=TYPING_EXPIRY_SECONDS + 5), "chat:typing")
    assert repeats_took < TYPING_THROTTLE_SECONDS, "precondition: the repeats fit in the throttle"
    assert first["isTyping"] is True
    assert following["isTyping"] is False, "a repeat within the throttle was announced again"


async def test_a_message_sent_while_typing_is_followed_by_a_stop(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    bob_id = (await _me(http, bob))["id"]
    direct = await _direct_id(http, alice, "alice", "bob")
    await _typing(http, bob, direct, False)
    tag = _tag()
    params = {"events": "chat:message,chat:typing"}
    async with open_stream(http, alice, params=params) as alice_stream:
        started = time.monotonic()
        await _typing(http, bob, direct, True)
        start = _data(await alice_stream.next(), "chat:typing")
        sent = await _send(http, bob, direct, f"done typing {tag}")
        message = _data(await alice_stream.next(), "chat:message")
        stop = _data(await alice_stream.next(), "chat:typing")
        stopped_after = time.monotonic() - started
    assert start["isTyping"] is True and start["userId"] == bob_id
    assert message == {"conversationId": direct, "message": sent}
    assert stop == {
        "conversationId": direct,
        "userId": bob_id,
        "userName": "Bob",
        "isTyping": False,
    }
    # Sooner than the expiry could have produced it: the message ended the typing.
    assert stopped_after < TYPING_EXPIRY_SECONDS


# -- 4. concurrency ----------------------------------------------------------------------


async def test_200_concurrent_sends_are_stored_once_and_streamed_once_in_history_order(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    tokens = {name: _token(backend, name) for name in ("alice", "bob", "carol")}
    team = await _team_id(http, tokens["alice"])
    tag = _tag()
    contents = [f"load {tag} {i:03d}" for i in range(200)]
    senders = [tokens[("alice", "bob", "carol")[i % 3]] for i in range(200)]
    params = {"events": "chat:message"}

    async def post(token: str, content: str) -> httpx.Response:
        return await http.post(
            f"/api/conversations/{team}/messages", headers=_auth(token), json={"content": content}
        )

    async def collect(stream: Stream, sentinel: str) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        while True:
            data = _data(await stream.next(timeout=15), "chat:message")
            if data["conversationId"] != team:
                continue
            if data["message"]["content"] == sentinel:
                return received
            received.append(data["message"])

    async with (
        open_stream(http, tokens["alice"], params=params) as alice_stream,
        open_stream(http, tokens["bob"], params=params) as bob_stream,
        open_stream(http, tokens["carol"], params=params) as carol_stream,
    ):
        responses = await asyncio.gather(
            *(post(token, content) for token, content in zip(senders, contents, strict=True))
        )
        assert [r.status_code for r in responses] == [201] * 200, [
            r.text for r in responses if r.status_code != 201
        ][:3]
        sentinel = f"load {tag} done"
        await _send(http, tokens["alice"], team, sentinel)
        streamed = await asyncio.gather(
            *(collect(s, sentinel) for s in (alice_stream, bob_stream, carol_stream))
        )

    sent = [r.json() for r in responses]
    assert [m["content"] for m in sent] == contents
    history = await _history_back_to(http, tokens["bob"], team, min(m["id"] for m in sent))
    wanted = set(contents)
    ours = [m for m in history if m["content"] in wanted]
    counts = Counter(m["content"] for m in ours)
    assert set(counts) == set(contents)
    assert all(n == 1 for n in counts.values()), [c for c, n in counts.items() if n != 1]
    oldest_first = list(reversed(ours))
    assert sorted(oldest_first, key=lambda m: m["id"]) == oldest_first
    assert {m["id"]: m for m in sent} == {m["id"]: m for m in ours}
    for name, messages in zip(("alice", "bob", "carol"), streamed, strict=True):
        assert len(messages) == 200, f"{name} got {len(messages)} messages"
        assert messages == oldest_first, f"{name}'s stream differs from the history order"


# -- 5. conversations ---------------------------------------------------------------------


async def test_creating_the_existing_one_to_one_returns_it_with_200(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    alice_id, bob_id = (await _me(http, alice))["id"], (await _me(http, bob))["id"]
    direct = await _direct_id(http, alice, "alice", "bob")
    ids_before = {c["id"] for c in (await _conversations(http, alice))["items"]}
    from_alice = await _create(http, alice, [bob_id])
    with_self = await _create(http, alice, [alice_id, bob_id])
    from_bob = await _create(http, bob, [alice_id])
    for response in (from_alice, with_self, from_bob):
        body = _ok(response, 200)
        assert body["id"] == direct
        assert body["kind"] == "direct" and body["title"] is None
        assert [p["id"] for p in body["participants"]] == sorted([alice_id, bob_id])
    assert {c["id"] for c in (await _conversations(http, alice))["items"]} == ids_before


async def test_creating_a_titled_group_returns_201_with_all_participants(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob, carol = _token(backend, "alice"), _token(backend, "bob"), _token(backend, "carol")
    people = [await _me(http, t) for t in (alice, bob, carol)]
    title = f"Launch {_tag()}"
    response = await http.post(
        "/api/conversations",
        headers=_auth(alice),
        json={"participantIds": [people[1]["id"], people[2]["id"]], "title": f"  {title} "},
    )
    created = _ok(response, 201)
    assert set(created) == {
        "id",
        "kind",
        "title",
        "participants",
        "lastMessage",
        "unreadCount",
        "createdAt",
    }
    assert created["kind"] == "group"
    assert created["title"] == title
    assert created["participants"] == [
        {"id": p["id"], "username": p["username"], "displayName": p["displayName"]}
        for p in sorted(people, key=lambda p: p["id"])
    ]
    assert created["lastMessage"] is None and created["unreadCount"] == 0
    # Every participant can open it, and sees the same conversation.
    for token in (bob, carol):
        seen = _ok(await http.get(f"/api/conversations/{created['id']}", headers=_auth(token)))
        assert seen == created


async def test_a_participant_from_another_tenant_is_a_404(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob, dave = _token(backend, "alice"), _token(backend, "bob"), _token(backend, "dave")
    bob_id, dave_id = (await _me(http, bob))["id"], (await _me(http, dave))["id"]
    ids_before = {c["id"] for c in (await _conversations(http, alice))["items"]}
    for body in (
        {"participantIds": [dave_id]},
        {"participantIds": [bob_id, dave_id], "title": "mixed"},
        {"participantIds": [MISSING_ID]},
    ):
        response = await http.post("/api/conversations", headers=_auth(alice), json=body)
        assert _error(response, 404)["code"] == "not_found"
    assert {c["id"] for c in (await _conversations(http, alice))["items"]} == ids_before


async def test_listing_shows_last_message_and_unread_count_consistent_with_history(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob, carol = _token(backend, "alice"), _token(backend, "bob"), _token(backend, "carol")
    bob_id = (await _me(http, bob))["id"]
    team = await _team_id(http, bob)
    direct = await _direct_id(http, bob, "alice", "bob")
    await _read(http, bob, team)
    await _read(http, bob, direct)
    read_up_to = (await _history_page(http, bob, team, limit=1))["items"][0]["id"]
    tag = _tag()

    async def unread_in_history(after: int) -> int:
        history = (await _history_page(http, bob, team, limit=100))["items"]
        assert history[-1]["id"] <= after, "the page reaches back to the read point"
        return sum(1 for m in history if m["id"] > after and m["senderId"] != bob_id)

    async def team_item() -> dict[str, Any]:
        return next(c for c in (await _conversations(http, bob))["items"] if c["id"] == team)

    first = await _send(http, alice, team, f"one {tag}")
    listed = await team_item()
    assert listed["lastMessage"] == first
    assert listed["unreadCount"] == await unread_in_history(read_up_to) == 1

    mine = await _send(http, bob, team, f"mine {tag}")  # sending marks it read for bob
    listed = await team_item()
    assert listed["lastMessage"] == mine
    assert listed["unreadCount"] == await unread_in_history(mine["id"]) == 0

    await _send(http, alice, team, f"two {tag}")
    last = await _send(http, carol, team, f"three {tag}")
    listing = await _conversations(http, bob)
    items = {c["id"]: c for c in listing["items"]}
    assert items[team]["lastMessage"] == last
    assert items[team]["unreadCount"] == await unread_in_history(mine["id"]) == 2
    assert listing["items"][0]["id"] == team, "latest activity first"
    assert items[direct]["unreadCount"] == 0
    for conversation in listing["items"]:
        newest = (await _history_page(http, bob, conversation["id"], limit=1))["items"]
        assert conversation["lastMessage"] == (newest[0] if newest else None)
        if not newest:
            assert conversation["unreadCount"] == 0
    assert listing["totalUnread"] == sum(c["unreadCount"] for c in listing["items"])
    activity = [c["lastMessage"]["id"] if c["lastMessage"] else 0 for c in listing["items"]]
    assert activity == sorted(activity, reverse=True)


# -- 6. content is text ---------------------------------------------------------------------


async def test_content_is_stored_and_streamed_verbatim_but_trimmed(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    direct = await _direct_id(http, alice, "alice", "bob")
    cases = {
        "  <script>alert(1)</script>\n": "<script>alert(1)</script>",
        "\t<b>x</b> ": "<b>x</b>",
        " a  &amp; \"b\"\n\n'c' ": "a  &amp; \"b\"\n\n'c'",
        "  " + "y" * MESSAGE_MAX_CHARS + "  ": "y" * MESSAGE_MAX_CHARS,
    }
    sent: list[dict[str, Any]] = []
    async with open_stream(http, bob, params={"events": "chat:message"}) as bob_stream:
        for raw in cases:
            sent.append(await _send(http, alice, direct, raw))
        streamed = [_data(await bob_stream.next(), "chat:message")["message"] for _ in cases]
    assert [m["content"] for m in sent] == list(cases.values())
    assert streamed == sent
    history = (await _history_page(http, bob, direct, limit=len(cases)))["items"]
    assert list(reversed(history)) == sent


# -- 7. editing and deleting ----------------------------------------------------------------


def _message_path(conversation_id: int, message_id: int) -> str:
    return f"/api/conversations/{conversation_id}/messages/{message_id}"


async def _edit(
    http: httpx.AsyncClient, token: str, conversation_id: int, message_id: int, content: str
) -> httpx.Response:
    return await http.patch(
        _message_path(conversation_id, message_id), headers=_auth(token), json={"content": content}
    )


async def _delete(
    http: httpx.AsyncClient, token: str, conversation_id: int, message_id: int
) -> httpx.Response:
    return await http.delete(_message_path(conversation_id, message_id), headers=_auth(token))


async def _new_pair(http: httpx.AsyncClient, alice: str, bob: str, tag: str) -> int:
    """A group of alice and bob of this test's own: other tests' messages stay out of it."""
    bob_id = (await _me(http, bob))["id"]
    return _ok(await _create(http, alice, [bob_id], f"edits {tag}"), 201)["id"]


async def test_an_edit_and_a_delete_reach_every_participant_and_history_keeps_the_place(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    tag = _tag()
    conversation = await _new_pair(http, alice, bob, tag)
    kept = await _send(http, alice, conversation, f"helo {tag}")
    regret = await _send(http, alice, conversation, f"regret {tag}")
    changes_only = {"events": "chat:message-updated,chat:message-deleted"}

    async with (
        open_stream(http, bob, params=changes_only) as bob_stream,
        open_stream(http, alice) as alice_stream,  # her other tabs
    ):
        edited = _ok(await _edit(http, alice, conversation, kept["id"], f"  hello {tag} "))
        deleted = await _delete(http, alice, conversation, regret["id"])
        assert (deleted.status_code, deleted.content) == (204, b"")
        for stream in (bob_stream, alice_stream):
            assert _data(await stream.next(), "chat:message-updated") == {
                "conversationId": conversation,
                "message": edited,
            }
            assert _data(await stream.next(), "chat:message-deleted") == {
                "conversationId": conversation,
                "messageId": regret["id"],
            }
        # Deleting again is a 204 that announces nothing: the next event is the one after.
        again = await _delete(http, alice, conversation, regret["id"])
        assert again.status_code == 204
        barrier = _ok(await _edit(http, alice, conversation, kept["id"], f"barrier {tag}"))
        assert _data(await bob_stream.next(), "chat:message-updated")["message"] == barrier

    assert set(edited) == MESSAGE_KEYS
    assert edited == {**kept, "content": f"hello {tag}", "editedAt": edited["editedAt"]}
    assert edited["editedAt"].endswith("Z") and edited["editedAt"] >= kept["createdAt"]
    assert (kept["editedAt"], kept["deleted"]) == (None, False)
    placeholder = {**regret, "content": "", "deleted": True}
    history = (await _history_page(http, bob, conversation))["items"]
    assert history == [placeholder, barrier]
    listed = next(c for c in (await _conversations(http, bob))["items"] if c["id"] == conversation)
    assert listed["lastMessage"] == placeholder


async def test_only_the_sender_may_edit_or_delete_and_a_deleted_message_stays_deleted(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    tag = _tag()
    conversation = await _new_pair(http, alice, bob, tag)
    message = await _send(http, alice, conversation, f"alice's {tag}")
    async with open_stream(http, alice, params={"events": "chat:message-updated"}) as stream:
        assert (
            _error(await _edit(http, bob, conversation, message["id"], "bob's"), 403)["code"]
            == "forbidden"
        )
        assert _error(await _delete(http, bob, conversation, message["id"]), 403)
        # The same content again: 200, nothing stored or announced.
        same = _ok(await _edit(http, alice, conversation, message["id"], f"alice's {tag}"))
        assert same == message
        assert _ok(await _delete(http, alice, conversation, message["id"]), 204) is None
        assert (
            _error(await _edit(http, alice, conversation, message["id"], "back"), 409)["code"]
            == "conflict"
        )
        barrier = await _send(http, alice, conversation, f"barrier {tag}")
        barrier_edit = _ok(await _edit(http, alice, conversation, barrier["id"], f"b2 {tag}"))
        # The first update this stream sees is the barrier's: none of the above announced one.
        assert _data(await stream.next(), "chat:message-updated")["message"] == barrier_edit
    history = (await _history_page(http, alice, conversation))["items"]
    assert history == [barrier_edit, {**message, "content": "", "deleted": True}]


async def test_reconnecting_with_last_event_id_replays_the_edits_and_deletes_missed(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = _token(backend, "alice"), _token(backend, "bob")
    tag = _tag()
    conversation = await _new_pair(http, alice, bob, tag)
    chat_only = {"events": "chat:message,chat:message-updated,chat:message-deleted"}
    async with open_stream(http, bob, params=chat_only) as stream:
        first = await _send(http, alice, conversation, f"first {tag}")
        second = await _send(http, alice, conversation, f"second {tag}")
        await stream.next()
        last_seen = await stream.next()
        assert _data(last_seen, "chat:message")["message"] == second
    # bob is away: alice changes both.
    edited = _ok(await _edit(http, alice, conversation, first["id"], f"first, edited {tag}"))
    assert (await _delete(http, alice, conversation, second["id"])).status_code == 204
    async with open_stream(
        http, bob, params=chat_only, headers={"Last-Event-ID": last_seen.id}
    ) as resumed:
        update = await resumed.next()
        removal = await resumed.next()
    assert _data(update, "chat:message-updated") == {
        "conversationId": conversation,
        "message": edited,
    }
    assert _data(removal, "chat:message-deleted") == {
        "conversationId": conversation,
        "messageId": second["id"],
    }
    assert [int(e.id.split("-")[1]) for e in (last_seen, update, removal)] == sorted(
        int(e.id.split("-")[1]) for e in (last_seen, update, removal)
    )


# -- 8. bad input -----------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    tokens: dict[str, str]
    user_ids: dict[str, int]
    direct: int
    team: int
    team_message: int


@pytest.fixture
async def world(backend: Backend, http: httpx.AsyncClient) -> World:
    tokens = {name: _token(backend, name) for name in ("alice", "carol", "dave")}
    user_ids = {name: (await _me(http, token))["id"] for name, token in tokens.items()}
    team = await _team_id(http, tokens["alice"])
    team_message = (await _history_page(http, tokens["alice"], team, limit=1))["items"][0]["id"]
    return World(
        tokens=tokens,
        user_ids=user_ids,
        direct=await _direct_id(http, tokens["alice"], "alice", "bob"),
        team=team,
        team_message=team_message,
    )


Body = Callable[[World], Any]


@dataclass(frozen=True)
class Bad:
    """One bad request: path and query values are formatted with the World's fields."""

    method: str
    path: str
    body: Body | None = None
    raw_body: bytes | None = None
    params: dict[str, str] | None = None
    who: str = "alice"


MESSAGES = "/api/conversations/{direct}/messages"
# alice's own conversation, naming a message that is not in it (the team's newest).
OTHERS_MESSAGE = "/api/conversations/{direct}/messages/{team_message}"
UNKNOWN_MESSAGE = f"/api/conversations/{{direct}}/messages/{MISSING_ID}"
READ = "/api/conversations/{direct}/read"
TYPING = "/api/conversations/{direct}/typing"
CREATE = "/api/conversations"


def _content(text: str) -> Body:
    return lambda _: {"content": text}


def _page(**params: str) -> Bad:
    return Bad("GET", MESSAGES, params=params)


def _case(bad: Bad, status: int, name: str) -> Any:
    return pytest.param(bad, status, id=name)


BAD_INPUT = [
    _case(Bad("GET", f"{CREATE}/{MISSING_ID}"), 404, "unknown-conversation"),
    _case(Bad("POST", f"{CREATE}/{MISSING_ID}/messages", _content("hi")), 404, "unknown-send"),
    _case(Bad("GET", MESSAGES, who="dave"), 404, "foreign-tenant-conversation"),
    _case(Bad("POST", MESSAGES, _content("let me in"), who="carol"), 404, "not-participant-send"),
    _case(
        Bad("POST", CREATE, lambda w: {"participantIds": [w.user_ids["dave"]]}),
        404,
        "participant-other-tenant",
    ),
    _case(Bad("POST", MESSAGES, _content("")), 422, "empty-content"),
    _case(Bad("POST", MESSAGES, _content(" \n\t  ")), 422, "whitespace-content"),
    _case(Bad("POST", MESSAGES, _content("z" * (MESSAGE_MAX_CHARS + 1))), 422, "content-over-4000"),
    _case(Bad("POST", MESSAGES, raw_body=b'{"content": "unterminated'), 400, "malformed-json"),
    _case(_page(limit="0"), 422, "limit-0"),
    _case(_page(limit="-1"), 422, "limit-negative"),
    _case(_page(limit=str(10**6)), 422, "limit-huge"),
    _case(_page(before=str(MISSING_ID)), 404, "before-unknown"),
    _case(_page(before="{team_message}"), 404, "before-of-other-conversation"),
    _case(
        Bad("POST", READ, lambda w: {"messageId": w.team_message}),
        404,
        "read-message-of-other-conversation",
    ),
    _case(Bad("GET", f"{CREATE}/abc"), 422, "path-id-not-integer"),
    _case(Bad("GET", f"{CREATE}/1.5/messages"), 422, "path-id-fraction"),
    _case(_page(before="abc"), 422, "before-not-integer"),
    _case(Bad("POST", READ, lambda _: {"messageId": "abc"}), 422, "message-id-not-integer"),
    _case(Bad("POST", CREATE, lambda _: {"participantIds": ["abc"]}), 422, "participant-not-int"),
    _case(Bad("POST", TYPING, lambda _: {}), 422, "is-typing-missing"),
    _case(Bad("POST", TYPING, lambda _: {"isTyping": "true"}), 422, "is-typing-string"),
    _case(Bad("POST", TYPING, lambda _: {"isTyping": "maybe"}), 422, "is-typing-other-string"),
    _case(Bad("PATCH", UNKNOWN_MESSAGE, _content("x")), 404, "edit-unknown-message"),
    _case(Bad("DELETE", UNKNOWN_MESSAGE), 404, "delete-unknown-message"),
    _case(Bad("PATCH", OTHERS_MESSAGE, _content("x")), 404, "edit-message-of-other-conversation"),
    _case(Bad("DELETE", OTHERS_MESSAGE), 404, "delete-message-of-other-conversation"),
    _case(Bad("PATCH", OTHERS_MESSAGE, _content("x"), who="dave"), 404, "edit-foreign-tenant"),
    _case(Bad("DELETE", OTHERS_MESSAGE, who="carol"), 404, "delete-not-participant"),
    _case(Bad("PATCH", f"{MESSAGES}/abc", _content("x")), 422, "edit-message-id-not-integer"),
    _case(Bad("DELETE", f"{MESSAGES}/{2**70}"), 422, "delete-message-id-huge"),
    _case(Bad("DELETE", f"{MESSAGES}/0"), 422, "delete-message-id-zero"),
    _case(Bad("PATCH", UNKNOWN_MESSAGE), 422, "edit-body-missing"),
    _case(Bad("PATCH", UNKNOWN_MESSAGE, lambda _: {}), 422, "edit-content-missing"),
    _case(Bad("PATCH", UNKNOWN_MESSAGE, lambda _: {"content": 5}), 422, "edit-content-not-text"),
    _case(
        Bad("PATCH", UNKNOWN_MESSAGE, lambda _: {"content": "x", "deleted": True}),
        422,
        "edit-unknown-field",
    ),
    _case(Bad("PATCH", OTHERS_MESSAGE, _content(" \n ")), 422, "edit-whitespace-content"),
    _case(
        Bad("PATCH", OTHERS_MESSAGE, raw_body=b'{"content": "unterminated'), 400, "edit-malformed"
    ),
]


@pytest.mark.parametrize(("bad", "status"), BAD_INPUT)
async def test_bad_chat_input_gets_a_json_4xx_and_changes_nothing(
    http: httpx.AsyncClient, world: World, bad: Bad, status: int
) -> None:
    alice = world.tokens["alice"]
    newest_before = (await _history_page(http, alice, world.direct, limit=1))["items"]
    conversations_before = {c["id"] for c in (await _conversations(http, alice))["items"]}
    headers = _auth(world.tokens[bad.who])
    kwargs: dict[str, Any] = {"headers": headers}
    if bad.body is not None:
        kwargs["json"] = bad.body(world)
    if bad.raw_body is not None:
        kwargs["content"] = bad.raw_body
        kwargs["headers"] = {**headers, "Content-Type": "application/json"}
    fields = {"direct": world.direct, "team": world.team, "team_message": world.team_message}
    if bad.params is not None:
        kwargs["params"] = {k: v.format(**fields) for k, v in bad.params.items()}
    path = bad.path.format(**fields)
    response = await http.request(bad.method, path, **kwargs)
    error = _error(response, status)
    if status == 404:
        assert error["code"] == "not_found"
        # Said by the route about what it names, not by the catch-all about a missing route.
        assert not error["message"].startswith("No API endpoint"), error
    if status == 400:
        assert error["code"] == "malformed_json"
    assert (await _history_page(http, alice, world.direct, limit=1))["items"] == newest_before
    assert {c["id"] for c in (await _conversations(http, alice))["items"]} == conversations_before
