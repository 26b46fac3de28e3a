"""Removing a member from a tenant, end to end: `DELETE /api/members/{userId}`.

Removal is destructive, so the HTTP tests run on a private backend (backend only) with its
own database; a second process on the same database shows the removal reaching streams of
another process within one heartbeat. The in-process tests drive one real Runtime directly
to show the cases HTTP cannot isolate (a Reflex tab client, a demoted admin, the sweep).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, delete, select

from app.domain.errors import Forbidden
from app.domain.principal import Principal
from app.models import Membership, Role
from app.realtime.client import Client, ClientKind, CloseReason
from app.runtime import Runtime
from tests.backend import Backend, Stream, error_lines, open_stream, running_backend, start_backend

ACME, GLOBEX = 1, 2
NONEXISTENT_USER_ID = 987_654_321

pytestmark = pytest.mark.server


# -- a private backend: removals must not change the shared one's demo data ----------------


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with running_backend(tmp_path_factory.mktemp("members"), backend_only=True) as backend:
        yield backend


@pytest.fixture
def server(private: Backend) -> Iterator[Backend]:
    """The private backend; a test fails if it logged an error meanwhile."""
    private.mark_log()
    yield private
    _assert_no_errors(private)


@pytest.fixture
async def http(server: Backend) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10, read=30)) as c:
        yield c


def _assert_no_errors(backend: Backend) -> None:
    log = backend.log_since_mark()
    assert not error_lines(log), "the backend logged errors:\n" + log


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _user_ids(http: httpx.AsyncClient, token: str) -> dict[str, int]:
    response = await http.get("/api/members", headers=_auth(token))
    assert response.status_code == 200, response.text
    return {m["username"]: m["id"] for m in response.json()["items"]}


async def _next_of(stream: Stream, event_type: str, timeout: float = 5.0) -> dict[str, Any]:
    """The data of the next `event_type` event, failing on any other event in between."""
    event = await stream.next(timeout)
    assert event.event == event_type, (event.event, event.data)
    return json.loads(event.data)


async def _wait_presence(stream: Stream, user_id: int, status: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        event = await stream.next(max(0.01, deadline - time.monotonic()), presence=True)
        data = json.loads(event.data)
        if event.event == "presence:update" and (data["userId"], data["status"]) == (
            user_id,
            status,
        ):
            return


# -- who may remove whom -------------------------------------------------------------------


async def test_members_list_shows_the_callers_tenant_only(
    server: Backend, http: httpx.AsyncClient
) -> None:
    acme = (await http.get("/api/members", headers=_auth(server.token("bob")))).json()["items"]
    globex = (await http.get("/api/members", headers=_auth(server.token("dave")))).json()["items"]
    assert [(m["username"], m["role"]) for m in acme] == [
        ("alice", "admin"),
        ("bob", "member"),
        ("carol", "member"),
    ]
    assert [(m["username"], m["role"]) for m in globex] == [
        ("carol", "member"),
        ("dave", "admin"),
        ("erin", "member"),
    ]
    assert set(acme[0]) == {"id", "username", "displayName", "role", "joinedAt"}


async def test_a_member_who_is_not_admin_gets_403_and_nothing_changes(
    server: Backend, http: httpx.AsyncClient
) -> None:
    bob = server.token("bob")
    ids = await _user_ids(http, bob)
    response = await http.delete(f"/api/members/{ids['carol']}", headers=_auth(bob))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "carol" in await _user_ids(http, bob)


async def test_a_user_of_another_tenant_is_as_unknown_as_a_nonexistent_id(
    server: Backend, http: httpx.AsyncClient
) -> None:
    alice, dave = server.token("alice"), server.token("dave")
    dave_id = (await _user_ids(http, dave))["dave"]
    foreign = await http.delete(f"/api/members/{dave_id}", headers=_auth(alice))
    nonexistent = await http.delete(f"/api/members/{NONEXISTENT_USER_ID}", headers=_auth(alice))
    assert foreign.status_code == nonexistent.status_code == 404
    assert foreign.json() == nonexistent.json()
    assert foreign.json()["error"]["code"] == "not_found"
    # Dave is still Globex's admin, signed in and listed.
    assert "dave" in await _user_ids(http, dave)


async def test_an_admin_cannot_remove_themselves(server: Backend, http: httpx.AsyncClient) -> None:
    alice = server.token("alice")
    alice_id = (await _user_ids(http, alice))["alice"]
    response = await http.delete(f"/api/members/{alice_id}", headers=_auth(alice))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert (await http.get("/api/me", headers=_auth(alice))).status_code == 200


# -- what a removal does -------------------------------------------------------------------


async def test_removing_a_member_of_two_tenants_ends_that_tenant_only(
    server: Backend, http: httpx.AsyncClient
) -> None:
    """Carol leaves Globex: her Globex streams close (here at once, in another process
    within a heartbeat), she turns offline there, her Globex token and any way back into
    Globex are refused, what she wrote stays, no Globex event reaches her, and her Acme
    membership works as before."""
    dave, erin = server.token("dave"), server.token("erin")
    carol_globex = server.token("carol", tenant=GLOBEX)
    carol_acme = server.token("carol", tenant=ACME)
    alice = server.token("alice")
    ids = await _user_ids(http, dave)
    carol_id = ids["carol"]
    conversation = await http.post(
        "/api/conversations",
        headers=_auth(dave),
        json={"participantIds": [carol_id, ids["erin"]], "title": "Globex plans"},
    )
    assert conversation.status_code == 201, conversation.text
    conversation_id = conversation.json()["id"]
    written = await http.post(
        f"/api/conversations/{conversation_id}/messages",
        headers=_auth(carol_globex),
        json={"content": "carol was here"},
    )
    assert written.status_code == 201

    other = start_backend(server.workdir, backend_only=True)  # a second process, same database
    try:
        async with (
            httpx.AsyncClient(base_url=other.url, timeout=httpx.Timeout(10, read=30)) as far,
            open_stream(http, dave) as dave_stream,
            open_stream(http, carol_globex) as carol_in_globex,
            open_stream(http, carol_acme) as carol_in_acme,
            open_stream(far, carol_acme, params={"tenant": str(GLOBEX)}) as far_in_globex,
        ):
            assert far_in_globex.response.status_code == 200
            await _wait_presence(dave_stream, carol_id, "online", timeout=5)

            removed = await http.delete(f"/api/members/{carol_id}", headers=_auth(dave))
            assert removed.status_code == 204
            assert removed.content == b""

            assert await carol_in_globex.ended(timeout=2)
            # The other process learns it from the database at its next session sweep.
            assert await far_in_globex.ended(timeout=4)
            await _wait_presence(dave_stream, carol_id, "offline", timeout=5)

            # Globex keeps going; none of it reaches Carol's Acme stream, whose next event
            # is Acme's own.
            after = await http.post(
                f"/api/conversations/{conversation_id}/messages",
                headers=_auth(dave),
                json={"content": "after carol left"},
            )
            assert after.status_code == 201
            everyone = await http.post(
                "/api/notifications",
                headers=_auth(dave),
                json={"tenant": True, "title": "Globex all-hands"},
            )
            assert everyone.json()["created"] == 2  # dave and erin: Carol is not a member
            acme_id = (await _user_ids(http, alice))["carol"]
            await http.post(
                "/api/notifications",
                headers=_auth(alice),
                json={"userId": acme_id, "title": "still in Acme"},
            )
            assert (await _next_of(carol_in_acme, "notification:new"))["title"] == "still in Acme"

            # Every way back into Globex is closed, here and in the other process.
            for client in (http, far):
                me = await client.get("/api/me", headers=_auth(carol_globex))
                assert me.status_code == 401
                assert me.json()["error"]["code"] == "not_authenticated"
                switched = await client.get(
                    "/api/sse", params={"tenant": str(GLOBEX)}, headers=_auth(carol_acme)
                )
                assert switched.status_code == 403
    finally:
        other.stop()
        _assert_no_errors_since_start(other)

    sign_in = await http.post(
        "/api/auth/token",
        json={"username": "carol", "password": "carol-pass", "tenant": GLOBEX},
    )
    assert sign_in.status_code == 403
    again = await http.post("/api/auth/token", json={"username": "carol", "password": "carol-pass"})
    assert again.status_code == 200
    assert [m["tenantId"] for m in again.json()["user"]["memberships"]] == [ACME]
    assert (await http.get("/api/me", headers=_auth(carol_acme))).json()["tenantId"] == ACME

    # The tenant no longer lists her, cannot notify her, and keeps what she wrote.
    assert "carol" not in await _user_ids(http, dave)
    presence = (await http.get("/api/presence", headers=_auth(erin))).json()["items"]
    assert carol_id not in {p["userId"] for p in presence}
    notify = await http.post(
        "/api/notifications", headers=_auth(dave), json={"userId": carol_id, "title": "hi"}
    )
    assert notify.status_code == 404
    history = await http.get(f"/api/conversations/{conversation_id}/messages", headers=_auth(erin))
    assert "carol was here" in [m["content"] for m in history.json()["items"]]


async def test_removing_a_users_only_membership_signs_them_out_everywhere(
    server: Backend, http: httpx.AsyncClient
) -> None:
    dave, erin = server.token("dave"), server.token("erin")
    erin_id = (await _user_ids(http, dave))["erin"]
    async with open_stream(http, erin) as erin_stream:
        removed = await http.delete(f"/api/members/{erin_id}", headers=_auth(dave))
        assert removed.status_code == 204
        assert await erin_stream.ended(timeout=2)
    assert (await http.get("/api/me", headers=_auth(erin))).status_code == 401
    sign_in = await http.post("/api/auth/token", json={"username": "erin", "password": "erin-pass"})
    assert sign_in.status_code == 403
    assert sign_in.json()["error"]["code"] == "forbidden"
    # A second removal finds no member.
    again = await http.delete(f"/api/members/{erin_id}", headers=_auth(dave))
    assert again.status_code == 404


def _assert_no_errors_since_start(backend: Backend) -> None:
    log = backend.log_path.read_text(errors="replace")
    assert not error_lines(log), "the second backend logged errors:\n" + log


# -- in one process: tab clients, the sweep, a demoted admin -------------------------------


async def _sign_in(
    runtime: Runtime, username: str, tenant: int | None = None
) -> tuple[str, Principal]:
    grant = await runtime.accounts.sign_in(username, f"{username}-pass", "127.0.0.1", tenant)
    return grant.access_token, grant.principal


async def _client(
    runtime: Runtime, principal: Principal, tenant_id: int, kind: ClientKind
) -> Client:
    connection = await runtime.manager.connect(
        user_id=principal.user_id,
        tenant_id=tenant_id,
        kind=kind,
        types=frozenset({"notification:new"}),
        session_ref=principal.token_id,
    )
    return connection.client


async def test_removal_closes_the_users_streams_and_tabs_in_that_tenant_only(
    runtime: Runtime,
) -> None:
    _, dave = await _sign_in(runtime, "dave")
    globex_token, carol_globex = await _sign_in(runtime, "carol", GLOBEX)
    acme_token, carol_acme = await _sign_in(runtime, "carol", ACME)
    globex_stream = await _client(runtime, carol_globex, GLOBEX, ClientKind.STREAM)
    globex_tab = await _client(runtime, carol_globex, GLOBEX, ClientKind.TAB)
    switched_stream = await _client(runtime, carol_acme, GLOBEX, ClientKind.STREAM)  # ?tenant=2
    acme_tab = await _client(runtime, carol_acme, ACME, ClientKind.TAB)
    # Both tokens are in the 2-second cache, the Acme one still listing Globex.
    assert await runtime.accounts.principal_for_token(globex_token) is not None
    cached_acme = await runtime.accounts.principal_for_token(acme_token)
    assert cached_acme is not None and cached_acme.in_tenant(GLOBEX) is not None

    await runtime.members.remove(dave, carol_globex.user_id)

    for client in (globex_stream, globex_tab, switched_stream):
        assert client.close_reason is CloseReason.SESSION_ENDED
    assert not acme_tab.closed
    assert await runtime.accounts.principal_for_token(globex_token) is None
    acme = await runtime.accounts.principal_for_token(acme_token)
    assert acme is not None and acme.in_tenant(GLOBEX) is None


async def test_the_sweep_ends_sessions_of_a_membership_removed_by_another_process(
    runtime: Runtime,
) -> None:
    globex_token, carol_globex = await _sign_in(runtime, "carol", GLOBEX)
    _, carol_acme = await _sign_in(runtime, "carol", ACME)
    globex_stream = await _client(runtime, carol_globex, GLOBEX, ClientKind.STREAM)
    switched_stream = await _client(runtime, carol_acme, GLOBEX, ClientKind.STREAM)
    acme_stream = await _client(runtime, carol_acme, ACME, ClientKind.STREAM)
    assert await runtime.accounts.principal_for_token(globex_token) is not None  # cached
    # Only the database knows: the row is gone, the token itself was not revoked.
    with Session(runtime.db.engine) as session:
        session.exec(  # type: ignore[call-overload]
            delete(Membership)
            .where(col(Membership.user_id) == carol_globex.user_id)
            .where(col(Membership.tenant_id) == GLOBEX)
        )
        session.commit()

    assert await runtime.sessions.end_stale() == 2
    assert globex_stream.close_reason is CloseReason.SESSION_ENDED
    assert switched_stream.close_reason is CloseReason.SESSION_ENDED
    assert not acme_stream.closed
    assert await runtime.accounts.principal_for_token(globex_token) is None
    assert await runtime.sessions.end_stale() == 0


async def test_an_admin_demoted_meanwhile_cannot_remove_anyone(runtime: Runtime) -> None:
    """The role is checked again inside the removal's own transaction, not only in the
    (cached) principal: two admins removing each other cannot leave a tenant with none."""
    _, dave = await _sign_in(runtime, "dave")
    assert dave.is_admin
    with Session(runtime.db.engine) as session:
        row = session.exec(select(Membership).where(Membership.user_id == dave.user_id)).one()
        row.role = Role.MEMBER.value
        session.add(row)
        session.commit()
    _, erin = await _sign_in(runtime, "erin")
    with pytest.raises(Forbidden):
        await runtime.members.remove(dave, erin.user_id)
    members = await runtime.members.list_for(dave)
    assert "erin" in [m.username for m in members]
