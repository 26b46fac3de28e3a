"""Several real backend processes on one Redis and one database, serving one tenant."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend import Backend, Stream, direct_conversation, open_stream, start_backend
from tests.redis_server import RedisServer

MESSAGES = 30


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Backend]]:
    redis_server.flush()
    workdir: Path = tmp_path_factory.mktemp("cluster")
    # Typing limits low, to show that they hold across processes (nothing else here types).
    env = {
        "REDIS_URL": redis_server.url,
        "RATE_LIMIT_TYPING_BURST": "3",
        "RATE_LIMIT_TYPING_PER_MINUTE": "1",
    }
    backends: list[Backend] = []
    try:
        # One after the other: the first creates the schema and the demo data.
        for _ in range(2):
            backends.append(start_backend(workdir, env, backend_only=True))
        yield backends
    finally:
        for backend in backends:
            backend.stop()


@pytest.fixture
async def clients(cluster: list[Backend]) -> AsyncIterator[list[httpx.AsyncClient]]:
    timeout = httpx.Timeout(10.0, read=30.0)
    opened = [httpx.AsyncClient(base_url=b.url, timeout=timeout) for b in cluster]
    try:
        yield opened
    finally:
        for client in opened:
            await client.aclose()


async def test_every_consumer_gets_every_message_once_in_one_order_whichever_process(
    cluster: list[Backend], clients: list[httpx.AsyncClient]
) -> None:
    alice = cluster[0].token("alice")
    bob = cluster[1].token("bob")
    conversation = await direct_conversation(clients[0], alice, "bob")
    filter_ = {"events": "chat:message"}
    async with (
        open_stream(clients[0], bob, params=filter_) as on_a,
        open_stream(clients[1], bob, params=filter_) as on_b,
    ):
        sends = [
            clients[n % 2].post(
                f"/api/conversations/{conversation}/messages",
                json={"content": f"m{n}"},
                headers={"Authorization": f"Bearer {alice}"},
            )
            for n in range(MESSAGES)
        ]
        answers = await asyncio.gather(*sends)
        assert all(a.status_code == 201 for a in answers)
        seen_a = [await on_a.next(10) for _ in range(MESSAGES)]
        seen_b = [await on_b.next(10) for _ in range(MESSAGES)]
    assert [e.id for e in seen_a] == [e.id for e in seen_b]
    contents = [json.loads(e.data)["message"]["content"] for e in seen_a]
    assert sorted(contents) == sorted(f"m{n}" for n in range(MESSAGES))
    assert len({e.id for e in seen_a}) == MESSAGES


async def test_a_consumer_moving_from_one_process_to_another_gets_exactly_what_it_missed(
    cluster: list[Backend], clients: list[httpx.AsyncClient]
) -> None:
    alice = cluster[1].token("alice")
    bob = cluster[0].token("bob")
    conversation = await direct_conversation(clients[0], alice, "bob")
    auth = {"Authorization": f"Bearer {alice}"}
    filter_ = {"events": "chat:message"}

    async def send(process: int, content: str) -> None:
        response = await clients[process].post(
            f"/api/conversations/{conversation}/messages", json={"content": content}, headers=auth
        )
        assert response.status_code == 201

    async with open_stream(clients[0], bob, params=filter_) as on_a:
        await send(0, "seen")
        seen = await on_a.next(10)
    await send(0, "missed on A")
    await send(1, "missed on B")
    async with open_stream(
        clients[1], bob, params=filter_, headers={"Last-Event-ID": seen.id}
    ) as on_b:
        replayed = [await on_b.next(10), await on_b.next(10)]
        await send(0, "live")
        live = await on_b.next(10)
    titles = [json.loads(e.data)["message"]["content"] for e in [*replayed, live]]
    assert titles == ["missed on A", "missed on B", "live"]


async def test_redis_restarting_during_a_send_loop_loses_no_accepted_message(
    cluster: list[Backend], clients: list[httpx.AsyncClient], redis_server: RedisServer
) -> None:
    alice = cluster[0].token("alice")
    bob = cluster[1].token("bob")
    conversation = await direct_conversation(clients[0], alice, "bob")
    auth = {"Authorization": f"Bearer {alice}"}
    accepted: list[str] = []
    async with open_stream(clients[1], bob, params={"events": "chat:message"}) as stream:
        for n in range(40):
            if n == 15:
                redis_server.stop()
            if n == 25:
                redis_server.start()
            response = await clients[n % 2].post(
                f"/api/conversations/{conversation}/messages",
                json={"content": f"loop {n}"},
                headers=auth,
            )
            assert response.status_code in (201, 503), response.text
            if response.status_code == 201:
                accepted.append(f"loop {n}")
        received: list[str] = []
        while len(received) < len(accepted):
            event = await stream.next(15)
            received.append(json.loads(event.data)["message"]["content"])
    for backend, client in zip(cluster, clients, strict=True):
        assert backend.process is not None and backend.process.poll() is None
        assert (await client.get("/ping")).status_code == 200
    history = (
        await clients[0].get(
            f"/api/conversations/{conversation}/messages", params={"limit": 100}, headers=auth
        )
    ).json()["items"]
    stored = {m["content"] for m in history}
    assert set(accepted) <= stored
    assert sorted(received) == sorted(accepted)
    assert len(accepted) == 40  # buffered in the outbox, none refused


async def test_the_stream_limit_counts_streams_on_every_process(
    cluster: list[Backend], clients: list[httpx.AsyncClient]
) -> None:
    erin = cluster[0].token("erin")
    auth = {"Authorization": f"Bearer {erin}"}
    async with (
        open_stream(clients[0], erin),
        open_stream(clients[0], erin),
        open_stream(clients[1], erin),
    ):
        for http in clients:
            refused = await http.get("/api/sse", headers=auth)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "too_many_streams"
    async with asyncio.timeout(10):  # released slots are free again on every process
        while (await _status_of_new_stream(clients[1], auth)) != 200:
            await asyncio.sleep(0.1)


async def _status_of_new_stream(http: httpx.AsyncClient, auth: dict[str, str]) -> int:
    async with http.stream("GET", "/api/sse", headers=auth) as response:
        return response.status_code


async def test_rate_limits_hold_across_processes(
    cluster: list[Backend], clients: list[httpx.AsyncClient]
) -> None:
    carol = cluster[0].token("carol")
    auth = {"Authorization": f"Bearer {carol}"}
    team = next(
        c["id"]
        for c in (await clients[0].get("/api/conversations", headers=auth)).json()["items"]
        if c["title"] == "Acme team"
    )
    answers = [
        await clients[n % 2].post(
            f"/api/conversations/{team}/typing", json={"isTyping": n % 2 == 0}, headers=auth
        )
        for n in range(4)
    ]
    assert [a.status_code for a in answers] == [204, 204, 204, 429]
    assert int(answers[-1].headers["retry-after"]) >= 1
    failures = [
        await clients[n % 2].post(
            "/api/auth/token", json={"username": "mallory", "password": f"guess {n}"}
        )
        for n in range(4)
    ]
    assert [f.status_code for f in failures] == [401, 401, 401, 429]


async def _wait_offline(http: httpx.AsyncClient, token: str, username: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with asyncio.timeout(20):
        while True:
            items = (await http.get("/api/presence", headers=headers)).json()["items"]
            if next(i for i in items if i["userName"].lower() == username)["status"] == "offline":
                return
            await asyncio.sleep(0.2)


async def _presence_of(stream: Stream, user_id: int, until: str) -> list[str]:
    statuses: list[str] = []
    while not statuses or statuses[-1] != until:
        event = await stream.next(20, presence=True)
        data = json.loads(event.data)
        if data["userId"] == user_id:
            statuses.append(data["status"])
    return statuses


async def test_a_user_with_clients_on_two_processes_is_one_online_user(
    cluster: list[Backend], clients: list[httpx.AsyncClient]
) -> None:
    alice, bob = cluster[0].token("alice"), cluster[0].token("bob")
    bob_id = (await clients[0].get("/api/me", headers={"Authorization": f"Bearer {bob}"})).json()[
        "id"
    ]
    await _wait_offline(clients[0], alice, "bob")
    watch = {"events": "presence:update"}
    async with open_stream(clients[1], alice, params=watch) as alice_sees:
        async with open_stream(clients[0], bob), open_stream(clients[1], bob):
            assert await _presence_of(alice_sees, bob_id, "online") == ["online"]
            # One of his two clients left (on process B): he is still online.
        # Both gone: offline after the grace period, announced once.
        assert await _presence_of(alice_sees, bob_id, "offline") == ["offline"]


async def test_a_killed_process_keeps_no_one_online_and_the_others_keep_serving(
    cluster: list[Backend], clients: list[httpx.AsyncClient]
) -> None:
    alice, bob = cluster[1].token("alice"), cluster[0].token("bob")
    bob_id = (await clients[1].get("/api/me", headers={"Authorization": f"Bearer {bob}"})).json()[
        "id"
    ]
    await _wait_offline(clients[1], alice, "bob")
    watch = {"events": "presence:update"}
    async with open_stream(clients[1], alice, params=watch) as alice_sees:
        try:
            async with open_stream(clients[0], bob):
                assert await _presence_of(alice_sees, bob_id, "online") == ["online"]
                cluster[0].kill()  # SIGKILL: no cleanup, bob's stream just dies with it
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass
        # Process B noticed the lease of the dead process running out.
        assert await _presence_of(alice_sees, bob_id, "offline") == ["offline"]
        assert (await clients[1].get("/ping")).status_code == 200
    cluster[0].start()  # back for whatever runs next
