"""`/api/sse` answers the same under every start.

`reflex run --env prod --backend-only` (granian) serves it through the whole middleware
stack; scripts/serve (uvicorn) runs the same stack for the same route and only moves the
stream's live part past it once the route has answered (app/api/sse_response.py,
StreamHandoff). The same requests go to both, and their answers must match each other and
what the route promises: status, the headers a client or a proxy acts on, the JSON error,
and for a stream its opening frame.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.sse_response import EventStreamResponse
from app.asgi import STREAM_PATH, DirectStream
from app.domain.ids import MAX_ID
from app.realtime.events import Event, EventType
from app.realtime.manager import Connection
from app.runtime import Runtime
from tests.asgi_server import serving
from tests.backend import Backend, running_backend

PARTNER = "https://partner.example"
EVIL = "https://evil.example"
ENV = {"CORS_ALLOWED_ORIGINS": PARTNER}
TIMEOUT = 10.0

# The headers that change what a browser, a proxy or a program does with the answer.
COMPARED_HEADERS = (
    "content-type",
    "cache-control",
    "x-accel-buffering",
    "www-authenticate",
    "retry-after",
    "allow",
    "vary",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any  # the JSON of an error; the opening frame (bytes) of a stream


@dataclass(frozen=True)
class Case:
    user: str | None  # whose token goes where `credentials` says; None: no token
    credentials: str = "bearer"  # "bearer", "query", "cookie" or "bad"
    method: str = "GET"
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    status: int = 200
    code: str | None = None  # the error's code, for a JSON error


def case(id: str, user: str | None, **fields: Any) -> Any:
    return pytest.param(Case(user, **fields), id=id)


# Stream cases spread over the users: each user may hold SSE_MAX_STREAMS_PER_USER (3).
CASES = [
    case("good-token", "bob"),
    case("token-in-query", "carol", credentials="query"),
    case("no-token", None, status=401, code="not_authenticated"),
    case("unknown-token", "bob", credentials="bad", status=401, code="not_authenticated"),
    case(
        "not-bearer",
        None,
        headers=(("Authorization", "Basic Ym9iOmJvYi1wYXNz"),),
        status=401,
        code="not_authenticated",
    ),
    case(
        "unknown-event-type",
        "bob",
        params=(("events", "chat:nope"),),
        status=400,
        code="unknown_event_type",
    ),
    case("event-filter", "alice", params=(("events", "chat:message,presence:update"),)),
    case(
        "last-event-id-too-long",
        "bob",
        params=(("lastEventId", "1" * 201),),
        status=422,
        code="invalid_request",
    ),
    case(
        "no-token-and-a-bad-parameter",
        None,
        params=(("lastEventId", "1" * 201), ("tenant", "abc")),
        status=401,
        code="not_authenticated",
    ),
    case("last-event-id-longest", "dave", params=(("lastEventId", "1" * 200),)),
    case("tenant-empty", "erin", params=(("tenant", ""),)),
    case("tenant-zero", "bob", params=(("tenant", "0"),), status=400, code="invalid_tenant"),
    case("tenant-letters", "bob", params=(("tenant", "abc"),), status=400, code="invalid_tenant"),
    case("tenant-superscript", "bob", params=(("tenant", "²"),), status=400, code="invalid_tenant"),
    case("tenant-negative", "bob", params=(("tenant", "-1"),), status=400, code="invalid_tenant"),
    case(
        "tenant-largest-id",
        "bob",
        params=(("tenant", str(MAX_ID)),),
        status=403,
        code="forbidden_tenant",
    ),
    case(
        "tenant-past-largest-id",
        "bob",
        params=(("tenant", str(MAX_ID + 1)),),
        status=400,
        code="invalid_tenant",
    ),
    case(
        "tenant-20-digits",
        "bob",
        params=(("tenant", "0" + str(MAX_ID)),),
        status=400,
        code="invalid_tenant",
    ),
    case(
        "tenant-not-a-member", "bob", params=(("tenant", "2"),), status=403, code="forbidden_tenant"
    ),
    case("allowed-origin", "alice", headers=(("Origin", PARTNER),)),
    case("other-origin-with-a-token", "dave", headers=(("Origin", EVIL),)),
    case(
        "cookie-from-another-origin",
        "bob",
        credentials="cookie",
        headers=(("Origin", EVIL),),
        status=403,
        code="untrusted_origin",
    ),
    case(
        "preflight-allowed-origin",
        None,
        method="OPTIONS",
        headers=(
            ("Origin", PARTNER),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization,last-event-id"),
        ),
    ),
    case(
        "preflight-other-origin",
        None,
        method="OPTIONS",
        headers=(("Origin", EVIL), ("Access-Control-Request-Method", "GET")),
        status=400,
    ),
    # GET only: other methods get 405 with `Allow: GET` (app/api/not_found.py) on both.
    case("head", "erin", method="HEAD", status=405),
    case("post", "bob", method="POST", status=405, code="method_not_allowed"),
]


@dataclass(frozen=True)
class Servers:
    reflex_run: Backend
    serve: Backend


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with (
        running_backend(tmp_path_factory.mktemp("reflex-run"), ENV, backend_only=True) as backend,
        running_backend(tmp_path_factory.mktemp("serve"), ENV, launcher="serve") as served,
    ):
        yield Servers(backend, served)


def sign_in(url: str, username: str) -> str:
    response = httpx.post(
        f"{url}/api/auth/token",
        json={"username": username, "password": f"{username}-pass"},
        timeout=TIMEOUT,
    )
    response.raise_for_status()
    return response.json()["access_token"]


@pytest.fixture(scope="module")
def tokens(servers: Servers) -> Callable[[str, str], str]:
    """One token per (server, user): signing in hashes a password, which is slow."""
    cache: dict[tuple[str, str], str] = {}

    def token(url: str, username: str) -> str:
        if (url, username) not in cache:
            cache[url, username] = sign_in(url, username)
        return cache[url, username]

    return token


def request_of(case: Case, token: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """The query and headers that `case` sends, with `token` where it says."""
    params, headers = dict(case.params), dict(case.headers)
    if token is not None:
        if case.credentials == "bearer":
            headers["Authorization"] = f"Bearer {token}"
        elif case.credentials == "query":
            params["access_token"] = token
        elif case.credentials == "cookie":
            headers["Cookie"] = f"chat_session={token}"
        else:
            headers["Authorization"] = "Bearer not-a-token"
    return params, headers


async def ask(url: str, case: Case, token: str | None) -> Answer:
    params, headers = request_of(case, token)
    async with (
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
        http.stream(case.method, "/api/sse", params=params, headers=headers) as response,
    ):
        kept = {
            name: response.headers[name] for name in COMPARED_HEADERS if name in response.headers
        }
        body: Any
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            body = b"" if case.method == "HEAD" else await opening_frame(response)
        elif response.headers.get("content-type") == "application/json":
            body = (await response.aread()) and response.json()
        else:
            body = await response.aread()
        return Answer(response.status_code, kept, body)


async def opening_frame(response: httpx.Response) -> bytes:
    """The stream's bytes up to its first blank line, within the timeout."""
    received = b""
    async with asyncio.timeout(TIMEOUT):
        async for chunk in response.aiter_raw():
            received += chunk
            if b"\n\n" in received:
                break
    return received[: received.index(b"\n\n") + 2]


