"""The PostgreSQL engine's settings, as a connection of the pool sees them, and times stored
as UTC whatever the server's own time zone."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
from sqlmodel import Session

from app.db import (
    BUSY_TIMEOUT_SECONDS,
    DB_THREADS,
    POOL_OVERFLOW,
    STATEMENT_TIMEOUT_SECONDS,
    make_engine,
)
from app.models import AuthToken
from app.runtime import Runtime
from app.settings import Settings
from tests.postgres_server import PostgresServer, database_name


def test_each_pooled_connection_bounds_its_waits_and_speaks_utc(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as connection:
            settings = {
                name: connection.exec_driver_sql(f"SHOW {name}").scalar()
                for name in ("lock_timeout", "statement_timeout", "TimeZone", "application_name")
            }
        assert settings == {
            "lock_timeout": f"{int(BUSY_TIMEOUT_SECONDS)}s",
            "statement_timeout": f"{int(STATEMENT_TIMEOUT_SECONDS)}s",
            "TimeZone": "UTC",
            "application_name": "chat",
        }
        assert engine.pool.size() == DB_THREADS  # type: ignore[attr-defined]  # a QueuePool
        assert engine.pool._max_overflow == POOL_OVERFLOW  # type: ignore[attr-defined]  # a QueuePool
    finally:
        engine.dispose()


def test_the_url_overrides_the_connection_defaults(postgres_url: str) -> None:
    engine = make_engine(f"{postgres_url}?application_name=chat-eu-1")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW application_name").scalar() == "chat-eu-1"
    finally:
        engine.dispose()


async def test_times_are_utc_on_a_server_in_another_time_zone(
    postgres_server: PostgresServer, postgres_seeded: str
) -> None:
    url = postgres_server.create_database(template=postgres_seeded)
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
        admin.execute(
            f"ALTER DATABASE \"{database_name(url)}\" SET timezone = 'Pacific/Kiritimati'"
        )
    runtime = Runtime(replace(Settings(), database_url=url, sse_heartbeat_seconds=0))
    await runtime.start()
    try:
        before = datetime.now(UTC)
        grant = await runtime.accounts.sign_in("bob", "bob-pass", "127.0.0.1", None)

        def stored_expiry(session: Session) -> datetime:
            token = session.get(AuthToken, grant.principal.token_id)
            assert token is not None
            return token.expires_at

        expires_at = (await runtime.db.run(stored_expiry)).replace(tzinfo=UTC)
        lifetime = timedelta(seconds=runtime.settings.token_ttl_seconds)
        assert (
            before + lifetime - timedelta(minutes=1)
            < expires_at
            < before + lifetime + timedelta(minutes=1)
        )
        # The token works: its expiry is compared in SQL with the current time.
        assert await runtime.accounts.principal_for_token(grant.access_token) is not None
    finally:
        await runtime.stop()
