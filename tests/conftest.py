"""Shared fixtures. The project root goes on sys.path so `import app` works under plain pytest."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx
import pytest
import redis.asyncio as aioredis

from app.runtime import Runtime
from app.settings import Settings
from tests.backend import Backend, no_errors_logged, running_backend

if TYPE_CHECKING:  # imported where used, so that a run without them does not need them
    from playwright.sync_api import Browser

    from tests.postgres_server import PostgresServer
    from tests.redis_server import RedisServer

# Fixtures of their own modules: the seeded chat world, and started connection managers.
pytest_plugins = ["tests.seeded_chat", "tests.realtime_helpers"]


@pytest.fixture(scope="session")
def backend_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with running_backend(tmp_path_factory.mktemp("backend")) as backend:
        yield backend


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
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    """A started in-process runtime on a fresh, seeded SQLite file (no heartbeat: the tests
    drive sweeps themselves)."""
    settings = replace(
        Settings(),
        database_url=f"sqlite:///{tmp_path / 'chat.db'}",
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
