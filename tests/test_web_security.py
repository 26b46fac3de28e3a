"""Browser-facing security over the real server: CORS closed by default and configurable,
the same origin policy on the Reflex websocket, the HttpOnly session cookie, CSRF refusal of
cookie requests from other sites, and the Prometheus /metrics endpoint."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.api import build_api
from tests.backend import Backend, open_stream, start_backend

pytestmark = pytest.mark.server

EVIL = "http://evil.example"
PARTNER = "https://partner.example"
METRICS_TOKEN = "metrics-secret-for-tests"


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """A backend whose operator trusts one partner origin and protects /metrics."""
    backend = start_backend(
        tmp_path_factory.mktemp("configured"),
        {"CORS_ALLOWED_ORIGINS": PARTNER, "METRICS_TOKEN": METRICS_TOKEN},
        backend_only=True,
    )
    try:
        yield backend
    finally:
        backend.stop()


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }


# -- CORS -------------------------------------------------------------------------------


async def test_cors_is_closed_to_other_origins_by_default(http: httpx.AsyncClient) -> None:
    refused = await http.options("/api/conversations", headers=preflight(EVIL))
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers

    token = await _token(http, "bob")
    simple = await http.get("/api/me", headers={"Origin": EVIL, "Authorization": f"Bearer {token}"})
    # The server answers (a program may send any Origin) but a browser page of another
    # site cannot read the answer: no Access-Control-Allow-Origin.
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_opens_to_a_configured_origin_with_credentials(configured: Backend) -> None:
    async with httpx.AsyncClient(base_url=configured.url, timeout=10) as http:
        allowed = await http.options("/api/conversations", headers=preflight(PARTNER))
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == PARTNER
        assert allowed.headers["access-control-allow-credentials"] == "true"
        refused = await http.options("/api/conversations", headers=preflight(EVIL))
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        # An actual request: the origin mirrored, and `Vary` naming it once (Reflex's
        # second CORS layer made it `Origin, Origin`).
        answer = await http.get("/api/me", headers={"Origin": PARTNER})
        assert answer.headers["access-control-allow-origin"] == PARTNER
        assert answer.headers.get_list("vary") == ["Origin"]


async def _websocket_handshake_status(backend: Backend, origin: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", backend.port)
    try:
        writer.write(
            (
                "GET /_event/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{backend.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {origin}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_the_reflex_websocket_refuses_pages_of_other_origins(backend: Backend) -> None:
    assert await _websocket_handshake_status(backend, backend.url) == 101
    assert await _websocket_handshake_status(backend, EVIL) == 403


# -- the session cookie -------------------------------------------------------------------


async def _token(http: httpx.AsyncClient, username: str) -> str:
    response = await http.post(
        "/api/auth/token", json={"username": username, "password": f"{username}-pass"}
    )
    response.raise_for_status()
    return response.json()["access_token"]


def _set_cookie_attributes(response: httpx.Response) -> set[str]:
    header = response.headers["set-cookie"]
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


async def test_the_session_cookie_is_httponly_samesite_strict_and_secure_over_https(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    token = await _token(http, "bob")
    plain = await http.post(
        "/api/auth/session", headers={"Authorization": f"Bearer {token}", "Origin": backend.url}
    )
    assert plain.status_code == 204
    assert plain.headers["set-cookie"].startswith(f"chat_session={token};")
    attributes = _set_cookie_attributes(plain)
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in plain.headers["set-cookie"].lower()
    assert "secure" not in attributes  # plain HTTP: a Secure cookie would never come back

    behind_tls = await http.post(
        "/api/auth/session",
        headers={"Authorization": f"Bearer {token}", "X-Forwarded-Proto": "https"},
    )
    assert "secure" in _set_cookie_attributes(behind_tls)


async def test_a_page_of_another_site_cannot_set_the_session_cookie(
    http: httpx.AsyncClient,
) -> None:
    token = await _token(http, "bob")
    response = await http.post(
        "/api/auth/session", headers={"Authorization": f"Bearer {token}", "Origin": EVIL}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "untrusted_origin"
    assert "set-cookie" not in response.headers


async def test_the_stream_takes_the_cookie_only_from_trusted_pages(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    token = await _token(http, "bob")
    cookie = {"Cookie": f"chat_session={token}"}
    for headers in ({**cookie, "Origin": backend.url}, cookie):  # our page; a program
        async with open_stream(http, None, headers=headers) as stream:
            assert stream.response.status_code == 200
    for headers in (
        {**cookie, "Origin": EVIL},
        {**cookie, "Origin": "null"},
        {**cookie, "Sec-Fetch-Site": "cross-site"},
    ):
        async with open_stream(http, None, headers=headers) as stream:
            assert stream.response.status_code == 403, headers
            await stream.response.aread()
            assert stream.response.json()["error"]["code"] == "untrusted_origin"


async def test_closing_the_browser_session_revokes_its_token_only_from_our_pages(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    token = await _token(http, "bob")
    cookie = {"Cookie": f"chat_session={token}"}
    forged = await http.delete("/api/auth/session", headers={**cookie, "Origin": EVIL})
    assert forged.status_code == 403
    assert (
        await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    ).status_code == 200

    signed_out = await http.delete("/api/auth/session", headers={**cookie, "Origin": backend.url})
    assert signed_out.status_code == 204
    assert re.search(r"chat_session=\"?\"?;", signed_out.headers["set-cookie"])
    assert "max-age=0" in signed_out.headers["set-cookie"].lower()
    assert (
        await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    ).status_code == 401


def _state_changing_routes() -> list[tuple[str, str]]:
    """From the OpenAPI route table: every documented /api route that is not a read."""
    routes = []
    for path, operations in build_api().openapi()["paths"].items():
        for method in operations:
            if path.startswith("/api/") and method.upper() not in {"GET", "HEAD", "OPTIONS"}:
                routes.append((method.upper(), path))
    return routes


COOKIE_SESSION_ROUTES = {("POST", "/api/auth/session"), ("DELETE", "/api/auth/session")}


async def test_no_state_changing_route_but_the_session_ones_accepts_the_cookie(
    http: httpx.AsyncClient,
) -> None:
    """CSRF: a forged request carries the cookie but cannot add a header. Every route that
    changes state, read from the route table, must refuse a cookie-only request."""
    token = await _token(http, "alice")
    routes = _state_changing_routes()
    assert COOKIE_SESSION_ROUTES <= set(routes)
    for method, path in routes:
        if (method, path) in COOKIE_SESSION_ROUTES or path == "/api/auth/token":
            continue  # the session routes check the Origin (above); sign-in takes a password
        url = re.sub(r"\{[^}]+\}", "1", path)
        response = await http.request(
            method, url, headers={"Cookie": f"chat_session={token}"}, json={}
        )
        assert response.status_code == 401, (method, path, response.text)


# -- /metrics -------------------------------------------------------------------------------


def _sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} missing from /metrics"
    return float(match.group(1))


async def test_metrics_expose_streams_events_and_auth_failures(
    http: httpx.AsyncClient,
) -> None:
    before = (await http.get("/metrics")).text
    failures = '{reason="invalid_credentials"}'
    failed_before = (
        _sample(before, "chat_auth_failures_total", failures)
        if "invalid_credentials" in before
        else 0.0
    )
    bad = await http.post("/api/auth/token", json={"username": "erin", "password": "wrong"})
    assert bad.status_code == 401
    token = await _token(http, "alice")
    async with open_stream(http, token) as stream:
        sent = await http.post(
            "/api/notifications",
            headers={"Authorization": f"Bearer {token}"},
            json={"title": "metrics check", "tenant": True},
        )
        assert sent.status_code == 201, sent.text
        assert (await stream.next()).event == "notification:new"
        during = await http.get("/metrics")
    assert during.status_code == 200
    assert during.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = during.text
    assert _sample(text, "chat_connected_clients", '{kind="stream"}') >= 1
    assert _sample(text, "chat_events_published_total") > _sample(
        before, "chat_events_published_total"
    )
    assert _sample(text, "chat_auth_failures_total", failures) == failed_before + 1
    for name in (
        "chat_events_delivered_total",
        "chat_events_dropped_total",
        "chat_events_replayed_total",
        "chat_slow_consumers_cut_total",
        "chat_resyncs_total",
        "chat_stalled_writes",
    ):
        _sample(text, name)
    # The start-up heap is frozen (app/gc_pauses.py) and collection pauses are measured.
    assert _sample(text, "chat_gc_frozen_objects") > 10_000
    assert _sample(text, "chat_gc_pause_seconds_count", '{generation="0"}') >= 1
    # Process-wide figures only: no series is labelled by tenant (a reason may name one).
    assert not re.search(r'[{,]tenant[a-z_]*="', text)


async def test_metrics_need_the_metrics_token_when_one_is_set(configured: Backend) -> None:
    async with httpx.AsyncClient(base_url=configured.url, timeout=10) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert right.status_code == 200
        assert "chat_connected_clients" in right.text


# -- secrets stay out of logs and answers ---------------------------------------------------


async def test_tokens_and_passwords_never_reach_the_log_or_an_answer(
    http: httpx.AsyncClient, backend: Backend
) -> None:
    password = "bob-pass"
    wrong_password = "Wr0ng-passw0rd-for-log-check"
    signed_in = await http.post("/api/auth/token", json={"username": "bob", "password": password})
    token = signed_in.json()["access_token"]
    await http.post("/api/auth/token", json={"username": "bob", "password": wrong_password})
    me = await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    async with open_stream(http, None, params={"access_token": token}) as stream:
        assert stream.response.status_code == 200
    bogus = "not-a-real-token-0123456789abcdef"
    await http.get("/api/me", headers={"Authorization": f"Bearer {bogus}"})
    await http.get("/api/sse", params={"access_token": bogus})

    for answer in (signed_in.text, me.text):
        assert password not in answer and "password" not in answer.lower()
    log = backend.log_since_mark()
    for secret in (token, bogus, password, wrong_password):
        assert secret not in log


def test_the_database_keeps_token_digests_never_tokens(backend: Backend) -> None:
    import sqlite3

    token = backend.token("carol")
    with sqlite3.connect(Path(backend.workdir) / "chat.db") as db:
        dump = "\n".join(db.iterdump())
    assert token not in dump
    assert "carol-pass" not in dump


async def test_the_route_table_is_published_as_openapi(http: httpx.AsyncClient) -> None:
    """The table the CSRF test reads is the one the server publishes (it once failed to
    render because the stream's response class declared no status code)."""
    response = await http.get("/api/openapi.json")
    assert response.status_code == 200
    assert set(response.json()["paths"]) == set(build_api().openapi()["paths"])
