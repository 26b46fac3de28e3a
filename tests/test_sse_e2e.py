"""GET /api/sse against the real backend process, consumed with httpx-sse."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from tests.backend import Backend, open_stream
from tests.wire import payload

# Against the shared server on SQLite and on PostgreSQL (tests/databases.py).
pytestmark = pytest.mark.databases("sqlite", "postgres")


async def _me(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    return response.json()


async def _notify(
    http: httpx.AsyncClient, admin_token: str, user_id: int, title: str
) -> httpx.Response:
    response = await http.post(
        "/api/notifications",
        headers={"Authorization": f"Bearer {admin_token}"},
        json={"userId": user_id, "type": "mention", "title": title, "body": "b", "link": "/chat"},
    )
    assert response.status_code == 201, response.text
    return response


async def test_bob_receives_alices_notification_with_the_contract_payload(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = backend.token("alice"), backend.token("bob")
    bob_id = (await _me(http, bob))["id"]
    async with open_stream(http, bob) as stream:
        # Posted right after the headers arrived: registration happened before them.
        created = (await _notify(http, alice, bob_id, "Standup in 5")).json()
        event = await stream.next()
    assert event.event == "notification:new"
    assert event.id
    data = payload(event.data)  # and its sentAt, a recent moment in milliseconds
    listing = (
        await http.get("/api/notifications", headers={"Authorization": f"Bearer {bob}"})
    ).json()
    assert {**data, "read": False} == listing["items"][0]
    assert data["id"] == created["ids"][0]
    assert set(data) == {"id", "type", "title", "body", "link", "createdAt", "unreadCount"}
    assert (data["type"], data["title"], data["body"], data["link"]) == (
        "mention",
        "Standup in 5",
        "b",
        "/chat",
    )
    assert data["unreadCount"] == listing["unreadCount"]


async def test_reconnect_with_last_event_id_replays_exactly_the_missed_events(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob, dave = backend.token("alice"), backend.token("bob"), backend.token("dave")
    bob_id = (await _me(http, bob))["id"]
    dave_id = (await _me(http, dave))["id"]
    async with open_stream(http, dave) as dave_stream:
        async with open_stream(http, bob) as stream:
            await _notify(http, alice, bob_id, "first")
            seen = await stream.next()
        await _notify(http, alice, bob_id, "missed one")
        await _notify(http, alice, bob_id, "missed two")
        async with open_stream(http, bob, headers={"Last-Event-ID": seen.id}) as stream:
            replayed = [await stream.next(), await stream.next()]
            await _notify(http, alice, bob_id, "live")
            live = await stream.next()
        # Globex's dave got none of Acme's events: the first thing he sees is his own.
        await _notify(http, dave, dave_id, "dave's own")
        first_for_dave = await dave_stream.next()
    assert [json.loads(e.data)["title"] for e in replayed] == ["missed one", "missed two"]
    assert json.loads(live.data)["title"] == "live"
    ids = [seen.id, *(e.id for e in replayed), live.id]
    assert len(set(ids)) == 4
    assert json.loads(first_for_dave.data)["title"] == "dave's own"


async def test_last_event_id_query_parameter_resumes_like_the_header(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = backend.token("alice"), backend.token("bob")
    bob_id = (await _me(http, bob))["id"]
    async with open_stream(http, bob) as stream:
        await _notify(http, alice, bob_id, "before")
        seen = await stream.next()
    await _notify(http, alice, bob_id, "after")
    async with open_stream(http, bob, params={"lastEventId": seen.id}) as stream:
        replayed = await stream.next()
    assert json.loads(replayed.data)["title"] == "after"


async def test_garbage_last_event_id_gets_resync_then_live_events(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = backend.token("alice"), backend.token("bob")
    bob_id = (await _me(http, bob))["id"]
    async with open_stream(
        http, bob, headers={"Last-Event-ID": "not-an-id\u00e9".encode("latin-1")}
    ) as stream:
        resync = await stream.next()
        await _notify(http, alice, bob_id, "after resync")
        live = await stream.next()
    assert resync.event == "resync"
    assert resync.id == ""  # no id: a resync never moves the consumer's Last-Event-ID
    assert json.loads(live.data)["title"] == "after resync"


async def test_stream_headers_and_opening(backend: Backend, http: httpx.AsyncClient) -> None:
    bob = backend.token("bob")
    async with http.stream(
        "GET",
        "/api/sse",
        headers={"Authorization": f"Bearer {bob}", "Accept-Encoding": "gzip, br"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache, no-transform"
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers
        assert "content-length" not in response.headers
        first = await anext(response.aiter_raw())
    assert first.startswith(b": connected\nretry: ")


async def test_heartbeat_ping_arrives_without_an_id(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    """No `id:` line, so a ping never moves the consumer's Last-Event-ID (parsers carry the
    previous id over to it, which is why this reads the raw bytes)."""
    headers = {"Authorization": f"Bearer {backend.token('erin')}"}
    received = b""
    async with asyncio.timeout(5):
        async with http.stream("GET", "/api/sse", headers=headers) as response:
            async for chunk in response.aiter_raw():
                received += chunk
                if b"event: ping\n" in received and received.endswith(b"\n\n"):
                    break
    block = next(b for b in received.split(b"\n\n") if b"event: ping" in b)
    assert block.splitlines()[0] == b"event: ping"
    assert not any(line.startswith(b"id:") for line in block.splitlines())
    assert set(payload(block.split(b"data: ", 1)[1].decode())) == {"ts"}


async def test_access_token_query_parameter_authenticates_the_stream(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    async with open_stream(http, None, params={"access_token": backend.token("erin")}) as stream:
        assert stream.response.status_code == 200


async def test_bad_or_missing_token_gets_401_json(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = await http.get("/api/sse", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]["code"] == "not_authenticated"


async def test_foreign_tenant_gets_403_and_a_second_membership_is_allowed(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    bob, carol = backend.token("bob"), backend.token("carol")
    globex = next(m for m in (await _me(http, carol))["memberships"] if m["tenantSlug"] == "globex")
    response = await http.get(
        "/api/sse",
        params={"tenant": str(globex["tenantId"])},
        headers={"Authorization": f"Bearer {bob}"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden_tenant"
    async with open_stream(http, carol, params={"tenant": str(globex["tenantId"])}) as stream:
        assert stream.response.status_code == 200


async def test_carol_in_globex_never_sees_her_acme_notifications(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    """Same person, two tenants: the stream of the active tenant gets only that tenant's."""
    alice, dave = backend.token("alice"), backend.token("dave")
    carol = backend.token("carol")
    me = await _me(http, carol)
    globex = next(m for m in me["memberships"] if m["tenantSlug"] == "globex")
    async with open_stream(http, carol, params={"tenant": str(globex["tenantId"])}) as stream:
        await _notify(http, alice, me["id"], "acme only")
        await _notify(http, dave, me["id"], "globex")
        first = await stream.next()
    assert json.loads(first.data)["title"] == "globex"


