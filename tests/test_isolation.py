"""Tenant isolation, generated from the route table: one tenant's data never reaches another.

`ROUTES` says how to call every route the FastAPI app registers; a test fails when the app
and the table disagree, so a new route cannot be forgotten. From the table come, per route:

- foreign ids: Acme users (bob; alice, Acme's admin; carol, who is also in Globex) naming
  Globex's conversation, message, notification or users get exactly the answer a
  nonexistent id gets (404, or 403 where only admins may ask), never a 2xx or a 5xx;
- routes that name no id answer the Acme caller with Acme data only, even with `?tenant=2`;
- no token, a garbage or malformed one, a revoked one (logout), one only in `?access_token=`
  (accepted by /api/sse alone), an expired one and a removed member's: 401 with the JSON
  error; asking for a tenant you are not a member of: 403;
- every response body is checked for Globex data (a marker string in every Globex text,
  Globex-only user ids, conversation ids and tenant ids).

Meanwhile streams of every Acme user (carol twice: her Acme token, and her Globex token
with `?tenant=1`) collect every event; the last test asserts none of them carried Globex
data, while a Globex stream received the Globex events (so the absence means something).

All of it runs once on SQLite and once on PostgreSQL (the shared server's twin).

Expired tokens and removed members need their own servers (a 2-second token lifetime; a
removal that must not change the shared server's demo data): two private backend-only
processes, started together.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from app.api import build_api
from tests.backend import Backend, free_port
from tests.databases import DatabaseKind
from tests.wire import payload

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer


# Every test that reaches a server runs on SQLite and on PostgreSQL (tests/databases.py).
pytestmark = [pytest.mark.server, pytest.mark.databases("sqlite", "postgres")]

ACME, GLOBEX = 1, 2
GLOBEX_ONLY_USERS = ("dave", "erin")
NOWHERE_ID = 987_654_321  # a valid id that names nothing
EVENT_TIMEOUT = 10.0
GLOBEX_CONTROL = "erin (Globex control)"  # the stream that must see Globex events


# -- the world the cases run in ------------------------------------------------------------


@dataclass(frozen=True)
class Ids:
    """The ids a request can name: one of each kind."""

    conversation: int
    message: int
    notification: int
    user: int


NOWHERE = Ids(NOWHERE_ID, NOWHERE_ID, NOWHERE_ID, NOWHERE_ID)


@dataclass
class World:
    backend: Backend
    tokens: dict[str, str]  # actor name ("bob", "carol@acme", ...) -> token
    user_ids: dict[str, int]  # username -> id
    acme_team: int  # a conversation every Acme actor takes part in
    marker: str  # in every Globex text this module writes
    globex: Ids = NOWHERE

    @property
    def globex_only_user_ids(self) -> set[int]:
        return {self.user_ids[name] for name in GLOBEX_ONLY_USERS}


ACTOR_SIGN_INS: dict[str, tuple[str, int]] = {
    "alice": ("alice", ACME),
    "bob": ("bob", ACME),
    "carol@acme": ("carol", ACME),
    "carol@globex": ("carol", GLOBEX),
    "dave": ("dave", GLOBEX),
    "erin": ("erin", GLOBEX),
}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in_world(backend: Backend, client: httpx.Client) -> World:
    tokens = {
        actor: backend.token(user, tenant) for actor, (user, tenant) in ACTOR_SIGN_INS.items()
    }
    user_ids: dict[str, int] = {}
    for admin in ("alice", "dave"):
        members = client.get("/api/members", headers=_bearer(tokens[admin]))
        assert members.status_code == 200, members.text
        user_ids.update({m["username"]: m["id"] for m in members.json()["items"]})
    listing = client.get("/api/conversations", headers=_bearer(tokens["bob"])).json()["items"]
    acme_team = next(c["id"] for c in listing if c["title"] == "Acme team")
    return World(backend, tokens, user_ids, acme_team, marker=f"GLOBEX-ONLY-{uuid.uuid4().hex}")


def create_globex_data(world: World, client: httpx.Client) -> None:
    """A Globex conversation (dave, carol, erin: started by dave with carol, erin added,
    then renamed, so every `chat:conversation` action but "removed" happens in Globex), a
    message carol wrote there, and a notification each for carol and erin: every text
    carries the world's marker."""
    dave = _bearer(world.tokens["dave"])
    created = client.post(
        "/api/conversations",
        headers=dave,
        json={"participantIds": [world.user_ids["carol"]], "title": f"{world.marker} draft"},
    )
    assert created.status_code == 201, created.text
    conversation_id = created.json()["id"]
    added = client.post(
        f"/api/conversations/{conversation_id}/participants",
        headers=dave,
        json={"userIds": [world.user_ids["erin"]]},
    )
    assert added.status_code == 200, added.text
    renamed = client.patch(
        f"/api/conversations/{conversation_id}",
        headers=_bearer(world.tokens["erin"]),
        json={"title": f"{world.marker} plans"},
    )
    assert renamed.status_code == 200, renamed.text
    message = client.post(
        f"/api/conversations/{conversation_id}/messages",
        headers=_bearer(world.tokens["carol@globex"]),
        json={"content": f"{world.marker} message"},
    )
    assert message.status_code == 201, message.text
    notification_ids = []
    for username in ("carol", "erin"):
        notified = client.post(
            "/api/notifications",
            headers=dave,
            json={"userId": world.user_ids[username], "title": f"{world.marker} for {username}"},
        )
        assert notified.status_code == 201, notified.text
        notification_ids.append(notified.json()["ids"][0])
    world.globex = Ids(
        conversation=conversation_id,
        message=message.json()["id"],
        notification=notification_ids[0],  # carol's: she is an actor of the foreign cases
        user=world.user_ids["dave"],
    )


