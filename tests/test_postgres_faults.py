"""The database faults of tests/test_faults.py, on PostgreSQL: a write-locked database answers
503 within the lock timeout and recovers; a table locked even against readers answers reads
503 as soon; a stopped server answers 503 at once while open streams carry on, and the app
reconnects when it is back.

A private backend (`reflex run --backend-only`) on a PostgreSQL server of this module's own,
which the last test stops and starts again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from app.db import BUSY_TIMEOUT_SECONDS
from tests.backend import (
    Backend,
    assert_database_unavailable,
    bearer,
    message_contents,
    open_stream,
    running_backend,
    timed,
)
from tests.databases import table_lock, write_lock
from tests.postgres_server import PostgresServer, remove_postgres, start_postgres

LOCKED_OUT = [f"while locked {n}" for n in range(8)]


@pytest.fixture(scope="module")
def database() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        remove_postgres(server)


@pytest.fixture(scope="module")
def database_url(database: PostgresServer) -> str:
    return database.create_database("faults")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Backend]:
    workdir = tmp_path_factory.mktemp("postgres-faults")
    env = {"DATABASE_URL": database_url}
    with running_backend(workdir, env, backend_only=True) as backend:
        yield backend


@pytest.fixture
async def http(server: Backend) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10, read=30)) as c:
        yield c


@pytest.fixture(scope="module")
def tokens(server: Backend) -> dict[str, str]:
    return {name: server.token(name) for name in ("alice", "bob")}


async def _direct_conversation(http: httpx.AsyncClient, tokens: dict[str, str]) -> int:
    bob = (await http.get("/api/me", headers=bearer(tokens["bob"]))).json()["id"]
    response = await http.post(
        "/api/conversations", headers=bearer(tokens["alice"]), json={"participantIds": [bob]}
    )
    assert response.status_code in (200, 201), response.text
    return int(response.json()["id"])


async def test_write_locked_database_answers_503_in_bounded_time_and_recovers(
    server: Backend, http: httpx.AsyncClient, tokens: dict[str, str], database_url: str
) -> None:
    conversation = await _direct_conversation(http, tokens)
    send = f"/api/conversations/{conversation}/messages"
    alice = bearer(tokens["alice"])
    async with open_stream(http, tokens["bob"], params={"events": "chat:message"}) as consumer:
        with write_lock(database_url):
            # Sends to one conversation take turns: after the first has waited out the lock
            # timeout, the others must not each wait it out again.
            refused = await asyncio.gather(
                *(timed(http.post(send, headers=alice, json={"content": c})) for c in LOCKED_OUT)
            )
            # EXCLUSIVE MODE admits readers, and open streams carry on.
            readable = await message_contents(http, tokens["bob"], conversation)
            ping = await consumer.next(5, pings=True)
        accepted = await http.post(send, headers=alice, json={"content": "unlocked"})
        first_event = await consumer.next(10)
    for response, _ in refused:
        assert_database_unavailable(response)
    slowest = max(took for _, took in refused)
    assert BUSY_TIMEOUT_SECONDS - 1 < slowest < BUSY_TIMEOUT_SECONDS + 4
    assert not set(LOCKED_OUT) & set(readable)
    assert ping.event == "ping"
    assert accepted.status_code == 201, accepted.text
    # The refused messages were neither stored nor announced: the next event is the new one.
    assert json.loads(first_event.data)["message"]["id"] == accepted.json()["id"]
    contents = await message_contents(http, tokens["bob"], conversation)
    assert contents[0] == "unlocked" and not set(LOCKED_OUT) & set(contents)


async def test_a_table_locked_against_readers_answers_reads_503_within_the_lock_timeout(
    server: Backend, http: httpx.AsyncClient, tokens: dict[str, str], database_url: str
) -> None:
    """A migration's ACCESS EXCLUSIVE lock (ALTER TABLE message ...) holds off readers too;
    SQLite's nearest case is its locked WAL index."""
    conversation = await _direct_conversation(http, tokens)
    history = f"/api/conversations/{conversation}/messages"
    with table_lock(database_url, "LOCK TABLE message IN ACCESS EXCLUSIVE MODE"):
        read, took = await timed(http.get(history, headers=bearer(tokens["bob"])))
    assert_database_unavailable(read)
    assert took < BUSY_TIMEOUT_SECONDS + 4
    assert (await http.get(history, headers=bearer(tokens["bob"]))).status_code == 200


async def test_a_stopped_server_answers_503_even_to_reads_and_streams_stay_up(
    server: Backend, http: httpx.AsyncClient, tokens: dict[str, str], database: PostgresServer
) -> None:
    conversation = await _direct_conversation(http, tokens)
    history = f"/api/conversations/{conversation}/messages"
    async with open_stream(http, tokens["bob"], params={"events": "chat:message"}) as consumer:
        await asyncio.to_thread(database.stop)
        try:
            read, took = await timed(http.get(history, headers=bearer(tokens["bob"])))
            ping = await consumer.next(5, pings=True)
        finally:
            await asyncio.to_thread(database.start)
        # The pool's connections died with the server: each is checked before use.
        recovered = await http.get(history, headers=bearer(tokens["bob"]))
        sent = await http.post(
            history, headers=bearer(tokens["alice"]), json={"content": "back again"}
        )
        delivered = await consumer.next(10)
    assert_database_unavailable(read)
    assert took < BUSY_TIMEOUT_SECONDS  # refused at once: nothing to wait for
    assert ping.event == "ping"
    assert recovered.status_code == 200, recovered.text
    assert sent.status_code == 201, sent.text
    assert json.loads(delivered.data)["message"]["content"] == "back again"