@pytest.mark.parametrize("case", CASES)
async def test_both_starts_answer_alike(
    servers: Servers, tokens: Callable[[str, str], str], case: Case
) -> None:
    answers = {}
    for name, url in (("reflex run", servers.reflex_run.url), ("scripts/serve", servers.serve.url)):
        token = tokens(url, case.user) if case.user is not None else None
        answers[name] = await ask(url, case, token)
    granian, uvicorn = answers["reflex run"], answers["scripts/serve"]
    assert granian == uvicorn, answers
    assert uvicorn.status == case.status, uvicorn
    if case.code is not None:
        assert uvicorn.headers["content-type"] == "application/json"
        assert uvicorn.body["error"]["code"] == case.code
    if case.status == 200 and case.method != "OPTIONS":
        assert uvicorn.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert uvicorn.headers["cache-control"] == "no-cache, no-transform"
        assert uvicorn.headers["x-accel-buffering"] == "no"
    if case.method == "GET" and case.status == 200:
        assert uvicorn.body.startswith(b": connected\nretry: "), uvicorn.body
    if dict(case.headers).get("Origin") == PARTNER:
        assert uvicorn.headers["access-control-allow-origin"] == PARTNER
    if dict(case.headers).get("Origin") == EVIL:
        assert "access-control-allow-origin" not in uvicorn.headers