# -- looking for Globex data ---------------------------------------------------------------


def leaks(value: Any, world: World) -> list[str]:
    """Where Globex data shows in a JSON value (a response body or an event's data)."""
    found: list[str] = []

    def walk(item: Any, where: str) -> None:
        if isinstance(item, str):
            if world.marker in item:
                found.append(f"{where}: {item[:80]!r}")
        elif isinstance(item, list):
            for index, element in enumerate(item):
                walk(element, f"{where}[{index}]")
        elif isinstance(item, dict):
            for key, element in item.items():
                at = f"{where}.{key}"
                if key == "memberships":
                    continue  # the caller's own list of tenants, not any tenant's data
                if isinstance(element, int):
                    if key in {"userId", "senderId"} and element in world.globex_only_user_ids:
                        found.append(f"{at} = {element} (a Globex user)")
                    if key == "conversationId" and element == world.globex.conversation:
                        found.append(f"{at} = {element} (the Globex conversation)")
                    if key == "tenantId" and element == GLOBEX:
                        found.append(f"{at} = {element} (Globex)")
                if key == "username" and element in GLOBEX_ONLY_USERS:
                    found.append(f"{at} = {element!r} (a Globex user)")
                if key == "clientsByUser" and isinstance(element, dict):
                    foreign = {str(u) for u in world.globex_only_user_ids} & set(element)
                    if foreign:
                        found.append(f"{at} has Globex users {sorted(foreign)}")
                if (
                    key == "clientsByTenant"
                    and isinstance(element, dict)
                    and set(element) - {str(ACME)}
                ):
                    found.append(f"{at} = {element} (other tenants)")
                walk(element, at)

    walk(value, "$")
    return found


def body_text(response: httpx.Response) -> str:
    try:
        return response.text
    except httpx.ResponseNotRead:  # an event stream, closed unread by `send`
        return ""


def assert_no_leak(response: httpx.Response, world: World) -> None:
    text = body_text(response)
    assert world.marker not in text, f"Globex data in {response.request.url}: {text[:300]}"
    if response.headers.get("content-type", "").startswith("application/json") and text:
        found = leaks(response.json(), world)
        assert not found, f"Globex data in {response.request.url}: {found}"


# -- how to call each route ----------------------------------------------------------------


class Access(Enum):
    BEARER = "bearer"  # Authorization: Bearer only
    STREAM = "stream"  # /api/sse: the header, ?access_token= or the session cookie
    SIGN_IN = "sign-in"  # issues tokens; takes a password
    PUBLIC = "public"  # no caller, no tenant data (docs, dropping a browser cookie)
    UNKNOWN = "unknown"  # the catch-all: a JSON 404 for any path the API does not have


