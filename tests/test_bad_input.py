"""Bad input gets a 4xx JSON error, never a 500 and never a broken stream for others."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from app.settings import get_settings
from tests.backend import Backend, open_stream

# Against the shared server on SQLite and on PostgreSQL (tests/databases.py).
pytestmark = pytest.mark.databases("sqlite", "postgres")


def _error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] and error["message"]
    return error


@pytest.fixture
def alice(backend: Backend) -> dict[str, str]:
    return {"Authorization": f"Bearer {backend.token('alice')}"}


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        pytest.param(b"{not json", "application/json", 400, "malformed_json", id="malformed-json"),
        pytest.param(b"[1, 2]", "application/json", 422, "invalid_request", id="json-array"),
        pytest.param(
            b'{"title": 123}', "application/json", 422, "invalid_request", id="wrong-type"
        ),
        pytest.param(b"{}", "application/json", 422, "invalid_request", id="missing-title"),
        pytest.param(
            b'{"title": "\xff\xfe bad"}', "application/json", 400, "malformed_json", id="non-utf8"
        ),
        pytest.param(
            json.dumps({"userId": "x", "title": "t"}).encode(),
            "application/json",
            422,
            "invalid_request",
            id="user-id-not-int",
        ),
        pytest.param(
            json.dumps({"userId": 2**70, "title": "t"}).encode(),
            "application/json",
            422,
            "invalid_request",
            id="user-id-too-large",
        ),
        pytest.param(
            json.dumps({"tenant": True, "title": "t", "extra": 1}).encode(),
            "application/json",
            422,
            "invalid_request",
            id="unknown-field",
        ),
        pytest.param(
            ("[" * 5000 + "]" * 5000).encode(),
            "application/json",
            400,
            "malformed_json",
            id="deeply-nested",
        ),
        pytest.param(
            json.dumps({"tenant": True, "title": "x" * 100_000}).encode(),
            "application/json",
            413,
            "payload_too_large",
            id="100kb-title",
        ),
        pytest.param(
            json.dumps({"tenant": True, "title": "x" * 300}).encode(),
            "application/json",
            422,
            "invalid_input",
            id="title-over-limit",
        ),
        pytest.param(
            json.dumps({"tenant": True, "title": "   "}).encode(),
            "application/json",
            422,
            "invalid_input",
            id="blank-title",
        ),
        pytest.param(
            json.dumps({"tenant": True, "title": "t", "link": "javascript:alert(1)"}).encode(),
            "application/json",
            422,
            "invalid_input",
            id="script-link",
        ),
        pytest.param(
            json.dumps({"tenant": True, "userId": 2, "title": "t"}).encode(),
            "application/json",
            422,
            "invalid_input",
            id="both-targets",
        ),
        pytest.param(
            json.dumps({"title": "t"}).encode(),
            "application/json",
            422,
            "invalid_input",
            id="no-target",
        ),
        pytest.param(
            json.dumps({"tenant": True, "title": "t", "type": "Bad Type!"}).encode(),
            "application/json",
            422,
            "invalid_input",
            id="bad-type",
        ),
    ],
)
async def test_bad_notification_bodies_get_a_clear_4xx(
    http: httpx.AsyncClient,
    alice: dict[str, str],
    content: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    response = await http.post(
        "/api/notifications", content=content, headers={**alice, "Content-Type": content_type}
    )
    assert _error(response, status)["code"] == code


async def test_chunked_oversized_body_is_refused_with_413(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    response = await http.post(
        "/api/notifications",
        content=chunks(),
        headers={**alice, "Content-Type": "application/json"},
    )
    assert _error(response, 413)["code"] == "payload_too_large"


async def test_a_declared_oversized_body_still_being_sent_gets_its_413_not_a_reset(
    backend: Backend, alice: dict[str, str]
) -> None:
    # The client is still sending when the server decides: the server must read what the
    # client sends (up to a bound) before answering, or closing on unread bytes resets the
    # connection and the 413 can be lost.
    body = b"x" * (get_settings().max_body_bytes + 256 * 1024)
    host, port = backend.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = (
            f"POST /api/notifications HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {alice['Authorization']}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode())
        for start in range(0, len(body), 16 * 1024):
            writer.write(body[start : start + 16 * 1024])
            await writer.drain()
            await asyncio.sleep(0.002)  # a client on a slower link
        async with asyncio.timeout(10):
            answer = await reader.read(65536)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"code":"payload_too_large"' in rest


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        pytest.param(b"{", {"Content-Type": "application/json"}, 400, id="malformed-json"),
        pytest.param(
            b'{"username": "a"}', {"Content-Type": "application/json"}, 422, id="missing-password"
        ),
        pytest.param(
            json.dumps({"username": "a", "password": "p" * 300}).encode(),
            {"Content-Type": "application/json"},
            422,
            id="overlong-password",
        ),
        pytest.param(b"\xff\xfe", {"Content-Type": "application/json"}, 400, id="non-utf8"),
        pytest.param(b"<xml/>", {"Content-Type": "application/xml"}, 415, id="wrong-media-type"),
        pytest.param(
            b"username=bob",
            {"Content-Type": "application/x-www-form-urlencoded"},
            422,
            id="form-missing-password",
        ),
    ],
)
async def test_bad_sign_in_bodies_get_a_clear_4xx(
    http: httpx.AsyncClient, content: bytes, headers: dict[str, str], status: int
) -> None:
    _error(await http.post("/api/auth/token", content=content, headers=headers), status)


async def test_rest_ids_outside_reach_or_range_are_404_or_422(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    bob = {"Authorization": f"Bearer {backend.token('bob')}"}
    dave = {"Authorization": f"Bearer {backend.token('dave')}"}
    mine = await http.post(
        "/api/notifications",
        headers=dave,
        json={"userId": (await http.get("/api/me", headers=dave)).json()["id"], "title": "dave's"},
    )
    globex_id = mine.json()["ids"][0]
    # Another tenant's notification id: 404, exactly like one that does not exist.
    assert _error(await http.post(f"/api/notifications/{globex_id}/read", headers=bob), 404)
    assert _error(await http.post("/api/notifications/999999999/read", headers=bob), 404)
    assert _error(await http.post(f"/api/notifications/{2**70}/read", headers=bob), 422)
    assert _error(await http.post("/api/notifications/abc/read", headers=bob), 422)
    assert _error(await http.get("/api/notifications?limit=100000", headers=bob), 422)
    assert _error(await http.get("/api/nothing-here", headers=bob), 404)


async def test_member_cannot_notify_and_admin_cannot_reach_other_tenants_users(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    bob = {"Authorization": f"Bearer {backend.token('bob')}"}
    alice = {"Authorization": f"Bearer {backend.token('alice')}"}
    dave_id = (
        await http.get("/api/me", headers={"Authorization": f"Bearer {backend.token('dave')}"})
    ).json()["id"]
    assert _error(
        await http.post("/api/notifications", headers=bob, json={"tenant": True, "title": "t"}), 403
    )
    assert _error(
        await http.post(
            "/api/notifications", headers=alice, json={"userId": dave_id, "title": "t"}
        ),
        404,
    )


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        pytest.param({"events": "chat:nope"}, 400, "unknown_event_type", id="unknown-type"),
        pytest.param({"events": "ping"}, 400, "unknown_event_type", id="control-type"),
        pytest.param({"tenant": "abc"}, 400, "invalid_tenant", id="tenant-not-a-number"),
        pytest.param({"tenant": "9" * 40}, 400, "invalid_tenant", id="tenant-huge"),
        pytest.param({"tenant": "424242"}, 403, "forbidden_tenant", id="tenant-unknown"),
        pytest.param({"lastEventId": "x" * 500}, 422, "invalid_request", id="last-event-id-huge"),
    ],
)
async def test_bad_stream_parameters_get_a_clear_4xx(
    backend: Backend, http: httpx.AsyncClient, params: dict[str, str], status: int, code: str
) -> None:
    response = await http.get(
        "/api/sse", params=params, headers={"Authorization": f"Bearer {backend.token('bob')}"}
    )
    assert _error(response, status)["code"] == code


async def test_a_flood_of_bad_requests_leaves_other_streams_working(
    backend: Backend, http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    erin = backend.token("erin")
    dave = {"Authorization": f"Bearer {backend.token('dave')}"}
    erin_id = (await http.get("/api/me", headers={"Authorization": f"Bearer {erin}"})).json()["id"]
    async with open_stream(http, erin) as stream:
        for body in (b"{", b"\xff", b"[]", b'{"title": null}'):
            await http.post(
                "/api/notifications",
                content=body,
                headers={**alice, "Content-Type": "application/json"},
            )
        await http.get(
            "/api/sse", params={"events": "bogus"}, headers={"Authorization": f"Bearer {erin}"}
        )
        await http.get(
            "/api/sse", headers={"Last-Event-ID": "garbage", "Authorization": "Bearer bad"}
        )
        await http.post(
            "/api/notifications", headers=dave, json={"userId": erin_id, "title": "still here"}
        )
        event = await stream.next()
    assert json.loads(event.data)["title"] == "still here"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        pytest.param("POST", "/api/sse", "GET", id="post-stream"),
        pytest.param("HEAD", "/api/sse", "GET", id="head-stream"),
        pytest.param("PUT", "/api/me", "GET", id="put-me"),
        pytest.param("GET", "/api/auth/token", "POST", id="get-sign-in"),
        pytest.param("DELETE", "/api/notifications", "GET, POST", id="delete-notifications"),
        pytest.param("GET", "/api/auth/session", "DELETE, POST", id="get-session"),
    ],
)
async def test_a_known_path_asked_with_another_method_gets_405_with_allow(
    http: httpx.AsyncClient, alice: dict[str, str], method: str, path: str, allow: str
) -> None:
    response = await http.request(method, path, headers=alice)
    assert response.headers["allow"] == allow
    if method == "HEAD":
        assert response.status_code == 405 and response.content == b""
    else:
        assert _error(response, 405)["code"] == "method_not_allowed"


async def test_an_unknown_api_path_is_still_a_404(http: httpx.AsyncClient) -> None:
    for method in ("GET", "POST", "HEAD"):
        response = await http.request(method, "/api/no-such-thing")
        assert response.status_code == 404
        if method != "HEAD":
            assert _error(response, 404)["code"] == "not_found"