async def test_stream_limit_gets_429_and_a_closed_stream_frees_a_slot(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    erin = backend.token("erin")
    async with open_stream(http, erin), open_stream(http, erin):
        async with open_stream(http, erin):
            refused = await http.get("/api/sse", headers={"Authorization": f"Bearer {erin}"})
        # The server frees the slot once it sees the close: until then it may still refuse.
        deadline = time.monotonic() + 5
        while True:
            async with open_stream(http, erin) as again:
                status = again.response.status_code
            if status != 429 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert status == 200
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_streams"
    assert int(refused.headers["retry-after"]) > 0


async def test_logout_closes_that_tokens_open_stream(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    erin = backend.token("erin")
    other = backend.token("erin")
    async with open_stream(http, erin) as doomed, open_stream(http, other) as survivor:
        response = await http.post("/api/auth/logout", headers={"Authorization": f"Bearer {erin}"})
        assert response.status_code == 204
        assert await doomed.ended(timeout=5)
        ping = await survivor.next(timeout=5, pings=True)
    assert ping.event == "ping"
    again = await http.get("/api/sse", headers={"Authorization": f"Bearer {erin}"})
    assert again.status_code == 401


async def test_events_filter_keeps_only_the_named_types(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = backend.token("alice"), backend.token("bob")
    bob_id = (await _me(http, bob))["id"]
    auth = {"Authorization": f"Bearer {bob}"}
    async with open_stream(http, bob, params={"events": "notification:read"}) as stream:
        created = (await _notify(http, alice, bob_id, "filtered out")).json()
        await http.post(f"/api/notifications/{created['ids'][0]}/read", headers=auth)
        event = await stream.next()
    assert event.event == "notification:read"
    assert json.loads(event.data)["id"] == created["ids"][0]


async def test_unknown_event_type_in_filter_gets_400(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    response = await http.get(
        "/api/sse",
        params={"events": "chat:message,chat:nope"},
        headers={"Authorization": f"Bearer {backend.token('bob')}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_event_type"
    assert "chat:nope" in response.json()["error"]["message"]


async def test_reading_a_notification_tells_the_users_other_streams(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob = backend.token("alice"), backend.token("bob")
    bob_id = (await _me(http, bob))["id"]
    auth = {"Authorization": f"Bearer {bob}"}
    async with open_stream(http, bob) as other_tab:
        created = (await _notify(http, alice, bob_id, "read me")).json()
        await other_tab.next()
        answer = await http.post(f"/api/notifications/{created['ids'][0]}/read", headers=auth)
        read = await other_tab.next()
        await http.post("/api/notifications/read-all", headers=auth)
        read_all = await other_tab.next()
    assert answer.status_code == 200
    assert read.event == "notification:read"
    assert payload(read.data) == answer.json()
    assert payload(read_all.data) == {"id": None, "all": True, "unreadCount": 0}
    listing = (await http.get("/api/notifications", headers=auth)).json()
    assert listing["unreadCount"] == 0


async def test_tenant_wide_notification_reaches_every_member_of_that_tenant_only(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    dave, erin, bob = backend.token("dave"), backend.token("erin"), backend.token("bob")
    bob_id = (await _me(http, bob))["id"]
    async with open_stream(http, erin) as erin_stream, open_stream(http, bob) as bob_stream:
        response = await http.post(
            "/api/notifications",
            headers={"Authorization": f"Bearer {dave}"},
            json={"tenant": True, "title": "Globex all-hands"},
        )
        assert response.status_code == 201
        for_erin = await erin_stream.next()
        await _notify(http, backend.token("alice"), bob_id, "bob's sentinel")
        for_bob = await bob_stream.next()
    assert json.loads(for_erin.data)["title"] == "Globex all-hands"
    assert response.json()["created"] == 3  # dave, erin, carol
    assert json.loads(for_bob.data)["title"] == "bob's sentinel"


async def test_diagnostics_for_admin_show_only_their_tenant(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    alice, bob, dave = backend.token("alice"), backend.token("bob"), backend.token("dave")
    bob_id = str((await _me(http, bob))["id"])
    dave_id = str((await _me(http, dave))["id"])
    async with open_stream(http, bob), open_stream(http, dave):
        response = await http.get(
            "/api/sse/diagnostics", headers={"Authorization": f"Bearer {alice}"}
        )
        refused = await http.get("/api/sse/diagnostics", headers={"Authorization": f"Bearer {bob}"})
    assert response.status_code == 200
    body = response.json()
    assert body["scope"] == "tenant"
    assert body["clientsByUser"].get(bob_id, 0) >= 1
    assert dave_id not in body["clientsByUser"]
    assert list(body["clientsByTenant"]) == [str(body["tenantId"])]
    for counter in ("eventsPublished", "eventsDelivered", "eventsDropped", "replays", "reconnects"):
        assert isinstance(body[counter], int)
    assert refused.status_code == 403
