"""Shared fixtures. The project root goes on sys.path so `import app` works under plain pytest."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx
import pytest
import redis.asyncio as aioredis

from app.runtime import Runtime
from app.settings import Settings
from tests.backend import Backend, no_errors_logged, running_backend
from tests.databases import DatabaseKind

if TYPE_CHECKING:  # imported where used, so that a run without them does not need them
    from playwright.sync_api import Browser

    from tests.postgres_server import PostgresServer
    from tests.redis_server import RedisServer

# Fixtures of their own modules: the seeded chat world, and started connection managers.
pytest_plugins = ["tests.seeded_chat", "tests.realtime_helpers"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "databases(*kinds): run the test once per database kind ('sqlite', 'postgres'), "
        "through the database_kind fixture (tests/databases.py)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`databases(...)`-marked tests that use a database run once per kind named. Grouped
    per module and kind, so that module-wide fixtures (a seeded database, a backend) are
    made once for each."""
    marker = metafunc.definition.get_closest_marker("databases")
    if marker is None or "database_kind" not in metafunc.fixturenames:
        return
    metafunc.parametrize("database_kind", marker.args, ids=list(marker.args), scope="module")


@pytest.fixture(scope="module")
def database_kind() -> DatabaseKind:
    """The database of a test that is not parametrized over them."""
    return "sqlite"


@pytest.fixture
def database_url(
    database_kind: DatabaseKind, tmp_path: Path, request: pytest.FixtureRequest
) -> str:
    """A fresh database for one test with the demo data already in it: an SQLite file or a
    PostgreSQL database of its own, copied from one seeded for the session (seeding hashes
    five passwords, copying does not)."""
    if database_kind == "postgres":
        template = request.getfixturevalue("postgres_seeded")
        server: PostgresServer = request.getfixturevalue("postgres_server")
        return server.create_database(template=template)
    path = tmp_path / "chat.db"
    shutil.copyfile(request.getfixturevalue("sqlite_seeded"), path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def sqlite_seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file holding the schema and the demo data, closed (no -wal left): a copy
    is a fresh seeded database."""
    path = tmp_path_factory.mktemp("sqlite-seeded") / "chat.db"
    asyncio.run(_seed_database(f"sqlite:///{path}"))
    return path


async def _seed_database(database_url: str) -> None:
    runtime = Runtime(replace(Settings(), database_url=database_url, sse_heartbeat_seconds=0))
    await runtime.start()
    await runtime.stop()  # disposes of its pool: nothing stays open


@pytest.fixture(scope="session")
def sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """The shared real server (`reflex run --env prod`, pages and API) on SQLite."""
    with running_backend(tmp_path_factory.mktemp("backend")) as backend:
        yield backend


@pytest.fixture(scope="session")
def postgres_backend(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[Backend]:
    """The shared real server's twin on PostgreSQL, for the API and stream tests that run on
    each database: backend-only (`reflex run --env prod --backend-only`), so no second
    production build of the pages; it seeds its empty database at start as the other does."""
    env = {"DATABASE_URL": postgres_server.create_database("backend")}
    workdir = tmp_path_factory.mktemp("backend-postgres")
    with running_backend(workdir, env, backend_only=True) as backend:
        yield backend


@pytest.fixture(scope="module")
def backend_process(database_kind: DatabaseKind, request: pytest.FixtureRequest) -> Backend:
    """The shared real server of this module's database (SQLite unless it runs on each)."""
    name = "postgres_backend" if database_kind == "postgres" else "sqlite_backend"
    backend: Backend = request.getfixturevalue(name)
    return backend


@pytest.fixture
def backend(backend_process: Backend) -> Iterator[Backend]:
    """The shared real backend; a test fails if the server logged an error meanwhile."""
    with no_errors_logged(backend_process):
        yield backend_process


@pytest.fixture
async def http(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    timeout = httpx.Timeout(10.0, read=30.0)
    async with httpx.AsyncClient(base_url=backend.url, timeout=timeout) as client:
        yield client


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    """A started in-process runtime on a fresh, seeded database (SQLite unless the test runs
    on each: `database_kind`), with no heartbeat: the tests drive sweeps themselves."""
    settings = replace(
        Settings(),
        database_url=database_url,
        sse_heartbeat_seconds=0,
        # Property tests search hundreds of times; the limit has a test of its own.
        rate_limit_searches_per_minute=100_000,
        rate_limit_searches_burst=10_000,
    )
    runtime = Runtime(settings)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium for one test module (sync Playwright: browser tests are sync).

    Per module, not per session: sync Playwright keeps an event loop running in this thread
    while it is open, which the async tests of other modules cannot share."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM_ARGS, chromium_path

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    from tests.redis_server import start_redis

    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_db(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's redis-server, emptied first: for tests of our Redis code."""
    redis_server.flush()
    client = aioredis.Redis(port=redis_server.port, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    from tests.postgres_server import remove_postgres, start_postgres

    server = start_postgres()
    try:
        yield server
    finally:
        remove_postgres(server)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The DATABASE_URL of a new, empty PostgreSQL database of this test's own."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def postgres_seeded(postgres_server: PostgresServer) -> str:
    """The URL of a PostgreSQL database holding the schema and the demo data, which nobody
    stays connected to: a template for `postgres_server.create_database(template=...)`."""
    url = postgres_server.create_database("seeded")
    asyncio.run(_seed_database(url))
    return url