@dataclass(frozen=True)
class Call:
    path_params: dict[str, int | str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None


Builder = Callable[[World, Ids], Call]


@dataclass(frozen=True)
class Route:
    access: Access
    # Requests naming ids of the given kinds: sent with Globex's ids and with nonexistent
    # ones, they must get the same answer.
    foreign: tuple[Builder, ...] = ()
    # For routes that name no id: a real request whose answer must hold Acme data only.
    scoped: Builder | None = None
    scoped_actor: str = "carol@acme"
    scoped_status: int = 200
    admin_only: bool = False  # non-admins get 403 before any id is looked at
    spends_token: bool = False  # the request revokes the token it is sent with

    def request(self, world: World) -> Call:
        """A well-formed request naming nothing that exists (for the 401 cases)."""
        if self.foreign:
            return self.foreign[0](world, NOWHERE)
        if self.scoped is not None:
            return self.scoped(world, NOWHERE)
        return Call()


def _no_ids(_: World, __: Ids) -> Call:
    return Call()


def _conversation(extra: Callable[[World, Ids], dict[str, Any]] | None = None) -> Builder:
    def build(world: World, ids: Ids) -> Call:
        body = extra(world, ids) if extra is not None else None
        return Call(path_params={"conversation_id": ids.conversation}, json=body)

    return build


def _message(body: dict[str, Any] | None, *, own_conversation: bool = False) -> Builder:
    def build(world: World, ids: Ids) -> Call:
        conversation = world.acme_team if own_conversation else ids.conversation
        return Call(
            path_params={"conversation_id": conversation, "message_id": ids.message}, json=body
        )

    return build


BEARER_NO_IDS = Route(Access.BEARER, scoped=_no_ids)
CATCH_ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/openapi.json"): Route(Access.PUBLIC),
    ("HEAD", "/api/openapi.json"): Route(Access.PUBLIC),
    ("GET", "/api/docs"): Route(Access.PUBLIC),
    ("HEAD", "/api/docs"): Route(Access.PUBLIC),
    ("POST", "/api/auth/token"): Route(Access.SIGN_IN),
    ("POST", "/api/auth/session"): Route(Access.BEARER, scoped=_no_ids, scoped_status=204),
    # Drops the browser's session cookie (and revokes its token if any): no caller needed.
    ("DELETE", "/api/auth/session"): Route(Access.PUBLIC),
    ("POST", "/api/auth/logout"): Route(
        Access.BEARER, scoped=_no_ids, scoped_status=204, spends_token=True
    ),
    ("GET", "/api/me"): BEARER_NO_IDS,
    ("GET", "/api/sse"): Route(Access.STREAM),
    ("GET", "/api/sse/diagnostics"): Route(Access.BEARER, scoped=_no_ids, scoped_actor="alice"),
    ("GET", "/api/notifications"): BEARER_NO_IDS,
    ("POST", "/api/notifications"): Route(
        Access.BEARER,
        foreign=(lambda w, ids: Call(json={"userId": ids.user, "title": "isolation probe"}),),
        scoped=lambda w, ids: Call(json={"tenant": True, "title": "isolation: all of Acme"}),
        scoped_actor="alice",
        scoped_status=201,
        admin_only=True,
    ),
    ("POST", "/api/notifications/read-all"): BEARER_NO_IDS,
    ("POST", "/api/notifications/{notification_id}/read"): Route(
        Access.BEARER,
        foreign=(lambda w, ids: Call(path_params={"notification_id": ids.notification}),),
    ),
    ("GET", "/api/conversations"): BEARER_NO_IDS,
    ("POST", "/api/conversations"): Route(
        Access.BEARER,
        foreign=(
            lambda w, ids: Call(json={"participantIds": [ids.user]}),
            lambda w, ids: Call(
                json={"participantIds": [w.user_ids["bob"], ids.user], "title": "isolation"}
            ),
        ),
    ),
    ("GET", "/api/conversations/{conversation_id}"): Route(
        Access.BEARER, foreign=(_conversation(),)
    ),
    ("PATCH", "/api/conversations/{conversation_id}"): Route(
        Access.BEARER, foreign=(_conversation(lambda w, ids: {"title": "isolation probe"}),)
    ),
    ("POST", "/api/conversations/{conversation_id}/participants"): Route(
        Access.BEARER,
        foreign=(
            _conversation(lambda w, ids: {"userIds": [w.user_ids["bob"]]}),
            # Your own conversation, joined by another tenant's user.
            lambda w, ids: Call(
                path_params={"conversation_id": w.acme_team}, json={"userIds": [ids.user]}
            ),
        ),
    ),
    ("DELETE", "/api/conversations/{conversation_id}/participants/{user_id}"): Route(
        Access.BEARER,
        foreign=(
            lambda w, ids: Call(
                path_params={"conversation_id": ids.conversation, "user_id": ids.user}
            ),
            # Your own conversation, naming another tenant's user.
            lambda w, ids: Call(path_params={"conversation_id": w.acme_team, "user_id": ids.user}),
        ),
    ),
    ("GET", "/api/conversations/{conversation_id}/messages"): Route(
        Access.BEARER,
        foreign=(
            _conversation(),
            # Your own conversation, paged from another tenant's message.
            lambda w, ids: Call(
                path_params={"conversation_id": w.acme_team}, params={"before": str(ids.message)}
            ),
        ),
    ),
    ("POST", "/api/conversations/{conversation_id}/messages"): Route(
        Access.BEARER, foreign=(_conversation(lambda w, ids: {"content": "isolation probe"}),)
    ),
    ("POST", "/api/conversations/{conversation_id}/typing"): Route(
        Access.BEARER, foreign=(_conversation(lambda w, ids: {"isTyping": True}),)
    ),
    ("POST", "/api/conversations/{conversation_id}/read"): Route(
        Access.BEARER,
        foreign=(
            _conversation(),
            # Your own conversation, read up to another tenant's message.
            lambda w, ids: Call(
                path_params={"conversation_id": w.acme_team}, json={"messageId": ids.message}
            ),
        ),
    ),
    **{
        (method, "/api/conversations/{conversation_id}/messages/{message_id}"): Route(
            Access.BEARER,
            foreign=(
                _message(body),
                # Your own conversation, naming another tenant's message (carol's, for her).
                _message(body, own_conversation=True),
            ),
        )
        for method, body in (("PATCH", {"content": "isolation probe"}), ("DELETE", None))
    },
    ("GET", "/api/presence"): BEARER_NO_IDS,
    ("PUT", "/api/presence"): Route(
        Access.BEARER, scoped=lambda w, ids: Call(json={"status": "online"})
    ),
    ("POST", "/api/presence/activity"): Route(Access.BEARER, scoped=_no_ids, scoped_status=204),
    ("GET", "/api/members"): BEARER_NO_IDS,
    ("DELETE", "/api/members/{user_id}"): Route(
        Access.BEARER,
        foreign=(lambda w, ids: Call(path_params={"user_id": ids.user}),),
        admin_only=True,
    ),
    # The exact words of the Globex message: a leak would show the marker in a snippet.
    ("GET", "/api/search"): Route(
        Access.BEARER, scoped=lambda w, ids: Call(params={"q": w.marker})
    ),
    **{(method, "/api/{path:path}"): Route(Access.UNKNOWN) for method in CATCH_ALL_METHODS},
}

