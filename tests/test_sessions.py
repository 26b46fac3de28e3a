"""Token lifetimes: an expired or elsewhere-revoked token closes its streams within a sweep."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import Session

from app.domain.principal import Principal
from app.models import AuthToken
from app.realtime.client import Client, ClientKind, CloseReason
from app.runtime import Runtime
from app.timeutil import utcnow

# On SQLite and on PostgreSQL (tests/databases.py).
pytestmark = pytest.mark.databases("sqlite", "postgres")


async def _stream_for(runtime: Runtime, username: str) -> tuple[Principal, Client]:
    grant = await runtime.accounts.sign_in(username, f"{username}-pass", "127.0.0.1")
    principal = grant.principal
    connection = await runtime.manager.connect(
        user_id=principal.user_id,
        tenant_id=principal.tenant_id,
        kind=ClientKind.STREAM,
        types=frozenset({"notification:new"}),  # quiet: no presence news of the others
        session_ref=principal.token_id,
    )
    return principal, connection.client


def _edit_token(runtime: Runtime, token_id: int, **changes: object) -> None:
    with Session(runtime.db.engine) as session:
        token = session.get(AuthToken, token_id)
        assert token is not None
        for name, value in changes.items():
            setattr(token, name, value)
        session.add(token)
        session.commit()


async def test_an_expired_token_closes_its_stream_at_the_next_sweep(runtime: Runtime) -> None:
    principal, client = await _stream_for(runtime, "bob")
    _, bystander = await _stream_for(runtime, "bob")
    _edit_token(runtime, principal.token_id, expires_at=utcnow() - timedelta(seconds=1))
    waiting = asyncio.create_task(client.next_batch())
    assert await runtime.sessions.end_stale() == 1
    assert await asyncio.wait_for(waiting, 1) == []
    assert client.close_reason is CloseReason.SESSION_ENDED
    assert not bystander.closed


async def test_a_token_revoked_by_another_process_closes_its_stream(runtime: Runtime) -> None:
    principal, client = await _stream_for(runtime, "alice")
    # As if another worker handled the logout: only the database knows.
    _edit_token(runtime, principal.token_id, revoked_at=utcnow())
    assert await runtime.sessions.end_stale() == 1
    assert client.closed


async def test_sign_out_closes_the_stream_at_once(runtime: Runtime) -> None:
    principal, client = await _stream_for(runtime, "carol")
    await runtime.accounts.sign_out(principal)
    assert client.close_reason is CloseReason.SESSION_ENDED
    assert runtime.manager.diagnostics()["totalClients"] == 0


async def test_demo_data_is_seeded_once(runtime: Runtime) -> None:
    from app.domain.seed import seed_demo_data

    assert await runtime.db.run(seed_demo_data) is False
    grant = await runtime.accounts.sign_in("Dave", "dave-pass", "127.0.0.1")
    assert grant.principal.is_admin