@pytest.mark.parametrize(
    ("tenant", "status", "code"),
    [
        pytest.param(str(MAX_ID), 403, "forbidden_tenant", id="largest-id"),
        pytest.param(str(MAX_ID + 1), 400, "invalid_tenant", id="past-largest-id"),
        pytest.param("0", 400, "invalid_tenant", id="zero"),
        pytest.param("²", 400, "invalid_tenant", id="superscript"),
        pytest.param("9" * 5000, 400, "invalid_tenant", id="5000-digits"),
    ],
)
@pytest.mark.parametrize("form", [True, False], ids=["form", "json"])
def test_sign_in_refuses_a_bad_tenant_as_the_stream_does(
    servers: Servers, tenant: str, status: int, code: str, form: bool
) -> None:
    """Sign-in's `tenant` (a form field, or a JSON number) by the same rule and error as
    /api/sse's; answered alike by both starts. A JSON number of 5,000 digits is beyond the
    JSON parser itself: that body is malformed JSON, not a bad tenant."""
    if not form and len(tenant) > 4300:
        code = "malformed_json"
    credentials = {"username": "carol", "password": "carol-pass"}
    answers = []
    for url in (servers.reflex_run.url, servers.serve.url):
        if form:
            sent = httpx.post(
                f"{url}/api/auth/token", data={**credentials, "tenant": tenant}, timeout=TIMEOUT
            )
        else:
            # Digits as a JSON number (written out: int() refuses 5,000 digits), else a string.
            number = tenant if tenant.isascii() and tenant.isdigit() else json.dumps(tenant)
            sent = httpx.post(
                f"{url}/api/auth/token",
                content=json.dumps(credentials)[:-1] + f', "tenant": {number}}}',
                headers={"Content-Type": "application/json"},
                timeout=TIMEOUT,
            )
        answers.append((sent.status_code, sent.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == status, answers[0]
    assert answers[0][1]["error"]["code"] == code


async def test_on_scripts_serve_the_live_part_leaves_the_middleware_and_keeps_streaming(
    runtime: Runtime,
) -> None:
    """app/asgi.py's DirectStream under uvicorn: the stack (here one middleware that records
    what passes it) serves the request and the opening, then returns; live events still
    arrive, written past it. That is what keeps a stream's frames and send wrappers from
    living as long as the stream."""
    passed: list[str] = []
    returned = asyncio.Event()
    opened: list[Connection] = []

    class Recording:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def recording_send(message: Message) -> None:
                passed.append(message["type"])
                await send(message)

            await self.app(scope, receive, recording_send)
            returned.set()

    async def route(request: Request) -> EventStreamResponse:
        connection = await runtime.manager.connect(user_id=1, tenant_id=1)
        opened.append(connection)
        return EventStreamResponse(connection, runtime.manager, runtime.writer, 1000, 5.0)

    stack = Starlette(routes=[Route(STREAM_PATH, route)], middleware=[Middleware(Recording)])
    async with (
        serving(DirectStream(stack)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
        http.stream("GET", STREAM_PATH) as response,
    ):
        assert response.status_code == 200
        chunks = response.aiter_raw()
        async with asyncio.timeout(TIMEOUT):
            assert (await anext(chunks)).startswith(b": connected\n")
            await returned.wait()  # the stack is done with the request ...
            opened[0].client.offer(Event(type=EventType.PING, data={"ts": "live"}))
            received = b""
            while b'"live"' not in received:
                received += await anext(chunks)  # ... and the stream goes on
    assert passed == ["http.response.start", "http.response.body"]  # the opening only
    async with asyncio.timeout(TIMEOUT):
        while not opened[0].client.closed:  # the client left: unregistered
            await asyncio.sleep(0.01)