# Routes of the FastAPI app outside /api: declared here with the reason they hold no tenant
# data, so that they too cannot appear unnoticed.
OUTSIDE_API: dict[tuple[str, str], str] = {
    ("GET", "/docs/oauth2-redirect"): "Swagger UI's static OAuth2 redirect page",
    ("HEAD", "/docs/oauth2-redirect"): "Swagger UI's static OAuth2 redirect page",
    ("GET", "/metrics"): "process-wide Prometheus figures for operators (test_metrics)",
    # No auth: a public static file, the same for everyone (tests/test_client_script.py).
    ("GET", "/realtime-client.js"): "the JavaScript client kit, a public static file",
    ("HEAD", "/realtime-client.js"): "the JavaScript client kit, a public static file",
}


def app_routes() -> set[tuple[str, str]]:
    """Every (method, path) the FastAPI app registers, included routers flattened."""
    api = build_api()
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers were kept as such
        routes: Any = api.routes
    else:
        routes = iter_route_contexts(api.routes)
    return {
        (method, route.path)
        for route in routes
        for method in (getattr(route, "methods", None) or ())
    }


def test_the_route_table_names_every_route_of_the_app_and_no_other() -> None:
    registered = app_routes()
    declared = set(ROUTES) | set(OUTSIDE_API)
    missing = sorted(registered - declared)
    stale = sorted(declared - registered)
    assert not missing, f"routes with no isolation case: add them to ROUTES: {missing}"
    assert not stale, f"ROUTES names routes the app does not have: {stale}"
    untested = [
        key
        for key, route in ROUTES.items()
        if route.access is Access.BEARER and not route.foreign and route.scoped is None
    ]
    assert not untested, f"give these a foreign or a scoped request: {untested}"


# -- sending -------------------------------------------------------------------------------


def send(
    client: httpx.Client,
    method: str,
    path: str,
    call: Call,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    """One request; an event stream is closed as soon as its headers arrive."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    url = path.replace("{path:path}", "no-such-endpoint").format(**call.path_params)
    try:
        query = {**call.params, **(params or {})}
        with client.stream(
            method, url, params=query, json=call.json, headers=all_headers
        ) as response:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                response.read()
    finally:
        # POST /api/auth/session sets a session cookie, which /api/sse rightly accepts: each
        # case must authenticate with exactly what it sends.
        client.cookies.clear()
    return response


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, (response.request.url, response.text)
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response.headers["www-authenticate"] == "Bearer"


def assert_json_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.request.url, response.text)
    error = response.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)


# -- streams held open for the whole module ------------------------------------------------


class StreamWatch:
    """One /api/sse consumer read in its own thread for the whole module, so it sees every
    event the module's tests cause. Pings (every second under TEST_ENV) let it notice a stop."""

    def __init__(self, url: str, token: str, params: dict[str, str] | None = None) -> None:
        self.url = url
        self.token = token
        self.params = params or {}
        self.events: list[ServerSentEvent] = []
        self.status: int | None = None
        self.failure: BaseException | None = None
        self.finished = False
        self._changed = threading.Condition()
        self._opened = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_open(self, timeout: float = EVENT_TIMEOUT) -> None:
        assert self._opened.wait(timeout), "stream did not open"
        assert self.status == 200 and self.failure is None, (self.status, self.failure)

    def _read(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.url, timeout=httpx.Timeout(10, read=15)) as client,
                connect_sse(
                    client, "GET", "/api/sse", params=self.params, headers=_bearer(self.token)
                ) as source,
            ):
                self.status = source.response.status_code
                self._opened.set()
                for event in source.iter_sse():
                    if self._stop.is_set():
                        return
                    with self._changed:
                        self.events.append(event)
                        self._changed.notify_all()
        except BaseException as exc:  # noqa: BLE001 - reported by the tests, not lost in the thread
            self.failure = exc
        finally:
            self._opened.set()
            with self._changed:
                self.finished = True
                self._changed.notify_all()

    def wait_for(
        self, predicate: Callable[[ServerSentEvent], bool], timeout: float = EVENT_TIMEOUT
    ) -> ServerSentEvent:
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                remaining = deadline - time.monotonic()
                assert not self.finished, f"stream ended early: {self.failure!r}"
                assert remaining > 0, "the awaited event did not arrive in time"
                self._changed.wait(remaining)

    def stop(self) -> None:
        """Ask the reader to stop at its next event (a ping at the latest); `join` waits."""
        self._stop.set()

    def join(self) -> None:
        self._thread.join(timeout=5)

    def data_events(self) -> list[tuple[ServerSentEvent, Any]]:
        with self._changed:
            return [(e, json.loads(e.data)) for e in self.events if e.data and e.event != "ping"]


def _is_notification(title: str) -> Callable[[ServerSentEvent], bool]:
    def matches(event: ServerSentEvent) -> bool:
        return event.event == "notification:new" and json.loads(event.data)["title"] == title

    return matches


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(backend_process: Backend) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=backend_process.url, timeout=httpx.Timeout(10, read=30)) as c:
        yield c


