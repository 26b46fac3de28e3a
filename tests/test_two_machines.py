"""Two machines, simulated: two backends (scripts/serve), each in a working folder of its own,
sharing one PostgreSQL and one Redis, behind the shipped deploy/nginx.conf, as a deployment
for a few thousand people runs.

Nothing is shared between the two backends but what production shares: the database, Redis
and the proxy in front. The proxy balances `least_conn`, so a second stream goes to the
backend that holds none; each backend's own `/metrics` (asked directly, from loopback) says
which one holds a stream, so the test knows whom it kills.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.backend import Backend, Stream, bearer, open_stream, start_backend
from tests.nginx_server import NginxServer, start_nginx
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer

pytestmark = pytest.mark.server

MISSED = 5  # messages sent while the consumer's backend is down


@dataclass
class Site:
    proxy: NginxServer
    backends: list[Backend]


@pytest.fixture(scope="module")
def site(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    redis_server.flush()
    env = {
        "DATABASE_URL": postgres_server.create_database("machines"),
        "REDIS_URL": redis_server.url,
        "TRUSTED_PROXIES": "127.0.0.1",
    }
    backends: list[Backend] = []
    proxy: NginxServer | None = None
    try:
        # One after the other: the first creates the schema and the demo data.
        for name in ("one", "two"):
            workdir: Path = tmp_path_factory.mktemp(f"machine-{name}")
            backends.append(start_backend(workdir, env, launcher="serve"))
        proxy = start_nginx(
            tmp_path_factory.mktemp("proxy"), [f"127.0.0.1:{b.port}" for b in backends]
        )
        yield Site(proxy, backends)
    finally:
        if proxy is not None:
            proxy.stop()
        for backend in backends:
            backend.stop()


@pytest.fixture
async def through_proxy(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    timeout = httpx.Timeout(10.0, read=30.0)
    async with httpx.AsyncClient(base_url=site.proxy.url, timeout=timeout) as http:
        yield http


async def _sign_in(http: httpx.AsyncClient, username: str) -> tuple[str, int]:
    response = await http.post(
        "/api/auth/token", json={"username": username, "password": f"{username}-pass"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return body["access_token"], body["user"]["id"]


async def _conversation_of(http: httpx.AsyncClient, token: str, other: str) -> int:
    items = (await http.get("/api/conversations", headers=bearer(token))).json()["items"]
    return next(
        c["id"]
        for c in items
        if c["kind"] == "direct" and any(p["username"] == other for p in c["participants"])
    )


def _streams_on(backend: Backend) -> int:
    metrics = httpx.get(f"{backend.url}/metrics", timeout=5).text
    found = re.search(r'^chat_connected_clients\{kind="stream"\} (\S+)$', metrics, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


async def _backend_holding(site: Site, streams: list[int]) -> int:
    """The index of the backend whose stream count went up by one from `streams`."""
    async with asyncio.timeout(10):
        while True:
            now = [_streams_on(b) for b in site.backends]
            grown = [i for i, (a, b) in enumerate(zip(streams, now, strict=True)) if b == a + 1]
            if len(grown) == 1 and sum(now) == sum(streams) + 1:
                return grown[0]
            await asyncio.sleep(0.05)


async def _message(stream: Stream) -> dict[str, object]:
    """The next chat:message's message, skipping every other kind of event."""
    while True:
        event = await stream.next(15)
        if event.event == "chat:message":
            message: dict[str, object] = json.loads(event.data)["message"]
            message["eventId"] = event.id
            return message


async def _status_of(stream: Stream, user_id: int, wanted: str) -> None:
    async with asyncio.timeout(30):
        while True:
            event = await stream.next(30, presence=True)
            if event.event == "presence:update":
                data = json.loads(event.data)
                if data["userId"] == user_id and data["status"] == wanted:
                    return


async def test_users_on_two_machines_chat_live_and_a_dead_machines_stream_resumes_on_the_other(
    site: Site, through_proxy: httpx.AsyncClient
) -> None:
    http = through_proxy
    alice, _ = await _sign_in(http, "alice")
    bob, bob_id = await _sign_in(http, "bob")
    conversation = await _conversation_of(http, alice, "bob")
    send_path = f"/api/conversations/{conversation}/messages"

    async def send(token: str, content: str) -> int:
        response = await http.post(send_path, json={"content": content}, headers=bearer(token))
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    before = [_streams_on(b) for b in site.backends]
    async with open_stream(http, alice) as alice_sees:
        alices_machine = await _backend_holding(site, before)
        streams = [_streams_on(b) for b in site.backends]
        async with open_stream(http, bob) as bob_sees:
            bobs_machine = await _backend_holding(site, streams)
            assert bobs_machine != alices_machine  # least_conn: the one holding none

            # Live, across machines, both ways.
            await send(alice, "hello from machine one's user")
            to_bob = await _message(bob_sees)
            assert to_bob["content"] == "hello from machine one's user"
            assert (await _message(alice_sees))["content"] == to_bob["content"]
            await send(bob, "and back from the other")
            assert (await _message(alice_sees))["content"] == "and back from the other"
            last_seen = str((await _message(bob_sees))["eventId"])

            site.backends[bobs_machine].kill()  # SIGKILL: a machine gone, no goodbye
            # Its stream ends (what was already on its way still arrives first).
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, StopAsyncIteration)):
                async with asyncio.timeout(15):
                    while True:
                        await bob_sees.next(15)

        # The proxy sends everything to the machine left; nothing accepted is lost.
        missed = [await send(alice, f"while bob was away {n}") for n in range(MISSED)]
        # Alice's stream gets them, and, once the dead machine's lease on bob runs out, his
        # going offline (in whatever order the two come).
        contents: list[str] = []
        offline = False
        async with asyncio.timeout(30):
            while len(contents) < MISSED or not offline:
                event = await alice_sees.next(30, presence=True)
                data = json.loads(event.data)
                if event.event == "chat:message":
                    contents.append(data["message"]["content"])
                elif event.event == "presence:update" and data["userId"] == bob_id:
                    offline = data["status"] == "offline"
        assert contents == [f"while bob was away {n}" for n in range(MISSED)]

        async with open_stream(http, bob, headers={"Last-Event-ID": last_seen}) as resumed:
            assert _streams_on(site.backends[alices_machine]) >= 2  # on the machine left
            replayed = [await _message(resumed) for _ in range(MISSED)]
            assert [m["id"] for m in replayed] == missed  # every one, once, in order
            live = await send(alice, "and now live again")
            assert (await _message(resumed))["id"] == live  # no duplicate came before it
            # Bob is back, on the other machine.
            await _status_of(alice_sees, bob_id, "online")

    history = (await http.get(send_path, params={"limit": 50}, headers=bearer(bob))).json()["items"]
    stored = [m["id"] for m in history]
    assert set(missed) <= set(stored) and live in stored
