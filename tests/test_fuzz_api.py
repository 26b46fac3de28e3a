"""Hypothesis fuzzing of every JSON endpoint, generated from the route table.

The operations come from `build_api().openapi()`: every operation under /api that takes a
body (its requestBody schema gives the field names and types to get wrong), plus every one
with path or query parameters. A new route is fuzzed without anyone listing it.

Per operation, requests made by alice (Acme's admin, so admin-only bodies reach validation)
or bob (a member) with:
- malformed bytes: random binary, truncated JSON, invalid UTF-8, NaN/Infinity, duplicate
  keys, BOMs, lone surrogates, numbers too long to parse, under wrong content types;
- wrongly typed JSON: arbitrary JSON values, and objects with the schema's field names
  holding values of the wrong JSON type, plus unknown fields;
- deeply nested arrays and objects (depth 100..100000);
- oversized bodies, just above MAX_BODY_BYTES, declared and chunked;
- path parameters that name no possible id (huge, negative, non-digits, unicode), and query
  parameters likewise.

The property: the answer is a 4xx with `{"error": {"code", "message"}}` as
application/json, or a sensible 2xx when the generated input happens to be valid (counted,
and required to stay rare). Never a 5xx, and the `backend` fixture fails the test if the
server logged an ERROR or a traceback. Meanwhile a consumer stream stays open; the last test
shows it still delivers.

Deliberate choices:
- Path values that could name a real row are filtered out: DELETE /api/members/{user_id}
  with a real id would remove a demo user from the shared server (and DELETE
  .../participants/{user_id} a participant of "Acme team").
- A body valid by accident may rename "Acme team" (PATCH /api/conversations/{id}): the
  module gives it its title back when it ends, as it does the users' presence.
- /api/auth/token parses its own body (JSON or the OAuth form), so OpenAPI shows no
  requestBody for it: `HAND_PARSED_BODIES` names it, and a test keeps that list honest.
"""

from __future__ import annotations

import asyncio
import json
import math
import queue
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from httpx_sse import ServerSentEvent
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from app.api import build_api
from app.api.schemas import MAX_ID, TokenRequest
from app.settings import get_settings
from tests.backend import Backend, open_stream

pytestmark = pytest.mark.server

MAX_BODY_BYTES = get_settings().max_body_bytes
ACTORS = ("alice", "bob")  # Acme's admin and a member
CONSUMER = "carol"  # the other user whose stream must survive the fuzzing
# Valid-by-accident inputs must stay rare, or the run tests the happy path instead.
MAX_VALID_SHARE = 0.2

# Routes that read their own body instead of declaring it, so OpenAPI has no requestBody.
HAND_PARSED_BODIES: dict[tuple[str, str], tuple[type[BaseModel], bool]] = {
    # (model, also takes the OAuth 2.0 password-flow form)
    ("POST", "/api/auth/token"): (TokenRequest, True),
}