@pytest.fixture(scope="module")
def acme_watchers(
    backend_process: Backend, client: httpx.Client
) -> Iterator[tuple[World, dict[str, StreamWatch]]]:
    """The shared server's world, with streams of every Acme user (and a Globex control)
    opened BEFORE any Globex data is written."""
    world = sign_in_world(backend_process, client)
    url = backend_process.url
    watchers = {
        "alice": StreamWatch(url, world.tokens["alice"]),
        "bob": StreamWatch(url, world.tokens["bob"]),
        "carol@acme": StreamWatch(url, world.tokens["carol@acme"]),
        "carol@globex?tenant=1": StreamWatch(url, world.tokens["carol@globex"], {"tenant": "1"}),
        GLOBEX_CONTROL: StreamWatch(url, world.tokens["erin"]),
    }
    for watcher in watchers.values():
        watcher.start()
    try:
        for watcher in watchers.values():
            watcher.wait_open()
        create_globex_data(world, client)
        yield world, watchers
    finally:
        for watcher in watchers.values():
            watcher.stop()
        for watcher in watchers.values():
            watcher.join()


@pytest.fixture(scope="module")
def world(acme_watchers: tuple[World, dict[str, StreamWatch]]) -> World:
    return acme_watchers[0]


@dataclass
class PrivateServers:
    expired: Backend  # TOKEN_TTL_SECONDS=2
    expired_token: str
    removed: Backend  # carol was removed from Globex here
    removed_world: World


def _start_together(*backends: Backend) -> None:
    with ThreadPoolExecutor(len(backends)) as pool:
        for started in [pool.submit(b.start) for b in backends]:
            started.result()


@pytest.fixture(scope="module")
def private(
    tmp_path_factory: pytest.TempPathFactory,
    database_kind: DatabaseKind,
    request: pytest.FixtureRequest,
) -> Iterator[PrivateServers]:
    def backend(name: str, env: dict[str, str]) -> Backend:
        port = free_port()
        if database_kind == "postgres":
            server: PostgresServer = request.getfixturevalue("postgres_server")
            env = {**env, "DATABASE_URL": server.create_database(name)}
        return Backend(
            url=f"http://127.0.0.1:{port}",
            port=port,
            workdir=tmp_path_factory.mktemp(name),
            extra_env=env,
            backend_only=True,
        )

    expired = backend("expired", {"TOKEN_TTL_SECONDS": "2"})
    removed = backend("removed", {})
    _start_together(expired, removed)
    try:
        yield PrivateServers(
            expired, _expired_token(expired), removed, _world_with_carol_removed(removed)
        )
    finally:
        expired.stop()
        removed.stop()


def _expired_token(backend: Backend) -> str:
    token = backend.token("bob")
    with httpx.Client(base_url=backend.url, timeout=10) as c:
        assert c.get("/api/me", headers=_bearer(token)).status_code == 200
        deadline = time.monotonic() + 15
        # The token's own lifetime is the clock here: wait until the server says it ended.
        while c.get("/api/me", headers=_bearer(token)).status_code != 401:
            assert time.monotonic() < deadline, "a 2-second token did not expire"
            time.sleep(0.25)
    return token


def _world_with_carol_removed(backend: Backend) -> World:
    with httpx.Client(base_url=backend.url, timeout=10) as c:
        world = sign_in_world(backend, c)
        create_globex_data(world, c)
        removed = c.delete(
            f"/api/members/{world.user_ids['carol']}", headers=_bearer(world.tokens["dave"])
        )
        assert removed.status_code == 204, removed.text
    return world


# -- the cases, generated from the table ---------------------------------------------------

AUTH_ROUTES = [
    key for key, route in ROUTES.items() if route.access in (Access.BEARER, Access.STREAM)
]
FOREIGN_CASES = [
    pytest.param(method, path, index, actor, id=f"{method} {path} #{index} as {actor}")
    for (method, path), route in ROUTES.items()
    for index in range(len(route.foreign))
    for actor in ("bob", "carol@acme", "alice")
]
SCOPED_CASES = [
    pytest.param(
        method, path, tenant_param, id=f"{method} {path}{' ?tenant=2' if tenant_param else ''}"
    )
    for (method, path), route in ROUTES.items()
    if route.scoped is not None
    for tenant_param in (False, True)
]
BAD_TOKENS = ("none", "garbage", "not-bearer", "revoked", "query-only")


def _route_params(keys: list[tuple[str, str]]) -> list[Any]:
    return [pytest.param(method, path, id=f"{method} {path}") for method, path in keys]


@pytest.mark.parametrize("method,path,index,actor", FOREIGN_CASES)
def test_globex_ids_get_the_answer_of_nonexistent_ids(
    backend: Backend,
    client: httpx.Client,
    world: World,
    method: str,
    path: str,
    index: int,
    actor: str,
) -> None:
    route = ROUTES[(method, path)]
    build = route.foreign[index]
    token = world.tokens[actor]
    foreign = send(client, method, path, build(world, world.globex), token=token)
    nowhere = send(client, method, path, build(world, NOWHERE), token=token)
    expected = 403 if route.admin_only and actor != "alice" else 404
    assert_json_error(foreign, expected)
    assert (foreign.status_code, foreign.json()) == (nowhere.status_code, nowhere.json())
    assert_no_leak(foreign, world)


