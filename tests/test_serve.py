"""The production start (scripts/serve: uvicorn, app.asgi:create) serves the same stream.

There `GET /api/sse` runs the route inside the whole app, and once the stream is open its
live part continues past the middleware stack (app/asgi.py, app/api/sse_response.py
StreamHandoff); this shows that start answers, authenticates, refuses, shares CORS and stops
exactly as the ordinary route does (tests/test_sse_paths.py compares the two answer by answer).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.backend import open_stream, running_backend

PARTNER = "https://partner.example"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_backend(
        tmp_path_factory.mktemp("serve"), {"CORS_ALLOWED_ORIGINS": PARTNER}, launcher="serve"
    ) as server:
        yield server.url


def _token(url: str, username: str) -> str:
    response = httpx.post(
        f"{url}/api/auth/token", json={"username": username, "password": f"{username}-pass"}
    )
    return response.json()["access_token"]


async def test_the_production_start_streams_events_and_replays(served: str) -> None:
    alice, bob = _token(served, "alice"), _token(served, "bob")
    async with httpx.AsyncClient(base_url=served, timeout=httpx.Timeout(10, read=30)) as http:
        bob_id = (await http.get("/api/me", headers={"Authorization": f"Bearer {bob}"})).json()[
            "id"
        ]

        async def notify(title: str) -> None:
            response = await http.post(
                "/api/notifications",
                json={"userId": bob_id, "title": title},
                headers={"Authorization": f"Bearer {alice}"},
            )
            assert response.status_code == 201

        async with open_stream(http, bob) as stream:
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            assert stream.response.headers["cache-control"] == "no-cache, no-transform"
            await notify("one")
            first = await stream.next()
            await notify("two")
            second = await stream.next()
        await notify("three")
        async with open_stream(http, bob, headers={"Last-Event-ID": first.id}) as stream:
            replayed = [await stream.next(), await stream.next()]
    assert [json.loads(e.data)["title"] for e in (first, second)] == ["one", "two"]
    assert [json.loads(e.data)["title"] for e in replayed] == ["two", "three"]
    assert replayed[0].id == second.id


async def test_the_direct_stream_refuses_as_the_route_does(served: str) -> None:
    bob = _token(served, "bob")
    async with httpx.AsyncClient(base_url=served, timeout=10) as http:
        cases = [
            ({}, {}, 401, "not_authenticated"),
            ({"Authorization": "Bearer nope"}, {}, 401, "not_authenticated"),
            ({"Authorization": f"Bearer {bob}"}, {"events": "no:such"}, 400, "unknown_event_type"),
            ({"Authorization": f"Bearer {bob}"}, {"tenant": "2"}, 403, "forbidden_tenant"),
            (
                {"Authorization": f"Bearer {bob}"},
                {"lastEventId": "1" * 201},
                422,
                "invalid_request",
            ),
            (
                {"Cookie": f"chat_session={bob}", "Origin": "http://evil.example"},
                {},
                403,
                "untrusted_origin",
            ),
        ]
        for headers, params, status, code in cases:
            response = await http.get("/api/sse", headers=headers, params=params)
            assert response.status_code == status, (headers, params, response.text)
            assert response.headers["content-type"] == "application/json"
            assert response.json()["error"]["code"] == code


async def test_the_direct_stream_shares_the_origin_policy(served: str) -> None:
    bob = _token(served, "bob")
    async with httpx.AsyncClient(base_url=served, timeout=httpx.Timeout(10, read=30)) as http:
        auth = {"Authorization": f"Bearer {bob}"}
        async with open_stream(http, None, headers={**auth, "Origin": PARTNER}) as stream:
            assert stream.response.headers["access-control-allow-origin"] == PARTNER
            assert stream.response.headers["access-control-allow-credentials"] == "true"
        async with open_stream(
            http, None, headers={**auth, "Origin": "http://evil.example"}
        ) as stream:
            assert stream.response.status_code == 200  # a program may send any Origin ...
            assert (
                "access-control-allow-origin" not in stream.response.headers
            )  # ... a page may not read
        preflight = await http.options(
            "/api/sse",
            headers={
                "Origin": PARTNER,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == PARTNER


async def test_the_stream_limit_holds_on_the_direct_path(served: str) -> None:
    carol = _token(served, "carol")
    async with (
        httpx.AsyncClient(base_url=served, timeout=httpx.Timeout(10, read=30)) as http,
        open_stream(http, carol) as one,
        open_stream(http, carol) as two,
        open_stream(http, carol) as three,
    ):
        assert {s.response.status_code for s in (one, two, three)} == {200}
        refused = await http.get("/api/sse", headers={"Authorization": f"Bearer {carol}"})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "5"