# -- the operations, from the route table --------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    body_schema: dict[str, Any] | None = None  # an object schema, $refs resolved
    takes_form: bool = False
    path_params: tuple[str, ...] = ()
    query_params: tuple[tuple[str, dict[str, Any]], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def is_stream(self) -> bool:
        return self.path == "/api/sse"


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.removeprefix("#/components/schemas/")
    return _resolve(spec["components"]["schemas"][name], spec)


def object_schema(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
    """The object a body schema describes (an optional body is `anyOf [object, null]`)."""
    schema = _resolve(schema, spec)
    if schema.get("type") == "object":
        return schema
    for option in schema.get("anyOf", []):
        found = object_schema(option, spec)
        if found is not None:
            return found
    return None


def _body_schema(operation: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    return object_schema(content["application/json"]["schema"], spec)


def discover_operations(spec: dict[str, Any]) -> list[Operation]:
    operations = []
    for path, methods in spec["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in methods.items():
            key = (method.upper(), path)
            params = operation.get("parameters", [])
            body_schema = _body_schema(operation, spec)
            takes_form = False
            if key in HAND_PARSED_BODIES:
                model, takes_form = HAND_PARSED_BODIES[key]
                body_schema = model.model_json_schema(by_alias=True)
            operations.append(
                Operation(
                    method=key[0],
                    path=path,
                    body_schema=body_schema,
                    takes_form=takes_form,
                    path_params=tuple(p["name"] for p in params if p["in"] == "path"),
                    query_params=tuple(
                        (p["name"], p["schema"]) for p in params if p["in"] == "query"
                    ),
                )
            )
    return operations


SPEC = build_api().openapi()
OPERATIONS = discover_operations(SPEC)
BODY_OPERATIONS = [op for op in OPERATIONS if op.body_schema is not None]
PATH_OPERATIONS = [op for op in OPERATIONS if op.path_params]
QUERY_OPERATIONS = [op for op in OPERATIONS if op.query_params]


def _ids(operations: list[Operation]) -> list[Any]:
    return [pytest.param(op, id=op.key) for op in operations]


# -- the world: tokens, a conversation to aim at, a consumer stream ------------------------


@dataclass
class Fuzz:
    client: httpx.Client
    tokens: dict[str, str]
    conversation_id: int  # one alice and bob both take part in, so bodies reach validation

    def headers(self, actor: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[actor]}"}


@pytest.fixture(scope="module")
def fuzz(backend_process: Backend) -> Iterator[Fuzz]:
    timeout = httpx.Timeout(10.0, read=30.0)
    with httpx.Client(base_url=backend_process.url, timeout=timeout) as client:
        tokens = {name: backend_process.token(name) for name in (*ACTORS, CONSUMER)}
        world = Fuzz(client, tokens, conversation_id=0)
        listing = client.get("/api/conversations", headers=world.headers("alice"))
        assert listing.status_code == 200, listing.text
        world.conversation_id = next(
            c["id"] for c in listing.json()["items"] if c["title"] == "Acme team"
        )
        try:
            yield world
        finally:
            # A body that happened to be `{"status": "away"}` must not leave the shared
            # server's demo users away for the tests that follow.
            for actor in ACTORS:
                client.put("/api/presence", headers=world.headers(actor), json={"status": "online"})
            client.patch(
                f"/api/conversations/{world.conversation_id}",
                headers=world.headers("alice"),
                json={"title": "Acme team"},
            )


class ConsumerStream(threading.Thread):
    """carol's `/api/sse` consumer, read on its own event loop for the whole module."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True, name="fuzz-consumer")
        self.url = url
        self.token = token
        self.opened = threading.Event()
        self.events: queue.Queue[ServerSentEvent] = queue.Queue()
        self.pings = 0
        self.failure: BaseException | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            self.failure = exc
        finally:
            self.opened.set()

    async def _consume(self) -> None:
        timeout = httpx.Timeout(10.0, read=30.0)
        async with (
            httpx.AsyncClient(base_url=self.url, timeout=timeout) as http,
            open_stream(http, self.token) as stream,
        ):
            assert stream.response.status_code == 200
            self.opened.set()
            while not self._stopping.is_set():
                # Pings arrive every second (TEST_ENV): a timeout means a dead stream.
                event = await stream.next(timeout=10.0, pings=True)
                if event.event == "ping":
                    self.pings += 1
                else:
                    self.events.put(event)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=15)

    def wait_for(
        self, predicate: Callable[[ServerSentEvent], bool], timeout: float
    ) -> ServerSentEvent:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                assert self.failure is None, f"the consumer stream broke: {self.failure!r}"
                continue
            if predicate(event):
                return event
        raise TimeoutError("the awaited event did not reach the consumer stream")


@pytest.fixture(scope="module")
def consumer(backend_process: Backend, fuzz: Fuzz) -> Iterator[ConsumerStream]:
    stream = ConsumerStream(backend_process.url, fuzz.tokens[CONSUMER])
    stream.start()
    assert stream.opened.wait(timeout=15), "the consumer stream did not open"
    assert stream.failure is None, f"the consumer stream did not open: {stream.failure!r}"
    try:
        yield stream
    finally:
        stream.stop()


# -- sending and judging -------------------------------------------------------------------


@dataclass(frozen=True)
class RawBody:
    content: bytes
    content_type: str | None

    def headers(self) -> dict[str, str]:
        return {} if self.content_type is None else {"Content-Type": self.content_type}


@dataclass
class Outcomes:
    """What one fuzzing run got back: refusals (4xx) and valid-by-accident successes."""

    operation: Operation
    counts: Counter[str] = field(default_factory=Counter)

    def record(self, response: httpx.Response) -> None:
        status = response.status_code
        detail = f"{self.operation.key} answered {status}: {response.text[:300]!r}"
        assert status < 500, detail
        if 200 <= status < 300:
            assert_sensible_success(response, self.operation)
            self.counts["valid"] += 1
            return
        assert 400 <= status < 500, detail
        assert response.headers.get("content-type") == "application/json", detail
        error = response.json()["error"]
        assert isinstance(error["code"], str) and error["code"], detail
        assert isinstance(error["message"], str) and error["message"], detail
        self.counts[f"{status} {error['code']}"] += 1

    def assert_valid_inputs_were_rare(self) -> None:
        total = sum(self.counts.values())
        assert total, "hypothesis sent nothing"
        share = self.counts["valid"] / total
        too_many = f"{self.operation.key}: too many valid inputs: {self.counts}"
        assert share <= MAX_VALID_SHARE, too_many


def assert_sensible_success(response: httpx.Response, operation: Operation) -> None:
    if operation.is_stream:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
    elif response.status_code == 204:
        assert response.content == b""
    else:
        assert response.status_code in (200, 201), response.text
        assert response.headers["content-type"] == "application/json"
        assert isinstance(response.json(), dict)


def send(
    fuzz: Fuzz,
    operation: Operation,
    actor: str,
    *,
    path_values: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: RawBody | None = None,
    chunked: bool = False,
) -> httpx.Response:
    values = {name: str(fuzz.conversation_id) for name in operation.path_params}
    values.update(path_values or {})
    url = operation.path
    for name, value in values.items():
        # Encoded whole: a generated "/" or "?" stays inside its path segment.
        url = url.replace("{" + name + "}", quote(value, safe=""))
    if query:
        url += "?" + urlencode(query)
    headers = fuzz.headers(actor)
    content: bytes | Iterator[bytes] | None = None
    if body is not None:
        headers.update(body.headers())
        content = _chunks(body.content) if chunked else body.content
    with fuzz.client.stream(operation.method, url, headers=headers, content=content) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()  # a stream that opened is a success: leave it and close it
    return response


def _chunks(content: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,  # the same examples on every run: CI failures reproduce
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# -- strategies ----------------------------------------------------------------------------

HUGE_INTS = st.one_of(
    st.integers(min_value=MAX_ID + 1, max_value=10**40),
    st.integers(max_value=-(2**63) - 1, min_value=-(10**40)),
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

_VALUES_OF_KIND: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "integer": st.one_of(st.integers(), HUGE_INTS),
    # A number that is no integer: strict integer fields must refuse 1.5 and NaN alike.
    "number": st.floats().filter(lambda f: not f.is_integer()),
    "string": st.text(max_size=20),
    "array": st.lists(JSON_SCALARS, max_size=3),
    "object": st.dictionaries(st.text(max_size=5), JSON_SCALARS, max_size=3),
}


def json_kinds(schema: dict[str, Any]) -> set[str]:
    """The JSON kinds a property schema admits."""
    if "anyOf" in schema:
        return set().union(*(json_kinds(option) for option in schema["anyOf"]))
    if "enum" in schema or "const" in schema:
        return {"string"}
    kind = schema.get("type")
    if kind is None:
        return set(_VALUES_OF_KIND)  # untyped: anything goes
    kinds = {kind} if isinstance(kind, str) else set(kind)
    if "number" in kinds:
        kinds.add("integer")
    return kinds


def wrong_value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    admitted = json_kinds(schema)
    options = [strategy for kind, strategy in _VALUES_OF_KIND.items() if kind not in admitted]
    if "array" in admitted and "items" in schema:
        # The right container with a wrongly typed item in it.
        options.append(
            st.tuples(wrong_value(schema["items"]), st.lists(JSON_SCALARS, max_size=2)).map(
                lambda pair: [pair[0], *pair[1]]
            )
        )
    assert options, f"no wrong JSON kind for {schema}"
    return st.one_of(options)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@st.composite
def wrongly_typed_objects(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    """The schema's fields with values of the wrong type, perhaps with unknown fields."""
    properties: dict[str, Any] = schema.get("properties", {})
    known = set(properties) | {_snake(name) for name in properties}
    body = {
        name: draw(wrong_value(properties[name]))
        for name in sorted(properties)
        if draw(st.booleans())
    }
    extras = draw(
        st.dictionaries(
            st.text(min_size=1, max_size=10).filter(lambda key: key not in known),
            JSON_VALUES,
            max_size=2,
        )
    )
    if not body and not extras:  # always at least one thing wrong
        name = draw(st.sampled_from(sorted(properties)))
        body[name] = draw(wrong_value(properties[name]))
    return {**body, **extras}


JSON_CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/problem+json",
)
WRONG_CONTENT_TYPES = (
    None,  # no Content-Type header at all
    "",
    "text/plain",
    "application/xml",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=fuzz",
    "application/json; boundary=",
    "totally/invalid type",
)
BOMS = (
    ("utf-8-sig", b""),
    ("utf-16", b""),  # Python writes the byte order mark itself
    ("utf-32", b""),
    ("utf-8", b"\xef\xbb\xbf\xef\xbb\xbf"),  # two marks
    ("utf-8", b"\xff\xfe"),  # a UTF-16 mark in front of UTF-8
)
INVALID_UTF8 = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\x80")
BAD_LITERALS = (
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"nan",
    b"1e999999",
    b"-1e999999",
    b"1" * 5000,
    b"-" + b"9" * 4400,
    b"0x10",
    b"01",
    b"+1",
    b".5",
    b"1.",
    b"undefined",
    b"'single'",
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b'"\\u0000"',
    b'"\\x41"',
    b"tru",
    b"nul",
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def malformed_bodies(draw: st.DrawFn, operation: Operation) -> RawBody:
    assert operation.body_schema is not None
    names = sorted(operation.body_schema.get("properties", {})) or ["x"]
    name = draw(st.sampled_from(names)).encode()
    wrong = wrongly_typed_objects(operation.body_schema)
    kind = draw(
        st.sampled_from(
            ["binary", "truncated", "utf8", "literal", "duplicate", "bom", "trailing", "form"]
        )
    )
    if kind == "binary":
        content = draw(st.binary(max_size=300))
    elif kind == "truncated":
        whole = _dumps(draw(wrong))
        content = whole[: draw(st.integers(min_value=1, max_value=max(1, len(whole) - 1)))]
    elif kind == "utf8":
        bad = draw(st.sampled_from(INVALID_UTF8))
        content = b'{"' + name + b'": "' + bad + b'"}'
        content = draw(st.sampled_from([content, b'{"' + bad + b'": 1}', bad]))
    elif kind == "literal":
        literal = draw(st.sampled_from(BAD_LITERALS))
        content = draw(st.sampled_from([literal, b'{"' + name + b'": ' + literal + b"}"]))
    elif kind == "duplicate":
        properties = operation.body_schema.get("properties", {})
        first = draw(wrong_value(properties.get(name.decode(), {"type": "string"})))
        second = draw(JSON_VALUES)
        key = b'"' + name + b'": '
        content = b"{" + key + _dumps(first) + b", " + key + _dumps(second) + b"}"
    elif kind == "bom":
        encoding, prefix = draw(st.sampled_from(BOMS))
        content = prefix + json.dumps(draw(wrong)).encode(encoding)
    elif kind == "trailing":
        content = _dumps(draw(wrong)) + draw(st.sampled_from([b"}", b",", b" x", b"\x00", b"{}"]))
    else:
        return draw(form_bodies())
    content_types = JSON_CONTENT_TYPES + WRONG_CONTENT_TYPES
    return RawBody(content, draw(st.sampled_from(content_types)))


FORM = "application/x-www-form-urlencoded"
UNICODE_DIGITS = ("²", "١", "١٢", "߁", "𝟏", "Ⅻ", "¼", "０")


@st.composite
def form_bodies(draw: st.DrawFn) -> RawBody:
    """URL-encoded forms (what the OAuth password flow sends) with odd fields and values."""
    keys = st.one_of(
        st.sampled_from(["username", "password", "tenant", "grant_type"]), st.text(max_size=8)
    )
    values = st.one_of(st.text(max_size=30), st.sampled_from(UNICODE_DIGITS), HUGE_INTS.map(str))
    pairs = draw(st.lists(st.tuples(keys, values), min_size=1, max_size=5))
    return RawBody(urlencode(pairs).encode(), FORM)


@st.composite
def wrongly_typed_bodies(draw: st.DrawFn, operation: Operation) -> RawBody:
    assert operation.body_schema is not None
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        value = draw(JSON_VALUES)  # anything at all, object or not
    else:
        value = draw(wrongly_typed_objects(operation.body_schema))
    return RawBody(_dumps(value), draw(st.sampled_from(JSON_CONTENT_TYPES)))


@st.composite
def deeply_nested_bodies(draw: st.DrawFn, operation: Operation) -> RawBody:
    assert operation.body_schema is not None
    depth = draw(st.one_of(st.integers(100, 2_000), st.integers(2_000, 100_000)))
    shape = draw(st.sampled_from(["array", "object", "mixed", "unclosed"]))
    if shape == "array":
        nested = b"[" * depth + b"1" + b"]" * depth
    elif shape == "object":
        nested = b'{"a":' * depth + b"1" + b"}" * depth
    elif shape == "mixed":
        nested = b'[{"a":' * (depth // 2) + b"null" + b"}]" * (depth // 2)
    else:
        nested = b"[" * depth
    names = sorted(operation.body_schema.get("properties", {})) or ["x"]
    name = draw(st.sampled_from(names)).encode()
    content = draw(st.sampled_from([nested, b'{"' + name + b'": ' + nested + b"}"]))
    return RawBody(content, "application/json")


@st.composite
def oversized_bodies(draw: st.DrawFn, operation: Operation) -> RawBody:
    assert operation.body_schema is not None
    size = draw(st.integers(MAX_BODY_BYTES + 1, MAX_BODY_BYTES + 8_192))
    names = sorted(operation.body_schema.get("properties", {})) or ["x"]
    name = draw(st.sampled_from(names)).encode()
    head = b'{"' + name + b'": "'
    filler = draw(st.sampled_from([b"x", b"\xc3\xa9", b" ", b"["]))
    content = (head + filler * size)[: size - 2] + b'"}'
    # Content types the route reads: one it refuses unread may answer 415 before any size.
    readable = ["application/json", "application/json; charset=utf-8"]
    readable += [FORM] if operation.takes_form else []
    return RawBody(content, draw(st.sampled_from(readable)))


def _could_name_a_row(value: str) -> bool:
    """True for anything a lenient parser might read as an id in range (1, "+2", "3.0")."""
    for parse in (int, float):
        try:
            number = parse(value)
        except (ValueError, OverflowError):
            continue
        if isinstance(number, float) and not math.isfinite(number):
            continue  # NaN and the infinities name no row
        if 1 <= number <= MAX_ID:
            return True
    return False


NOT_AN_ID = st.one_of(
    st.integers(max_value=0).map(str),
    st.integers(min_value=MAX_ID + 1).map(str),
    st.integers(min_value=10**30, max_value=10**400).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(min_size=1, max_size=40),
    st.sampled_from(
        ["-1", "0", "1e3", "0x1F", "1.5", "%2F", "a/b", "?x=1", "#", "\x00", "é", "🙂"]
    ),
).filter(lambda value: value not in {".", ".."} and not _could_name_a_row(value))


def bad_query_value(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    kinds = json_kinds(schema)
    numbers = st.one_of(
        st.integers(max_value=0).map(str),
        st.integers(min_value=MAX_ID + 1).map(str),
        st.integers(min_value=10**30, max_value=10**400).map(str),
        st.floats().filter(lambda f: not f.is_integer()).map(repr),
        st.sampled_from(UNICODE_DIGITS),
        st.sampled_from(["", " ", "1e3", "0x1F", "-0", "1_0", "NaN"]),
    )
    if "integer" in kinds:
        return st.one_of(numbers, st.text(min_size=1, max_size=20))
    if "boolean" in kinds:
        return st.text(min_size=2, max_size=20).filter(
            lambda v: v.lower() not in {"true", "false", "on", "off", "yes", "no"}
        )
    limits = [option.get("maxLength") for option in schema.get("anyOf", [schema])]
    max_length = next((limit for limit in limits if limit), None)
    if max_length is not None:
        return st.text(min_size=max_length + 1, max_size=max_length + 40)
    return st.one_of(
        st.text(min_size=1, max_size=40).filter(lambda v: v.strip(" ,") != ""),
        numbers.filter(lambda v: v.strip(" ,") != ""),
        st.sampled_from(["chat:nope", "ping", ",,x", "9" * 40, "\x00", "-1"]),
    )


def bad_queries(operation: Operation) -> st.SearchStrategy[dict[str, str]]:
    params = dict(operation.query_params)
    return st.fixed_dictionaries(
        {}, optional={name: bad_query_value(schema) for name, schema in params.items()}
    ).filter(bool)


# Inputs that once answered a 500, pinned so they are tried first on every run.
FOUND_500S: dict[tuple[str, str], list[dict[str, Any]]] = {
    # str.isdigit() is true for "²", which int() refuses: ValueError in parse_tenant.
    ("query", "GET /api/sse"): [{"query": {"tenant": "²"}}, {"query": {"tenant": "①"}}],
    # The same check in the OAuth form's tenant field; and int() refuses past 4300 digits.
    ("malformed", "POST /api/auth/token"): [
        {"body": RawBody(b"username=a&password=b&tenant=" + tenant, FORM)}
        for tenant in (b"%C2%B2", b"9" * 5000)
    ],
}


def with_found_examples(
    kind: str, operation: Operation, test: Callable[..., None]
) -> Callable[..., None]:
    for found in FOUND_500S.get((kind, operation.key), []):
        test = example(actor="alice", **found)(test)
    return test


# -- the coverage guarantee ----------------------------------------------------------------


def test_every_route_with_a_body_or_parameters_is_fuzzed() -> None:
    routes = {
        (method.upper(), path)
        for path, methods in SPEC["paths"].items()
        if path.startswith("/api/")
        for method in methods
    }
    declared = {
        (method.upper(), path)
        for path, methods in SPEC["paths"].items()
        for method, operation in methods.items()
        if "requestBody" in operation
    }
    assert declared, "the route table shows no request body at all"
    fuzzed = {(op.method, op.path) for op in BODY_OPERATIONS}
    missing = declared - fuzzed
    assert not missing, f"routes with a body no strategy can describe: {missing}"
    assert set(HAND_PARSED_BODIES) <= routes, "HAND_PARSED_BODIES names a route that is gone"
    assert set(HAND_PARSED_BODIES) <= fuzzed
    for op in BODY_OPERATIONS:
        assert op.body_schema is not None and op.body_schema.get("properties"), op.key
    with_params = {
        (method.upper(), path)
        for path, methods in SPEC["paths"].items()
        if path.startswith("/api/")
        for method, operation in methods.items()
        if operation.get("parameters")
    }
    assert with_params == {(op.method, op.path) for op in PATH_OPERATIONS + QUERY_OPERATIONS}


# -- bodies --------------------------------------------------------------------------------


def _fuzz_bodies(
    fuzz: Fuzz,
    operation: Operation,
    kind: str,
    bodies: st.SearchStrategy[RawBody],
    max_examples: int,
    *,
    chunked: bool = False,
) -> Outcomes:
    outcomes = Outcomes(operation)

    def attempt(actor: str, body: RawBody) -> None:
        outcomes.record(send(fuzz, operation, actor, body=body, chunked=chunked))

    test = with_found_examples(kind, operation, attempt)
    given(actor=st.sampled_from(ACTORS), body=bodies)(fuzz_settings(max_examples)(test))()
    return outcomes


@pytest.mark.parametrize("operation", _ids(BODY_OPERATIONS))
def test_malformed_bodies_get_a_json_4xx(
    backend: Backend, fuzz: Fuzz, consumer: ConsumerStream, operation: Operation
) -> None:
    bodies = malformed_bodies(operation)
    if operation.takes_form:
        bodies = st.one_of(bodies, form_bodies())
    _fuzz_bodies(fuzz, operation, "malformed", bodies, 60).assert_valid_inputs_were_rare()


@pytest.mark.parametrize("operation", _ids(BODY_OPERATIONS))
def test_wrongly_typed_json_gets_a_json_4xx(
    backend: Backend, fuzz: Fuzz, consumer: ConsumerStream, operation: Operation
) -> None:
    outcomes = _fuzz_bodies(fuzz, operation, "typed", wrongly_typed_bodies(operation), 50)
    outcomes.assert_valid_inputs_were_rare()


@pytest.mark.parametrize("operation", _ids(BODY_OPERATIONS))
def test_deeply_nested_json_gets_a_json_4xx(
    backend: Backend, fuzz: Fuzz, consumer: ConsumerStream, operation: Operation
) -> None:
    outcomes = _fuzz_bodies(fuzz, operation, "nested", deeply_nested_bodies(operation), 20)
    assert outcomes.counts["valid"] == 0, outcomes.counts


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
@pytest.mark.parametrize("operation", _ids(BODY_OPERATIONS))
def test_oversized_bodies_get_a_json_413(
    backend: Backend, fuzz: Fuzz, consumer: ConsumerStream, operation: Operation, chunked: bool
) -> None:
    outcomes = _fuzz_bodies(
        fuzz, operation, "oversized", oversized_bodies(operation), 8, chunked=chunked
    )
    assert set(outcomes.counts) == {"413 payload_too_large"}, outcomes.counts


# -- parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize("operation", _ids(PATH_OPERATIONS))
def test_path_parameters_that_name_no_id_get_a_json_4xx(
    backend: Backend, fuzz: Fuzz, consumer: ConsumerStream, operation: Operation
) -> None:
    outcomes = Outcomes(operation)

    @fuzz_settings(50)
    @given(
        actor=st.sampled_from(ACTORS),
        values=st.fixed_dictionaries({name: NOT_AN_ID for name in operation.path_params}),
    )
    def attempt(actor: str, values: dict[str, str]) -> None:
        outcomes.record(send(fuzz, operation, actor, path_values=values))

    attempt()
    assert outcomes.counts["valid"] == 0, outcomes.counts


@pytest.mark.parametrize("operation", _ids(QUERY_OPERATIONS))
def test_bad_query_parameters_get_a_json_4xx(
    backend: Backend, fuzz: Fuzz, consumer: ConsumerStream, operation: Operation
) -> None:
    outcomes = Outcomes(operation)

    def attempt(actor: str, query: dict[str, str]) -> None:
        outcomes.record(send(fuzz, operation, actor, query=query))

    test = with_found_examples("query", operation, attempt)
    given(actor=st.sampled_from(ACTORS), query=bad_queries(operation))(fuzz_settings(60)(test))()
    outcomes.assert_valid_inputs_were_rare()


# -- and nobody else noticed ---------------------------------------------------------------


def test_the_consumer_stream_survived_the_fuzzing_and_still_delivers(
    backend: Backend, fuzz: Fuzz, consumer: ConsumerStream
) -> None:
    """Last in the module: every fuzzing run above happened while this stream was open."""
    assert consumer.failure is None, f"the consumer stream broke: {consumer.failure!r}"
    assert consumer.is_alive()
    carol_id = fuzz.client.get("/api/me", headers=fuzz.headers(CONSUMER)).json()["id"]
    title = f"after the fuzzing {uuid.uuid4().hex}"
    sent = fuzz.client.post(
        "/api/notifications",
        headers=fuzz.headers("alice"),
        json={"userId": carol_id, "title": title},
    )
    assert sent.status_code == 201, sent.text
    event = consumer.wait_for(
        lambda e: e.event == "notification:new" and json.loads(e.data)["title"] == title,
        timeout=10,
    )
    assert json.loads(event.data)["id"] == sent.json()["ids"][0]
    assert consumer.pings > 0  # it was live all along, not just reopened