@pytest.mark.parametrize("method,path,tenant_param", SCOPED_CASES)
def test_routes_without_ids_answer_with_the_callers_tenant_only(
    backend: Backend, client: httpx.Client, world: World, method: str, path: str, tenant_param: bool
) -> None:
    route = ROUTES[(method, path)]
    assert route.scoped is not None
    user, tenant = ACTOR_SIGN_INS[route.scoped_actor]
    token = backend.token(user, tenant) if route.spends_token else world.tokens[route.scoped_actor]
    # REST takes the tenant from the token alone: a `tenant` parameter changes nothing.
    extra = {"tenant": str(GLOBEX)} if tenant_param else None
    response = send(client, method, path, route.scoped(world, NOWHERE), token=token, params=extra)
    assert response.status_code == route.scoped_status, response.text
    assert_no_leak(response, world)
    if path == "/api/notifications" and method == "POST":
        assert response.json()["created"] == 3  # alice, bob, carol: no Globex member


@pytest.mark.parametrize("method,path", _route_params(AUTH_ROUTES))
@pytest.mark.parametrize("bad", BAD_TOKENS)
def test_a_missing_bad_or_revoked_token_gets_401(
    backend: Backend,
    client: httpx.Client,
    world: World,
    revoked_token: str,
    query_token: str,
    method: str,
    path: str,
    bad: str,
) -> None:
    route = ROUTES[(method, path)]
    call = route.request(world)
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    if bad == "garbage":
        headers["Authorization"] = "Bearer not-a-token-anyone-issued"
    elif bad == "not-bearer":
        headers["Authorization"] = f"Basic {query_token}"
    elif bad == "revoked":
        headers["Authorization"] = f"Bearer {revoked_token}"
    elif bad == "query-only":
        params["access_token"] = query_token
    response = send(client, method, path, call, headers=headers, params=params)
    if bad == "query-only" and route.access is Access.STREAM:
        # The one route an EventSource (which cannot set headers) must reach.
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return
    assert_unauthenticated(response)
    assert_no_leak(response, world)


@pytest.fixture(scope="module")
def revoked_token(backend_process: Backend, client: httpx.Client) -> str:
    token = backend_process.token("bob")
    assert client.post("/api/auth/logout", headers=_bearer(token)).status_code == 204
    return token


@pytest.fixture(scope="module")
def query_token(backend_process: Backend) -> str:
    # Its own token: were a route to wrongly accept it, no other case would be affected.
    return backend_process.token("bob")


@pytest.mark.parametrize("method,path", _route_params(AUTH_ROUTES))
def test_an_expired_token_gets_401(private: PrivateServers, method: str, path: str) -> None:
    route = ROUTES[(method, path)]
    with httpx.Client(base_url=private.expired.url, timeout=10) as c:
        call = route.request(private.removed_world)
        response = send(c, method, path, call, token=private.expired_token)
    assert_unauthenticated(response)


@pytest.mark.parametrize("method,path", _route_params(AUTH_ROUTES))
def test_a_removed_members_token_for_that_tenant_gets_401(
    private: PrivateServers, method: str, path: str
) -> None:
    world = private.removed_world
    route = ROUTES[(method, path)]
    with httpx.Client(base_url=private.removed.url, timeout=10) as c:
        response = send(c, method, path, route.request(world), token=world.tokens["carol@globex"])
    assert_unauthenticated(response)
    assert_no_leak(response, world)


@pytest.mark.parametrize(
    "method,path,index",
    [
        pytest.param(method, path, index, id=f"{method} {path} #{index}")
        for (method, path), route in ROUTES.items()
        for index in range(len(route.foreign))
    ],
)
def test_a_removed_member_naming_the_old_tenants_ids_gets_what_nonexistent_ids_get(
    private: PrivateServers, method: str, path: str, index: int
) -> None:
    """Carol, removed from Globex, still signed in to Acme, naming the conversation she was
    in, the message she wrote and the notification she got there."""
    world = private.removed_world
    route = ROUTES[(method, path)]
    token = world.tokens["carol@acme"]
    with httpx.Client(base_url=private.removed.url, timeout=10) as c:
        foreign = send(c, method, path, route.foreign[index](world, world.globex), token=token)
        nowhere = send(c, method, path, route.foreign[index](world, NOWHERE), token=token)
    assert_json_error(foreign, 403 if route.admin_only else 404)
    assert (foreign.status_code, foreign.json()) == (nowhere.status_code, nowhere.json())
    assert_no_leak(foreign, world)


def test_a_removed_member_cannot_get_back_into_the_tenant(private: PrivateServers) -> None:
    world = private.removed_world
    with httpx.Client(base_url=private.removed.url, timeout=10) as c:
        sign_in = c.post(
            "/api/auth/token",
            json={"username": "carol", "password": "carol-pass", "tenant": GLOBEX},
        )
        stream = send(
            c,
            "GET",
            "/api/sse",
            Call(),
            token=world.tokens["carol@acme"],
            params={"tenant": str(GLOBEX)},
        )
        still_acme = c.get("/api/me", headers=_bearer(world.tokens["carol@acme"]))
    assert_json_error(sign_in, 403)
    assert_json_error(stream, 403)
    assert still_acme.status_code == 200
    assert [m["tenantId"] for m in still_acme.json()["memberships"]] == [ACME]


# -- routes that need no caller ------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path",
    _route_params([key for key, route in ROUTES.items() if route.access is Access.PUBLIC]),
)
def test_public_routes_answer_anyone_and_hold_no_tenant_data(
    backend: Backend, client: httpx.Client, world: World, method: str, path: str
) -> None:
    for token in (None, world.tokens["carol@acme"]):
        response = send(client, method, path, Call(), token=token)
        assert response.status_code in (200, 204), response.text
        assert_no_leak(response, world)


