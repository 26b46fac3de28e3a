"""Search: in process on a fresh seeded database (ranking, prefixes, diacritics, who may find
what, hostile queries, the index's triggers and rebuild), then `GET /api/search` against the
real backend (shape, authentication, validation).

The in-process tests run on SQLite (FTS5) and on PostgreSQL (tsvector): the same promises.

Seeded Acme: alice, bob, carol; a 1:1 alice-bob and the group "Acme team" (all three).
Globex: dave, erin, and carol again. Each test writes the messages it searches for.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text as sql
from sqlmodel import Session

from app.db import create_schema
from app.domain.errors import InvalidInput, RateLimited
from app.domain.principal import Principal
from app.domain.search import QUERY_MAX_CHARS, Search, SearchHit
from app.domain.text import ELLIPSIS
from app.runtime import Runtime
from app.search_index import (
    MESSAGE_INDEX,
    POSTGRES_INDEX,
    SEARCH_CONFIG,
    create_search_index,
    message_vector,
)
from app.settings import Settings
from tests.backend import Backend, bearer, cached_token, conversation_titled
from tests.postgres_server import SUPERUSER, PostgresServer, database_name

MARKERS = ("\ue000", "\ue001")
pytestmark = pytest.mark.databases("sqlite", "postgres")

HIT_KEYS = {
    "messageId",
    "conversationId",
    "conversationName",
    "senderId",
    "senderName",
    "createdAt",
    "snippet",
}


# -- the world -------------------------------------------------------------------------------


@dataclass(frozen=True)
class People:
    alice: Principal
    bob: Principal
    carol: Principal  # in Acme
    carol_globex: Principal  # the same carol, acting in Globex
    dave: Principal
    erin: Principal
    direct: int  # alice-bob
    team: int  # "Acme team": alice, bob, carol
    globex_direct: int  # dave-erin
    globex_group: int  # "Globex plans": dave, erin, carol


@pytest.fixture
async def people(runtime: Runtime) -> People:
    async def sign_in(name: str, tenant_id: int | None = None) -> Principal:
        grant = await runtime.accounts.sign_in(name, f"{name}-pass", "127.0.0.1", tenant_id)
        return grant.principal

    alice, bob, carol, dave, erin = [
        await sign_in(n) for n in ("alice", "bob", "carol", "dave", "erin")
    ]
    carol_globex = await sign_in("carol", dave.tenant_id)
    views, _ = await runtime.conversations.list_for(alice)
    globex_direct, _ = await runtime.conversations.create(erin, [dave.user_id], None)
    globex_group, _ = await runtime.conversations.create(
        dave, [erin.user_id, carol.user_id], "Globex plans"
    )
    return People(
        alice=alice,
        bob=bob,
        carol=carol,
        carol_globex=carol_globex,
        dave=dave,
        erin=erin,
        direct=next(v.id for v in views if v.kind == "direct"),
        team=next(v.id for v in views if v.title == "Acme team"),
        globex_direct=globex_direct.id,
        globex_group=globex_group.id,
    )


async def send(runtime: Runtime, sender: Principal, conversation_id: int, text: str) -> int:
    return (await runtime.messages.send(sender, conversation_id, text)).message.id


async def found(runtime: Runtime, principal: Principal, query: str, limit: int = 20) -> list[int]:
    return [hit.message_id for hit in await runtime.search.search(principal, query, limit)]


def plain(hit: SearchHit) -> str:
    return "".join(segment.text for segment in hit.snippet)


def marked(hit: SearchHit) -> list[str]:
    return [segment.text for segment in hit.snippet if segment.hit]


# -- ranking and matching --------------------------------------------------------------------


async def test_a_message_with_the_term_more_often_ranks_above_an_older_one_with_it_once(
    runtime: Runtime, people: People
) -> None:
    strong = await send(runtime, people.alice, people.team, "kumquat kumquat kumquat")
    weak = await send(
        runtime, people.bob, people.team, "the kumquat tree in the yard needs water again"
    )
    assert await found(runtime, people.carol, "kumquat") == [strong, weak]


async def test_a_word_the_parser_cuts_in_two_is_one_marked_segment(
    runtime: Runtime, people: People
) -> None:
    # PostgreSQL's parser reads "2e702" as a number and "f073aea" as a word, and marks each:
    # a random hex tag made test_search_over_http_answers_ranked_hits_with_segments flaky.
    word = "2e702f073aea"
    await send(runtime, people.alice, people.team, f"{word} second {word}")
    (hit,) = await runtime.search.search(people.bob, word, 20)
    assert [(s.text, s.hit) for s in hit.snippet] == [
        (word, True),
        (" second ", False),
        (word, True),
    ]


async def test_equally_relevant_messages_come_newest_first(
    runtime: Runtime, people: People
) -> None:
    ids = [await send(runtime, people.alice, people.team, "persimmon time") for _ in range(3)]
    assert await found(runtime, people.bob, "persimmon") == ids[::-1]
    assert await found(runtime, people.bob, "persimmon", limit=2) == ids[:0:-1]


async def test_every_term_must_match_and_only_the_last_is_a_prefix(
    runtime: Runtime, people: People
) -> None:
    both = await send(runtime, people.alice, people.team, "Deployment tonight after lunch")
    one = await send(runtime, people.alice, people.team, "deployment postponed")
    assert set(await found(runtime, people.bob, "deploy")) == {both, one}
    assert await found(runtime, people.bob, "tonight deplo") == [both]
    assert await found(runtime, people.bob, "deplo tonight") == []  # "deplo" is no word
    hit = (await runtime.search.search(people.bob, "tonight deplo", 20))[0]
    assert marked(hit) == ["Deployment", "tonight"]


async def test_diacritics_do_not_matter_either_way(runtime: Runtime, people: People) -> None:
    accented = await send(runtime, people.alice, people.team, "Un café crème à Zürich")
    bare = await send(runtime, people.alice, people.team, "cafe creme a Zurich")
    assert set(await found(runtime, people.bob, "cafe")) == {accented, bare}
    assert set(await found(runtime, people.bob, "CAFÉ zur")) == {accented, bare}
    hits = await runtime.search.search(people.bob, "cafe", 20)
    hit = next(h for h in hits if h.message_id == accented)
    assert marked(hit) == ["café"]
    assert plain(hit) == "Un café crème à Zürich"


# -- who finds what --------------------------------------------------------------------------


async def test_only_the_participants_of_a_conversation_find_its_messages(
    runtime: Runtime, people: People
) -> None:
    secret = await send(runtime, people.alice, people.direct, "the surprise party is friday")
    assert await found(runtime, people.carol, "surprise party friday") == []
    assert await found(runtime, people.bob, "surprise party friday") == [secret]
    assert await found(runtime, people.alice, "surprise party friday") == [secret]


async def test_a_1to1_is_named_after_the_other_person_and_a_group_by_its_title(
    runtime: Runtime, people: People
) -> None:
    await send(runtime, people.alice, people.direct, "gooseberry jam")
    await send(runtime, people.bob, people.team, "gooseberry pie")
    for_bob = {h.conversation_id: h for h in await runtime.search.search(people.bob, "gooseb")}
    for_alice = {h.conversation_id: h for h in await runtime.search.search(people.alice, "gooseb")}
    assert for_bob[people.direct].conversation_name == "Alice"
    assert for_alice[people.direct].conversation_name == "Bob"
    assert for_bob[people.team].conversation_name == "Acme team"
    direct_hit = for_bob[people.direct]
    assert (direct_hit.sender_id, direct_hit.sender_name) == (people.alice.user_id, "Alice")
    assert direct_hit.created_at.endswith("Z")


async def test_no_tenant_finds_the_others_messages_even_with_the_exact_words(
    runtime: Runtime, people: People
) -> None:
    acme = await send(runtime, people.alice, people.team, "quarterly lighthouse budget")
    globex = await send(runtime, people.erin, people.globex_group, "quarterly lighthouse budget")
    await send(runtime, people.dave, people.globex_direct, "quarterly lighthouse budget")
    # Carol takes part in both conversations: only the tenant she acts in decides.
    assert await found(runtime, people.carol, "quarterly lighthouse budget") == [acme]
    assert await found(runtime, people.carol_globex, "quarterly lighthouse budget") == [globex]
    assert await found(runtime, people.erin, "quarterly lighthouse") != []
    for globex_user in (people.erin, people.dave):
        hits = await runtime.search.search(globex_user, "quarterly lighthouse budget", 50)
        assert acme not in {h.message_id for h in hits}
        assert {h.conversation_id for h in hits} <= {people.globex_direct, people.globex_group}
    for acme_user in (people.alice, people.bob):
        assert await found(runtime, acme_user, "quarterly lighthouse budget") == [acme]


# -- hostile input ---------------------------------------------------------------------------

HOSTILE = [
    '"',
    '""',
    '"unclosed',
    "AND",
    "OR",
    "NOT",
    "NEAR(",
    "NEAR(a b, 2)",
    "*",
    "**",
    "-x",
    "col:",
    "content:x",
    f"{MESSAGE_INDEX}:x",
    "^x",
    "(",
    ")",
    "{a b}",
    "a + b",
    "'",
    "\\",
    "\x00",
    "a\x00b",
    "%",
    "_",
    "\ue000",
    "\ue001x\ue000",
]
VOCABULARY = ["kiwi", "café", "Zürich", "and", "near", "plan", "\ue000", "é"]
CONTENTS = [
    "kiwi AND café NEAR(plan) in Zürich",
    'a "quoted" kiwi * -x col:kiwi',
    "forged \ue000kiwi\ue001 markers \ue001café\ue000 here",
    " ".join(["plan"] * 30 + ["kiwi"] + ["filler"] * 60),  # longer than a snippet
]


@dataclass(frozen=True)
class HostileWorld:
    runtime: Runtime
    people: People
    contents: dict[int, str]  # message id -> content
    visible: dict[int, set[int]]  # user id -> the message ids they may find


@pytest.fixture
async def hostile_world(runtime: Runtime, people: People) -> HostileWorld:
    contents: dict[int, str] = {}
    for text in CONTENTS:
        for sender, conversation in (
            (people.alice, people.direct),
            (people.bob, people.team),
            (people.erin, people.globex_group),
        ):
            contents[await send(runtime, sender, conversation, text)] = text
    acme_direct = {i for i, _ in list(contents.items())[0::3]}
    acme_team = {i for i, _ in list(contents.items())[1::3]}
    return HostileWorld(
        runtime,
        people,
        contents,
        visible={people.bob.user_id: acme_direct | acme_team, people.carol.user_id: acme_team},
    )


QUERIES = st.one_of(
    st.text(),
    st.lists(st.sampled_from(HOSTILE + VOCABULARY), min_size=1, max_size=6).map(" ".join),
    st.lists(st.sampled_from(HOSTILE + VOCABULARY), min_size=1, max_size=4).map("".join),
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(query=QUERIES, as_carol=st.booleans())
@example(query="kiwi", as_carol=False)
@example(query='"kiwi" AND', as_carol=False)
@example(query="forged kiwi", as_carol=True)
async def test_any_query_either_finds_only_visible_messages_or_is_refused(
    hostile_world: HostileWorld, query: str, as_carol: bool
) -> None:
    world = hostile_world
    principal = world.people.carol if as_carol else world.people.bob
    if len(query) > QUERY_MAX_CHARS or not query.replace("\x00", " ").split():
        with pytest.raises(InvalidInput):
            await world.runtime.search.search(principal, query, 50)
        return
    hits = await world.runtime.search.search(principal, query, 50)
    assert {h.message_id for h in hits} <= world.visible[principal.user_id]
    for hit in hits:
        text = plain(hit)
        assert not any(marker in text for marker in MARKERS)
        content = "".join(c for c in world.contents[hit.message_id] if c not in MARKERS)
        assert text.removeprefix(ELLIPSIS).removesuffix(ELLIPSIS) in content
        assert all(segment.text for segment in hit.snippet)


async def test_hostile_queries_are_words_and_forged_markers_mark_nothing(
    hostile_world: HostileWorld,
) -> None:
    world = hostile_world
    bob = world.people.bob
    for query in HOSTILE:
        if query.replace("\x00", " ").split():
            await world.runtime.search.search(bob, query, 50)  # never raises
    # Quotes and operators are plain words: the message that has them is found by them.
    quoted = [i for i, c in world.contents.items() if c.startswith('a "quoted"')]
    assert set(await found(world.runtime, bob, '"quoted" kiwi -x col:')) <= set(quoted)
    assert set(await found(world.runtime, bob, '"quoted" kiwi -x col:')) & set(quoted)
    forged = await world.runtime.search.search(bob, "markers", 50)
    assert forged
    for hit in forged:
        assert marked(hit) == ["markers"]
        assert plain(hit) == "forged kiwi markers café here"
    long_hits = await world.runtime.search.search(bob, "kiwi filler", 50)
    long_hit = next(h for h in long_hits if plain(h).startswith(ELLIPSIS))
    assert marked(long_hit)[0] == "kiwi"
    assert plain(long_hit).endswith(ELLIPSIS)


async def test_an_empty_or_overlong_query_and_a_limit_outside_1_to_50_are_refused(
    runtime: Runtime, people: People
) -> None:
    for query in ("", " ", "\t\n", "\x00", "x" * (QUERY_MAX_CHARS + 1)):
        with pytest.raises(InvalidInput):
            await runtime.search.search(people.alice, query, 20)
    for limit in (0, -1, 51):
        with pytest.raises(InvalidInput):
            await runtime.search.search(people.alice, "welcome", limit)
    assert await found(runtime, people.alice, "x" * QUERY_MAX_CHARS) == []


# -- the index follows the table -------------------------------------------------------------


async def execute(runtime: Runtime, statement: str, **params: Any) -> None:
    """Plain SQL, past every use case: what a migration or an operator would run."""

    def work(session: Session) -> None:
        session.connection().execute(sql(statement), params)
        session.commit()

    await runtime.db.run(work)


async def test_an_update_statement_moves_a_message_to_its_new_words(
    runtime: Runtime, people: People
) -> None:
    message = await send(runtime, people.alice, people.team, "meet at the old harbour")
    await execute(
        runtime,
        "UPDATE message SET content = :content WHERE id = :id",
        content="meet at the new station",
        id=message,
    )
    assert await found(runtime, people.bob, "harbour") == []
    assert await found(runtime, people.bob, "station") == [message]
    hit = (await runtime.search.search(people.bob, "station", 20))[0]
    assert plain(hit) == "meet at the new station"


async def test_an_edit_is_found_by_its_new_words_and_a_deleted_message_not_at_all(
    runtime: Runtime, people: People
) -> None:
    edited = await send(runtime, people.alice, people.team, "lunch at the noodle bar")
    deleted = await send(runtime, people.alice, people.team, "lunch at the taco stand")
    await runtime.messages.edit(people.alice, people.team, edited, "lunch at the dumpling bar")
    await runtime.messages.delete(people.alice, people.team, deleted)
    assert await found(runtime, people.bob, "lunch") == [edited]
    assert await found(runtime, people.bob, "noodle") == []
    assert await found(runtime, people.bob, "taco") == []
    assert await found(runtime, people.bob, "dumpling") == [edited]


async def test_a_blanked_marked_deleted_or_removed_message_is_not_found(
    runtime: Runtime, people: People
) -> None:
    blanked = await send(runtime, people.alice, people.team, "rhubarb crumble recipe")
    marked_deleted = await send(runtime, people.alice, people.team, "rhubarb jelly recipe")
    removed = await send(runtime, people.alice, people.team, "rhubarb soup recipe")
    kept = await send(runtime, people.alice, people.team, "rhubarb tart recipe")
    await execute(runtime, "UPDATE message SET content = '' WHERE id = :id", id=blanked)
    await execute(
        runtime,
        "UPDATE message SET deleted_at = CURRENT_TIMESTAMP WHERE id = :id",
        id=marked_deleted,
    )
    await execute(runtime, "DELETE FROM message WHERE id = :id", id=removed)
    assert await found(runtime, people.bob, "rhubarb recipe") == [kept]
    like = Search(runtime.db, full_text=False)
    assert [h.message_id for h in await like.search(people.bob, "rhubarb", 20)] == [kept]


@pytest.mark.databases("sqlite")
async def test_messages_written_before_the_index_existed_are_found_once_it_is_created(
    runtime: Runtime, people: People
) -> None:
    """A database from before search: no index, no triggers. Starting the new version
    creates them and indexes what is there."""
    for name in ("insert", "update", "delete"):
        await execute(runtime, f"DROP TRIGGER {MESSAGE_INDEX}_{name}")
    await execute(runtime, f"DROP TABLE {MESSAGE_INDEX}")
    older = await send(runtime, people.alice, people.team, "vintage walnut archive")
    create_schema(runtime.db.engine)
    assert await found(runtime, people.bob, "walnut") == [older]
    assert await found(runtime, people.bob, "welcome acme") != []  # the seeded message
    newer = await send(runtime, people.bob, people.team, "walnut pesto")
    assert create_search_index(runtime.db.engine) is False  # already there: no rebuild
    assert set(await found(runtime, people.bob, "walnut")) == {older, newer}


@pytest.mark.databases("postgres")
async def test_postgres_messages_written_before_the_index_existed_are_found_once_it_is_created(
    runtime: Runtime, people: People
) -> None:
    """The same on PostgreSQL: a database from before search has neither the configuration
    nor the index; starting the new version makes both, over the messages there."""
    await execute(runtime, f"DROP INDEX {POSTGRES_INDEX}")
    await execute(runtime, f"DROP TEXT SEARCH CONFIGURATION {SEARCH_CONFIG}")
    older = await send(runtime, people.alice, people.team, "vintage walnut archive")
    assert create_search_index(runtime.db.engine) is True
    assert await found(runtime, people.bob, "walnut") == [older]
    assert await found(runtime, people.bob, "welcome acme") != []  # the seeded message
    newer = await send(runtime, people.bob, people.team, "walnut pesto")
    assert create_search_index(runtime.db.engine) is False  # already there
    assert set(await found(runtime, people.bob, "walnut")) == {older, newer}


@pytest.mark.databases("postgres")
async def test_postgres_searches_use_the_index(runtime: Runtime, people: People) -> None:
    """The search spells the indexed expression (`message_vector`) exactly, or PostgreSQL
    would read every message."""
    await send(runtime, people.alice, people.team, "an indexed needle")
    vector = message_vector("message.content")

    def plan(session: Session) -> str:
        session.connection().exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = session.connection().execute(
            sql(
                f"EXPLAIN SELECT id FROM message WHERE {vector} @@ "
                f"phraseto_tsquery('{SEARCH_CONFIG}'::regconfig, :term)"
            ),
            {"term": "needle"},
        )
        return "\n".join(row[0] for row in rows)

    assert POSTGRES_INDEX in await runtime.db.run(plan)


@pytest.mark.databases("postgres")
async def test_postgres_without_unaccent_searches_with_diacritics_mattering(
    database_kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """A role that may create tables but not extensions (no CREATE on the database): the
    app still starts, with a warning, and search works; only diacritics then matter."""
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database("limited")
    name = database_name(url)
    role = f"limited_{name}"
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
    with psycopg.connect(server.dsn(name), autocommit=True) as owner:
        owner.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')
    limited_url = url.replace(f"//{SUPERUSER}@", f"//{role}@", 1)
    runtime = Runtime(
        replace(
            Settings(),
            database_url=limited_url,
            sse_heartbeat_seconds=0,
            rate_limit_searches_per_minute=100_000,
            rate_limit_searches_burst=10_000,
        )
    )
    with caplog.at_level("WARNING", logger="app.search_index"):
        await runtime.start()
    try:
        assert "unaccent extension is unavailable" in caplog.text
        alice = (await runtime.accounts.sign_in("alice", "alice-pass", "127.0.0.1", None)).principal
        views, _ = await runtime.conversations.list_for(alice)
        team = next(v.id for v in views if v.title == "Acme team")
        accented = await send(runtime, alice, team, "Un café à Zürich")
        assert await found(runtime, alice, "café zür") == [accented]
        assert await found(runtime, alice, "cafe") == []
    finally:
        await runtime.stop()


# -- LIKE (neither database's index) ---------------------------------------------------------


async def test_the_like_fallback_finds_case_insensitively_within_the_same_walls(
    runtime: Runtime, people: People
) -> None:
    like = Search(runtime.db, full_text=False)
    first = await send(runtime, people.alice, people.team, "Budget 100% approved_today")
    second = await send(runtime, people.alice, people.direct, "the BUDGET is approved")
    await send(runtime, people.erin, people.globex_group, "budget approved")
    bob_hits = await like.search(people.bob, "budget APPROVED", 20)
    assert [h.message_id for h in bob_hits] == [second, first]  # newest first
    assert marked(bob_hits[0]) == ["BUDGET", "approved"]
    assert [h.message_id for h in await like.search(people.carol, "budget", 20)] == [first]
    assert [h.message_id for h in await like.search(people.carol_globex, "budget", 20)] != [first]
    # LIKE's wildcards are literal characters.
    assert [h.message_id for h in await like.search(people.bob, "100%", 20)] == [first]
    assert [h.message_id for h in await like.search(people.bob, "t_e", 20)] == []  # not "the"


# -- over HTTP, against the real backend -----------------------------------------------------


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.server
async def test_search_over_http_answers_ranked_hits_with_segments(
    backend: Backend, http: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex[:12]
    alice, bob = cached_token(backend, "alice"), cached_token(backend, "bob")
    team = conversation_titled(backend, "bob", "Acme team")
    ids = []
    for text in (f"{tag} first", f"{tag} second {tag}", f"{tag} third"):
        sent = await http.post(
            f"/api/conversations/{team}/messages", headers=bearer(alice), json={"content": text}
        )
        assert sent.status_code == 201, sent.text
        ids.append(sent.json()["id"])
    response = await http.get("/api/search", params={"q": tag}, headers=bearer(bob))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"results"}
    results = body["results"]
    assert [r["messageId"] for r in results] == [ids[1], ids[2], ids[0]]
    for result in results:
        assert set(result) == HIT_KEYS
        assert result["conversationId"] == team
        assert result["conversationName"] == "Acme team"
        assert result["senderName"] == "Alice"
        assert isinstance(result["senderId"], int) and result["createdAt"].endswith("Z")
        for segment in result["snippet"]:
            assert set(segment) == {"text", "hit"} and isinstance(segment["hit"], bool)
    assert results[0]["snippet"] == [
        {"text": tag, "hit": True},
        {"text": " second ", "hit": False},
        {"text": tag, "hit": True},
    ]
    limited = await http.get("/api/search", params={"q": tag, "limit": "1"}, headers=bearer(bob))
    assert [r["messageId"] for r in limited.json()["results"]] == [ids[1]]
    erin = cached_token(backend, "erin")
    foreign = await http.get("/api/search", params={"q": tag}, headers=bearer(erin))
    assert foreign.status_code == 200 and foreign.json() == {"results": []}


@pytest.mark.server
async def test_search_over_http_needs_a_token(backend: Backend, http: httpx.AsyncClient) -> None:
    assert _error(await http.get("/api/search", params={"q": "x"}), 401)["code"] == (
        "not_authenticated"
    )
    garbage = await http.get("/api/search", params={"q": "x"}, headers=bearer("nope"))
    assert _error(garbage, 401)["code"] == "not_authenticated"


@pytest.mark.server
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": ""},
        {"q": "   "},
        {"q": "x" * (QUERY_MAX_CHARS + 1)},
        {"q": "x", "limit": "0"},
        {"q": "x", "limit": "51"},
        {"q": "x", "limit": "ten"},
        {"q": "x", "limit": "1.5"},
    ],
    ids=["no q", "empty", "blank", "too long", "limit 0", "limit 51", "limit ten", "limit 1.5"],
)
async def test_search_over_http_refuses_bad_parameters_with_a_422(
    backend: Backend, http: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await http.get(
        "/api/search", params=params, headers=bearer(cached_token(backend, "bob"))
    )
    error = _error(response, 422)
    assert error["code"] in {"invalid_request", "invalid_input"}
    if "q" in params and not params["q"].strip():
        assert "q must contain" in error["message"]


async def test_searches_are_rate_limited_per_user_with_a_retry_after(tmp_path: Path) -> None:
    settings = replace(
        Settings(),
        database_url=f"sqlite:///{tmp_path / 'chat.db'}",
        sse_heartbeat_seconds=0,
        rate_limit_searches_per_minute=6,
        rate_limit_searches_burst=2,
    )
    runtime = Runtime(settings)
    await runtime.start()
    try:
        bob = (await runtime.accounts.sign_in("bob", "bob-pass", "127.0.0.1", None)).principal
        alice = (await runtime.accounts.sign_in("alice", "alice-pass", "127.0.0.1", None)).principal
        for _ in range(2):
            await runtime.search.search(bob, "welcome")
        with pytest.raises(RateLimited) as refused:
            await runtime.search.search(bob, "welcome")
        assert 1 <= refused.value.retry_after <= 10
        # Another user's budget is their own.
        assert await runtime.search.search(alice, "welcome") is not None
    finally:
        await runtime.stop()
