"""Removing a member from a tenant, end to end: `DELETE /api/members/{userId}`.

Removal is destructive, so the HTTP tests run on a private backend (backend only) with its
own database; a second process on the same database shows the removal reaching streams of
another process within one heartbeat. The in-process tests drive one real Runtime directly
to show the cases HTTP cannot isolate (a Reflex tab client, a demoted admin, the sweep).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlmodel import Session, col, delete, select

from app.domain.errors import Forbidden
from app.domain.principal import Principal
from app.models import Membership, Role
from app.realtime.client import Client, ClientKind, CloseReason
from app.runtime import Runtime
from tests.backend import Backend, Stream, error_lines, open_stream, running_backend, start_backend
from tests.databases import DatabaseKind

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer

ACME, GLOBEX = 1, 2
NONEXISTENT_USER_ID = 987_654_321

# On SQLite and on PostgreSQL (tests/databases.py), the private backend too.
pytestmark = [pytest.mark.server, pytest.mark.databases("sqlite", "postgres")]


# -- a private backend: removals must not change the shared one's demo data ----------------


@pytest.fixture(scope="module")
def private(
    tmp_path_factory: pytest.TempPathFactory,
    database_kind: DatabaseKind,
    request: pytest.FixtureRequest,
) -> Iterator[Backend]:
    env = {}
    if database_kind == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        env["DATABASE_URL"] = server.create_database("members")
    workdir = tmp_path_factory.mktemp("members")
    with running_backend(workdir, env, backend_only=True) as backend:
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


@dataclass(frozen=True)
class CarolLeftGlobex:
    """What was seen around one removal: Dave removes Carol from Globex, with her streams
    open in both tenants, here and in a second process on the same database. Each test
    below holds one behaviour of it."""

    carol_id: int
    removed: httpx.Response
    here_ended: bool  # her Globex stream in this process, within 2 s
    far_ended: bool  # her Globex stream in the other process, within 4 s
    offline_seen: bool  # Dave's stream announced her offline
    carols_next_acme_event: tuple[str, str]  # its type and title
    globex_all_hands: httpx.Response
    globex_token: list[httpx.Response]  # /api/me with her Globex token, here and far
    switched_to_globex: list[httpx.Response]  # /api/sse?tenant=Globex with her Acme token
    globex_sign_in: httpx.Response
    plain_sign_in: httpx.Response
    acme_me: httpx.Response
    globex_members: set[str]
    globex_presence: set[int]
    notify_her: httpx.Response
    history: list[str]


@pytest.fixture(scope="module")
def carol_left_globex(private: Backend) -> CarolLeftGlobex:
    private.mark_log()
    removal = asyncio.run(_remove_carol_from_globex(private))
    _assert_no_errors(private)
    return removal


async def _saw_presence(stream: Stream, user_id: int, status: str, timeout: float) -> bool:
    try:
        await _wait_presence(stream, user_id, status, timeout)
    except TimeoutError:
        return False
    return True


async def _remove_carol_from_globex(server: Backend) -> CarolLeftGlobex:
    dave, erin = server.token("dave"), server.token("erin")
    carol_globex = server.token("carol", tenant=GLOBEX)
    carol_acme = server.token("carol", tenant=ACME)
    alice = server.token("alice")
    async with httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10, read=30)) as http:
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

        # A second process on the same database (its DATABASE_URL too).
        other = start_backend(server.workdir, server.extra_env, backend_only=True)
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
                here_ended = await carol_in_globex.ended(timeout=2)
                # The other process learns it from the database at its next session sweep.
                far_ended = await far_in_globex.ended(timeout=4)
                offline_seen = await _saw_presence(dave_stream, carol_id, "offline", timeout=5)

                # Globex keeps going; none of it may reach Carol's Acme stream, whose next
                # event must be Acme's own.
                after = await http.post(
                    f"/api/conversations/{conversation_id}/messages",
                    headers=_auth(dave),
                    json={"content": "after carol left"},
                )
                assert after.status_code == 201
                all_hands = await http.post(
                    "/api/notifications",
                    headers=_auth(dave),
                    json={"tenant": True, "title": "Globex all-hands"},
                )
                acme_id = (await _user_ids(http, alice))["carol"]
                await http.post(
                    "/api/notifications",
                    headers=_auth(alice),
                    json={"userId": acme_id, "title": "still in Acme"},
                )
                event = await carol_in_acme.next(5)
                next_acme_event = (event.event, json.loads(event.data)["title"])

                # Every way back into Globex, here and in the other process.
                globex_token = [
                    await client.get("/api/me", headers=_auth(carol_globex))
                    for client in (http, far)
                ]
                switched = [
                    await client.get(
                        "/api/sse", params={"tenant": str(GLOBEX)}, headers=_auth(carol_acme)
                    )
                    for client in (http, far)
                ]
        finally:
            other.stop()
            _assert_no_errors_since_start(other)

        globex_sign_in = await http.post(
            "/api/auth/token",
            json={"username": "carol", "password": "carol-pass", "tenant": GLOBEX},
        )
        plain_sign_in = await http.post(
            "/api/auth/token", json={"username": "carol", "password": "carol-pass"}
        )
        acme_me = await http.get("/api/me", headers=_auth(carol_acme))
        presence = (await http.get("/api/presence", headers=_auth(erin))).json()["items"]
        notify = await http.post(
            "/api/notifications", headers=_auth(dave), json={"userId": carol_id, "title": "hi"}
        )
        history = await http.get(
            f"/api/conversations/{conversation_id}/messages", headers=_auth(erin)
        )
        return CarolLeftGlobex(
            carol_id=carol_id,
            removed=removed,
            here_ended=here_ended,
            far_ended=far_ended,
            offline_seen=offline_seen,
            carols_next_acme_event=next_acme_event,
            globex_all_hands=all_hands,
            globex_token=globex_token,
            switched_to_globex=switched,
            globex_sign_in=globex_sign_in,
            plain_sign_in=plain_sign_in,
            acme_me=acme_me,
            globex_members=set(await _user_ids(http, dave)),
            globex_presence={p["userId"] for p in presence},
            notify_her=notify,
            history=[m["content"] for m in history.json()["items"]],
        )


def test_a_removal_answers_204_with_no_body(carol_left_globex: CarolLeftGlobex) -> None:
    assert carol_left_globex.removed.status_code == 204
    assert carol_left_globex.removed.content == b""


def test_a_removal_closes_the_removed_tenants_stream_at_once(
    carol_left_globex: CarolLeftGlobex,
) -> None:
    assert carol_left_globex.here_ended


def test_another_process_closes_the_removed_tenants_stream_at_its_next_sweep(
    carol_left_globex: CarolLeftGlobex,
) -> None:
    assert carol_left_globex.far_ended


def test_the_removed_member_turns_offline_in_that_tenant(
    carol_left_globex: CarolLeftGlobex,
) -> None:
    assert carol_left_globex.offline_seen


def test_no_event_of_the_tenant_left_reaches_the_members_other_tenant(
    carol_left_globex: CarolLeftGlobex,
) -> None:
    """Globex's message and all-hands notice came first: her Acme stream's next event is
    Acme's notification."""
    assert carol_left_globex.carols_next_acme_event == ("notification:new", "still in Acme")