@pytest.mark.parametrize("method", CATCH_ALL_METHODS)
def test_unknown_api_paths_get_a_json_404_with_or_without_a_token(
    backend: Backend, client: httpx.Client, world: World, method: str
) -> None:
    for token in (None, world.tokens["bob"]):
        response = send(client, method, "/api/{path:path}", Call(), token=token)
        assert response.status_code == 404
        if method != "HEAD":
            assert response.json()["error"]["code"] == "not_found"


# -- choosing a tenant you are not a member of ---------------------------------------------


@pytest.mark.parametrize("username,foreign_tenant", [("bob", GLOBEX), ("dave", ACME)])
def test_signing_in_to_a_tenant_you_are_not_in_gets_403(
    backend: Backend, client: httpx.Client, world: World, username: str, foreign_tenant: int
) -> None:
    response = client.post(
        "/api/auth/token",
        json={"username": username, "password": f"{username}-pass", "tenant": foreign_tenant},
    )
    assert_json_error(response, 403)
    assert response.json()["error"]["code"] == "forbidden_tenant"  # the stream's code too
    assert "access_token" not in response.text


@pytest.mark.parametrize("actor,foreign_tenant", [("bob", GLOBEX), ("dave", ACME)])
def test_streaming_a_tenant_you_are_not_in_gets_403(
    backend: Backend, client: httpx.Client, world: World, actor: str, foreign_tenant: int
) -> None:
    response = send(
        client,
        "GET",
        "/api/sse",
        Call(),
        token=world.tokens[actor],
        params={"tenant": str(foreign_tenant)},
    )
    assert_json_error(response, 403)
    assert response.json()["error"]["code"] == "forbidden_tenant"


def test_resuming_from_a_globex_event_id_replays_no_globex_event(
    backend: Backend,
    client: httpx.Client,
    acme_watchers: tuple[World, dict[str, StreamWatch]],
) -> None:
    """Alice hands the id of a Globex event to Last-Event-ID: whatever is replayed (or a
    resync) holds no Globex data."""
    world, watchers = acme_watchers
    globex_event = watchers[GLOBEX_CONTROL].wait_for(
        lambda e: e.event == "chat:message" and world.marker in e.data
    )
    assert globex_event.id
    resumed = StreamWatch(backend.url, world.tokens["alice"], {"lastEventId": globex_event.id})
    resumed.start()
    try:
        resumed.wait_open()
        title = f"replay barrier {uuid.uuid4().hex}"
        notified = client.post(
            "/api/notifications",
            headers=_bearer(world.tokens["alice"]),
            json={"userId": world.user_ids["alice"], "title": title},
        )
        assert notified.status_code == 201
        resumed.wait_for(_is_notification(title))
    finally:
        resumed.stop()
        resumed.join()
    found = [(e.event, leak) for e, data in resumed.data_events() for leak in leaks(data, world)]
    assert not found
    assert world.marker not in "".join(e.data for e in resumed.events)


# -- Globex data left alone ----------------------------------------------------------------


def test_carols_globex_data_is_untouched_by_everything_done_from_acme(
    backend: Backend, client: httpx.Client, world: World
) -> None:
    carol = _bearer(world.tokens["carol@globex"])
    notifications = client.get("/api/notifications", headers=carol).json()["items"]
    mine = next(n for n in notifications if n["id"] == world.globex.notification)
    assert mine["read"] is False  # read-all and read/{id} from Acme did not reach it
    history = client.get(
        f"/api/conversations/{world.globex.conversation}/messages", headers=carol
    ).json()["items"]
    assert [m["content"] for m in history] == [f"{world.marker} message"]


def _search(client: httpx.Client, token: str, words: str) -> list[dict[str, Any]]:
    response = send(client, "GET", "/api/search", Call(params={"q": words}), token=token)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_search_finds_the_globex_message_from_globex_only(
    backend: Backend, client: httpx.Client, world: World
) -> None:
    """The control for the search route's scoped case: the words do find the message, in
    Globex; from Acme (carol too, who is in both and wrote it) they find nothing."""
    for actor in ("carol@globex", "erin", "dave"):
        hits = _search(client, world.tokens[actor], world.marker)
        assert [h["messageId"] for h in hits] == [world.globex.message], actor
    for actor in ("alice", "bob", "carol@acme"):
        for words in (world.marker, f"{world.marker} message", "GLOBEX-ONLY"):
            hits = _search(client, world.tokens[actor], words)
            assert world.globex.message not in {h["messageId"] for h in hits}, actor
            assert not leaks(hits, world), actor


def test_a_removed_member_finds_nothing_of_the_old_tenant(private: PrivateServers) -> None:
    """Carol, removed from Globex, is still a participant row of its conversation."""
    world = private.removed_world
    with httpx.Client(base_url=private.removed.url, timeout=10) as c:
        hits = _search(c, world.tokens["carol@acme"], world.marker)
    assert hits == []


# -- an Acme message named from Globex -------------------------------------------------------


