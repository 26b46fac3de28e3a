"""A pytest plugin (registered in tests/conftest.py) for the in-process chat tests: one seeded
database per module (and database kind, tests/databases.py), a fresh copy of it per runtime,
and the helpers those tests share.

Seeding hashes six argon2 passwords; copying a file (or a PostgreSQL template) does not. So each test starts from the
demo data and nothing else, and can change settings freely (`make_runtime(**overrides)`).
A module picks the settings every one of its runtimes starts from by overriding the
`seeded_settings` fixture (tests/test_mention_notifications.py turns the rate limits off).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app.domain.principal import Principal
from app.realtime.client import Client
from app.realtime.events import Event, EventType
from app.runtime import Runtime
from app.settings import Settings
from tests.databases import DatabaseKind, kind_of, sqlite_path

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer

EVENT_TIMEOUT = 2.0

MakeRuntime = Callable[..., Awaitable[Runtime]]


@dataclass(frozen=True, slots=True)
class Seeded:
    """A seeded database and what the tests need to know about it."""

    database_url: str
    alice: Principal  # Acme's admin
    bob: Principal
    carol: Principal  # in Acme
    carol_globex: Principal  # the same carol, acting in Globex
    dave: Principal  # Globex's admin
    erin: Principal  # Globex
    acme_id: int
    globex_id: int
    direct_id: int  # alice-bob
    group_id: int  # "Acme team": alice, bob, carol
    welcome_id: int  # alice's message in the group; bob and carol have it unread


def _settings(database_url: str, overrides: dict[str, Any]) -> Settings:
    base = replace(Settings(), database_url=database_url, sse_heartbeat_seconds=0)
    return replace(base, **overrides)


async def _seed(database_url: str) -> Seeded:
    runtime = Runtime(_settings(database_url, {}))
    await runtime.start()
    try:

        async def sign_in(name: str, tenant_id: int | None = None) -> Principal:
            grant = await runtime.accounts.sign_in(name, f"{name}-pass", "127.0.0.1", tenant_id)
            return grant.principal

        alice, bob, carol, dave, erin = [
            await sign_in(n) for n in ("alice", "bob", "carol", "dave", "erin")
        ]
        carol_globex = await sign_in("carol", dave.tenant_id)
        views, _ = await runtime.conversations.list_for(alice)
        direct = next(v for v in views if v.kind == "direct")
        group = next(v for v in views if v.kind == "group")
        assert group.last_message is not None
        return Seeded(
            database_url=database_url,
            alice=alice,
            bob=bob,
            carol=carol,
            carol_globex=carol_globex,
            dave=dave,
            erin=erin,
            acme_id=alice.tenant_id,
            globex_id=dave.tenant_id,
            direct_id=direct.id,
            group_id=group.id,
            welcome_id=group.last_message.id,
        )
    finally:
        await runtime.stop()


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory,
    database_kind: DatabaseKind,
    request: pytest.FixtureRequest,
) -> Iterator[Seeded]:
    if database_kind == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        database_url = server.create_database(
            "seeded", template=request.getfixturevalue("postgres_seeded")
        )
    else:
        database_url = f"sqlite:///{tmp_path_factory.mktemp('seeded') / 'chat.db'}"
    yield asyncio.run(_seed(database_url))


@pytest.fixture
def seeded_settings() -> dict[str, Any]:
    """Setting overrides every runtime of the module starts from (a module may override)."""
    return {}


@pytest.fixture
async def make_runtime(
    seeded: Seeded,
    seeded_settings: dict[str, Any],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[MakeRuntime]:
    """`await make_runtime(**setting_overrides)`: a started runtime on a fresh copy of the
    seeded database."""
    started: list[Runtime] = []

    async def make(**overrides: Any) -> Runtime:
        if kind_of(seeded.database_url) == "postgres":
            server: PostgresServer = request.getfixturevalue("postgres_server")
            database_url = server.create_database(template=seeded.database_url)
        else:
            seeded_path = Path(sqlite_path(seeded.database_url))
            path = tmp_path / f"chat-{len(started)}.db"
            for suffix in ("", "-wal", "-shm"):
                source = seeded_path.with_name(seeded_path.name + suffix)
                if source.exists():
                    shutil.copyfile(source, path.with_name(path.name + suffix))
            database_url = f"sqlite:///{path}"
        runtime = Runtime(_settings(database_url, {**seeded_settings, **overrides}))
        started.append(runtime)
        await runtime.start()
        return runtime

    try:
        yield make
    finally:
        for runtime in reversed(started):
            await runtime.stop()


# -- helpers ----------------------------------------------------------------------------------


async def listen(runtime: Runtime, principal: Principal, *types: str) -> Client:
    """A client of `principal`'s that receives only the given event types."""
    connection = await runtime.manager.connect(
        user_id=principal.user_id, tenant_id=principal.tenant_id, types=frozenset(types)
    )
    return connection.client


async def drain(client: Client) -> list[Event]:
    """What is queued right now, without waiting for more."""
    if client.queued == 0:
        return []
    async with asyncio.timeout(1):
        return await client.next_batch()


async def wait_for_events(client: Client, count: int) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(EVENT_TIMEOUT):
        while len(events) < count:
            events.extend(await client.next_batch())
    return events


def data_of(events: list[Event], event_type: str) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == event_type]


async def unread_events(client: Client) -> list[dict[str, Any]]:
    return data_of(await drain(client), EventType.CHAT_UNREAD_COUNT)


async def new_group(runtime: Runtime, owner: Principal, *others: Principal) -> int:
    view, created = await runtime.conversations.create(
        owner, [p.user_id for p in others], "A fresh group"
    )
    assert created
    return view.id


async def send_all(
    runtime: Runtime, sender: Principal, conversation_id: int, *texts: str
) -> list[int]:
    return [(await runtime.messages.send(sender, conversation_id, t)).message.id for t in texts]


async def unread_of(runtime: Runtime, principal: Principal) -> tuple[dict[int, int], int]:
    views, total = await runtime.conversations.list_for(principal)
    return {v.id: v.unread_count for v in views}, total