def test_a_tenant_wide_notice_after_the_removal_skips_the_removed_member(
    carol_left_globex: CarolLeftGlobex,
) -> None:
    assert carol_left_globex.globex_all_hands.json()["created"] == 2  # dave and erin


def test_the_removed_tenants_token_is_refused_in_every_process(
    carol_left_globex: CarolLeftGlobex,
) -> None:
    for me in carol_left_globex.globex_token:
        assert me.status_code == 401
        assert me.json()["error"]["code"] == "not_authenticated"


def test_the_other_tenants_token_cannot_open_a_stream_in_the_removed_tenant(
    carol_left_globex: CarolLeftGlobex,
) -> None:
    assert [r.status_code for r in carol_left_globex.switched_to_globex] == [403, 403]


def test_signing_in_to_the_removed_tenant_is_refused(carol_left_globex: CarolLeftGlobex) -> None:
    assert carol_left_globex.globex_sign_in.status_code == 403


def test_the_membership_left_works_as_before(carol_left_globex: CarolLeftGlobex) -> None:
    signed_in = carol_left_globex.plain_sign_in
    assert signed_in.status_code == 200
    assert [m["tenantId"] for m in signed_in.json()["user"]["memberships"]] == [ACME]
    assert carol_left_globex.acme_me.json()["tenantId"] == ACME


def test_the_tenant_no_longer_lists_the_removed_member_nor_their_presence(
    carol_left_globex: CarolLeftGlobex,
) -> None:
    assert "carol" not in carol_left_globex.globex_members
    assert carol_left_globex.carol_id not in carol_left_globex.globex_presence


def test_the_tenant_cannot_notify_the_removed_member(carol_left_globex: CarolLeftGlobex) -> None:
    assert carol_left_globex.notify_her.status_code == 404


def test_what_the_removed_member_wrote_stays(carol_left_globex: CarolLeftGlobex) -> None:
    assert "carol was here" in carol_left_globex.history


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
        session.exec(
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