def test_an_acme_message_is_out_of_globexs_reach_and_its_changes_stay_in_acme(
    backend: Backend, client: httpx.Client, acme_watchers: tuple[World, dict[str, StreamWatch]]
) -> None:
    """Carol writes in Acme. Signed in to Globex (and as dave), editing or deleting it gets
    what an id naming nothing gets; when she edits and deletes it from Acme, her Globex
    stream, on the very user channel her Acme streams use, hears of neither."""
    world, watchers = acme_watchers
    acme_carol, globex_carol = world.tokens["carol@acme"], world.tokens["carol@globex"]
    path = "/api/conversations/{conversation_id}/messages/{message_id}"
    words = f"carol's Acme words {uuid.uuid4().hex}"
    sent = client.post(
        f"/api/conversations/{world.acme_team}/messages",
        headers=_bearer(acme_carol),
        json={"content": words},
    )
    assert sent.status_code == 201, sent.text
    acme_message = Ids(world.acme_team, sent.json()["id"], NOWHERE_ID, NOWHERE_ID)
    globex_stream = StreamWatch(backend.url, globex_carol)
    globex_stream.start()
    try:
        globex_stream.wait_open()
        for method, body in (("PATCH", {"content": "from Globex"}), ("DELETE", None)):
            build = _message(body)
            for actor in ("carol@globex", "dave"):
                token = world.tokens[actor]
                foreign = send(client, method, path, build(world, acme_message), token=token)
                nowhere = send(client, method, path, build(world, NOWHERE), token=token)
                assert_json_error(foreign, 404)
                assert_json_error(nowhere, 404)
                assert foreign.json() == nowhere.json(), actor
        history = client.get(
            f"/api/conversations/{world.acme_team}/messages",
            headers=_bearer(acme_carol),
            params={"limit": "100"},
        ).json()["items"]
        assert next(m for m in history if m["id"] == acme_message.message)["content"] == words

        edit = _message({"content": f"{words}, edited"})(world, acme_message)
        edited_response = send(client, "PATCH", path, edit, token=acme_carol)
        assert edited_response.status_code == 200, edited_response.text
        edited = edited_response.json()
        delete = _message(None)(world, acme_message)
        assert send(client, "DELETE", path, delete, token=acme_carol).status_code == 204
        # Her Acme streams hear both (so the absence below means something)...
        announced = {
            "chat:message-updated": {"conversationId": world.acme_team, "message": edited},
            "chat:message-deleted": {
                "conversationId": world.acme_team,
                "messageId": acme_message.message,
            },
        }
        for name in ("carol@acme", "carol@globex?tenant=1", "alice"):
            for event_type, data in announced.items():

                def is_it(e: ServerSentEvent, t: str = event_type, d: object = data) -> bool:
                    return e.event == t and payload(e.data) == d

                watchers[name].wait_for(is_it)
        # ...and her Globex stream, once a later Globex event of hers is in, heard neither.
        barrier = f"Globex barrier {uuid.uuid4().hex}"
        notified = client.post(
            "/api/notifications",
            headers=_bearer(world.tokens["dave"]),
            json={"userId": world.user_ids["carol"], "title": barrier},
        )
        assert notified.status_code == 201, notified.text
        globex_stream.wait_for(_is_notification(barrier))
    finally:
        globex_stream.stop()
        globex_stream.join()
    heard = [e.event for e, _ in globex_stream.data_events()]
    assert "chat:message-updated" not in heard and "chat:message-deleted" not in heard, heard
    assert words not in "".join(e.data for e in globex_stream.events)


# -- and no Globex event on any Acme stream ------------------------------------------------


def test_no_acme_stream_received_a_globex_event_while_globex_ones_flowed(
    backend: Backend, client: httpx.Client, acme_watchers: tuple[World, dict[str, StreamWatch]]
) -> None:
    """Last in the module: every case above ran while these streams were open."""
    world, all_watchers = acme_watchers
    control = all_watchers[GLOBEX_CONTROL]
    watchers = {name: w for name, w in all_watchers.items() if w is not control}
    # Barriers: each stream delivers in order, so once its barrier is in, everything the
    # module published before it has been delivered or withheld for good.
    globex_barrier = f"{world.marker} barrier"
    dave = _bearer(world.tokens["dave"])
    sent = client.post(
        "/api/notifications",
        headers=dave,
        json={"userId": world.user_ids["erin"], "title": globex_barrier},
    )
    assert sent.status_code == 201
    acme_barrier = f"acme barrier {uuid.uuid4().hex}"
    alice = _bearer(world.tokens["alice"])
    assert (
        client.post(
            "/api/notifications", headers=alice, json={"tenant": True, "title": acme_barrier}
        ).json()["created"]
        == 3
    )
    control.wait_for(_is_notification(globex_barrier))
    for watcher in watchers.values():
        watcher.wait_for(_is_notification(acme_barrier))

    # The control saw Globex's events: the conversation's message and its notification,
    # and the conversation itself ("added", then "updated").
    control_types = {(e.event, world.marker in e.data) for e, _ in control.data_events()}
    assert {
        ("chat:message", True),
        ("notification:new", True),
        ("chat:conversation", True),
    } <= control_types
    for name, watcher in watchers.items():
        events = watcher.data_events()
        assert events, f"{name} received nothing"
        found = [(e.event, leak) for e, data in events for leak in leaks(data, world)]
        assert not found, f"{name} received Globex data: {found}"
        assert all(world.marker not in e.data for e, _ in events)
