"""Conversation management (issue 15): creating, renaming, adding and removing people,
leaving; each change stored first, then announced as `chat:conversation` to exactly the
right people, in process on the real service.

The world is the one of tests/test_chat_use_cases.py (tests/seeded_chat.py): a fresh copy
of the seeded database per test, so every test starts from the demo data (the 1:1 alice-bob; "Acme team" with alice, bob and carol, where bob and carol
have alice's welcome message unread; Globex's dave, and carol again in Globex).

Each test listens on every Acme user, dave and carol-in-Globex, so "no one else heard" is
checked, not assumed. The last test in the event part is Zulip's verify_action for the
conversation list: each user's list before a change, with the change's events applied,
equals a fresh read after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from app.api import build_api
from app.api.deps import current_runtime
from app.client.events import ClientEvent
from app.client.format import describe
from app.domain.conversations import participant_ids
from app.domain.errors import InvalidInput, NotFound
from app.domain.principal import Principal
from app.realtime.client import Client
from app.realtime.events import Event, EventType
from app.runtime import Runtime
from tests.seeded_chat import (
    MakeRuntime,
    Seeded,
    data_of,
    drain,
    listen,
    new_group,
    send_all,
    unread_of,
)

# On SQLite and on PostgreSQL (tests/databases.py).
pytestmark = pytest.mark.databases("sqlite", "postgres")

CONVERSATION = EventType.CHAT_CONVERSATION
UNREAD = EventType.CHAT_UNREAD_COUNT
WATCHED = (
    CONVERSATION,
    UNREAD,
    EventType.CHAT_MESSAGE,
    EventType.CHAT_TYPING,
)
NO_SUCH_CONVERSATION = "No such conversation."


@pytest.fixture
async def runtime(make_runtime: MakeRuntime) -> Runtime:
    """A runtime on a copy of the seeded database (tests/seeded_chat.py)."""
    return await make_runtime()


# -- helpers ----------------------------------------------------------------------------------


async def everyone(runtime: Runtime, seeded: Seeded) -> dict[str, Client]:
    """A client of each Acme user, of dave, and of carol acting in Globex."""
    principals = {
        "alice": seeded.alice,
        "bob": seeded.bob,
        "carol": seeded.carol,
        "dave": seeded.dave,
        "carol@globex": seeded.carol_globex,
    }
    return {name: await listen(runtime, p, *WATCHED) for name, p in principals.items()}


async def heard(clients: dict[str, Client]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """What each client has queued now, as (type, data); only those that heard anything."""
    found = {name: [(e.type, e.data) for e in await drain(c)] for name, c in clients.items()}
    return {name: events for name, events in found.items() if events}


def body(view: Any) -> dict[str, Any]:
    """The conversation as an event carries it."""
    return {
        "id": view.id,
        "kind": view.kind,
        "title": view.title,
        "participants": [
            {"id": p.id, "username": p.username, "displayName": p.display_name}
            for p in view.participants
        ],
        "createdAt": view.created_at,
    }


def conversation_event(action: str, view: Any) -> tuple[str, dict[str, Any]]:
    return (
        CONVERSATION,
        {"conversationId": view.id, "action": action, "conversation": body(view)},
    )


def ids_of(*principals: Principal) -> list[int]:
    return sorted(p.user_id for p in principals)


async def listed(runtime: Runtime, principal: Principal) -> set[int]:
    views, _ = await runtime.conversations.list_for(principal)
    return {v.id for v in views}


def record_members_at_publish(
    runtime: Runtime, conversation_id: int
) -> list[tuple[str, list[int]]]:
    """(action, the stored participants) as each chat:conversation event is published: an
    event announces only what is committed."""
    seen: list[tuple[str, list[int]]] = []
    publish = runtime.manager.publish

    async def publish_after_looking(event: Event) -> Any:
        if event.type == CONVERSATION:
            stored = await runtime.db.run(lambda session: participant_ids(session, conversation_id))
            seen.append((event.data["action"], stored))
        return await publish(event)

    runtime.manager.publish = publish_after_looking  # type: ignore[method-assign]  # a spy on the instance
    return seen


# -- created ----------------------------------------------------------------------------------


async def test_a_new_conversation_is_announced_as_created_to_its_participants_once_stored(
    runtime: Runtime, seeded: Seeded
) -> None:
    clients = await everyone(runtime, seeded)
    stored: list[set[int]] = []
    publish = runtime.manager.publish

    async def publish_after_looking(event: Event) -> Any:
        if event.type == CONVERSATION:
            stored.append(await listed(runtime, seeded.bob))
        return await publish(event)

    runtime.manager.publish = publish_after_looking  # type: ignore[method-assign]  # a spy on the instance
    view, created = await runtime.conversations.create(
        seeded.alice, [seeded.bob.user_id], "Planning"
    )
    assert created
    assert await heard(clients) == {
        "alice": [conversation_event("created", view)],  # her other tabs list it too
        "bob": [conversation_event("created", view)],
    }
    assert len(stored) == 1 and view.id in stored[0]  # listed for bob before he heard of it

    # A repeated 1:1 creates nothing and announces nothing.
    _, created = await runtime.conversations.create(seeded.bob, [seeded.alice.user_id], None)
    assert not created
    assert await heard(clients) == {}

    # In Globex: carol hears of it there only, though it is the same user channel.
    globex, _ = await runtime.conversations.create(seeded.dave, [seeded.carol.user_id], None)
    assert await heard(clients) == {
        "dave": [conversation_event("created", globex)],
        "carol@globex": [conversation_event("created", globex)],
    }


# -- rename -----------------------------------------------------------------------------------


async def test_renaming_a_group_tells_every_participant_and_no_one_else(
    runtime: Runtime, seeded: Seeded
) -> None:
    clients = await everyone(runtime, seeded)
    seen = record_members_at_publish(runtime, seeded.group_id)
    view = await runtime.conversations.rename(seeded.bob, seeded.group_id, "  Acme crew \n")
    assert view.title == "Acme crew"
    updated = conversation_event("updated", view)
    assert await heard(clients) == {"alice": [updated], "bob": [updated], "carol": [updated]}
    assert seen == [("updated", ids_of(seeded.alice, seeded.bob, seeded.carol))]
    assert (await runtime.conversations.get(seeded.carol, seeded.group_id)).title == "Acme crew"

    # The same title again: accepted, nothing announced.
    assert (await runtime.conversations.rename(seeded.alice, seeded.group_id, "Acme crew")).title
    assert await heard(clients) == {}

    # Blank or None clears it: the group is then named after its people.
    for cleared in ("   ", None):
        await runtime.conversations.rename(seeded.alice, seeded.group_id, "again")
        await heard(clients)
        view = await runtime.conversations.rename(seeded.alice, seeded.group_id, cleared)
        assert view.title is None
        assert [e[1]["conversation"]["title"] for e in (await heard(clients))["bob"]] == [None]


async def test_a_title_over_the_limit_is_refused_and_nothing_changes(
    runtime: Runtime, seeded: Seeded
) -> None:
    clients = await everyone(runtime, seeded)
    limit = runtime.settings.conversation_title_max_chars  # the limit `create` uses
    with pytest.raises(InvalidInput, match=f"longer than {limit}"):
        await runtime.conversations.rename(seeded.alice, seeded.group_id, "x" * (limit + 1))
    assert await heard(clients) == {}
    assert (await runtime.conversations.get(seeded.alice, seeded.group_id)).title == "Acme team"
    # Exactly the limit, counted after trimming, is fine.
    view = await runtime.conversations.rename(seeded.alice, seeded.group_id, f" {'y' * limit} ")
    assert view.title == "y" * limit


# -- add --------------------------------------------------------------------------------------


async def test_adding_people_tells_the_group_updated_and_the_newcomers_added(
    runtime: Runtime, seeded: Seeded
) -> None:
    group = await new_group(runtime, seeded.alice, seeded.bob)
    (m1,) = await send_all(runtime, seeded.bob, group, "before carol came")
    clients = await everyone(runtime, seeded)
    seen = record_members_at_publish(runtime, group)
    # bob and alice are in already: left alone.
    ids = [seeded.carol.user_id, seeded.bob.user_id, seeded.alice.user_id, seeded.carol.user_id]
    view = await runtime.conversations.add_people(seeded.bob, group, ids)
    assert [p.id for p in view.participants] == ids_of(seeded.alice, seeded.bob, seeded.carol)
    assert await heard(clients) == {
        "alice": [conversation_event("updated", view)],
        "bob": [conversation_event("updated", view)],
        "carol": [conversation_event("added", view)],
    }
    everyone_in = ids_of(seeded.alice, seeded.bob, seeded.carol)
    assert seen == [("updated", everyone_in), ("added", everyone_in)]

    # carol lists it with nothing unread, and reads the history from before she came.
    unread, total = await unread_of(runtime, seeded.carol)
    assert (unread[group], total) == (0, 1)  # her 1 is the welcome message in Acme team
    page = await runtime.messages.history(seeded.carol, group, before=None, limit=10)
    assert [m.id for m in page.items] == [m1]
    # ... and from now on hears its messages like anyone.
    (m2,) = await send_all(runtime, seeded.alice, group, "welcome carol")
    carol_heard = (await heard(clients))["carol"]
    assert [m["message"]["id"] for _, m in carol_heard if "message" in m] == [m2]
    assert (await unread_of(runtime, seeded.carol))[0][group] == 1

    # Adding only people who are in already: nothing to store, nothing announced.
    await runtime.conversations.add_people(seeded.carol, group, [seeded.alice.user_id])
    await runtime.conversations.add_people(seeded.carol, group, ids)
    assert await heard(clients) == {}


async def test_people_outside_the_tenant_cannot_be_added_and_nothing_is_stored(
    runtime: Runtime, seeded: Seeded
) -> None:
    group = await new_group(runtime, seeded.alice, seeded.bob)
    clients = await everyone(runtime, seeded)
    for user_ids in (
        [seeded.dave.user_id],
        [seeded.carol.user_id, seeded.dave.user_id],  # all or nothing
        [987_654],
    ):
        with pytest.raises(NotFound, match="No such user in this tenant."):
            await runtime.conversations.add_people(seeded.alice, group, user_ids)
    with pytest.raises(InvalidInput):
        await runtime.conversations.add_people(seeded.alice, group, [])
    assert await heard(clients) == {}
    view = await runtime.conversations.get(seeded.alice, group)
    assert [p.id for p in view.participants] == ids_of(seeded.alice, seeded.bob)


async def test_a_group_takes_at_most_the_configured_number_of_people(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(group_max_participants=2)
    group = await new_group(runtime, seeded.alice, seeded.bob)
    clients = await everyone(runtime, seeded)
    with pytest.raises(InvalidInput, match="at most 2 participants"):
        await runtime.conversations.add_people(seeded.alice, group, [seeded.carol.user_id])
    assert await heard(clients) == {}
    assert seeded.carol.user_id not in {
        p.id for p in (await runtime.conversations.get(seeded.alice, group)).participants
    }


# -- remove and leave -------------------------------------------------------------------------


async def test_a_participant_removes_another_who_loses_the_conversation_at_once(
    runtime: Runtime, seeded: Seeded
) -> None:
    clients = await everyone(runtime, seeded)
    seen = record_members_at_publish(runtime, seeded.group_id)
    # bob is no admin: any participant may remove another.
    view = await runtime.conversations.remove_person(
        seeded.bob, seeded.group_id, seeded.carol.user_id
    )
    assert [p.id for p in view.participants] == ids_of(seeded.alice, seeded.bob)
    assert await heard(clients) == {
        "alice": [conversation_event("updated", view)],
        "bob": [conversation_event("updated", view)],
        # carol had the welcome message unread: her count for it, and her total, go to 0.
        "carol": [
            conversation_event("removed", view),
            (UNREAD, {"conversationId": seeded.group_id, "count": 0, "total": 0}),
        ],
    }
    remaining = ids_of(seeded.alice, seeded.bob)
    assert seen == [("updated", remaining), ("removed", remaining)]
    assert await unread_of(runtime, seeded.carol) == ({}, 0)

    # The history, the conversation and its messages are out of her reach from now on.
    assert seeded.group_id not in await listed(runtime, seeded.carol)
    assert await runtime.search.search(seeded.bob, "welcome", 20)  # the words are there ...
    assert await runtime.search.search(seeded.carol, "welcome", 20) == []  # ... not for her
    for attempt in (
        lambda: runtime.messages.history(seeded.carol, seeded.group_id, before=None, limit=10),
        lambda: runtime.conversations.get(seeded.carol, seeded.group_id),
        lambda: runtime.messages.send(seeded.carol, seeded.group_id, "let me back"),
        lambda: runtime.typing.set_typing(seeded.carol, seeded.group_id, True),
        lambda: runtime.conversations.leave(seeded.carol, seeded.group_id),
    ):
        with pytest.raises(NotFound, match=NO_SUCH_CONVERSATION):
            await attempt()
    await send_all(runtime, seeded.alice, seeded.group_id, "just us now")
    found = await heard(clients)
    assert [e[0] for e in found["bob"]] == [EventType.CHAT_MESSAGE, UNREAD]
    assert set(found) == {"alice", "bob"}  # carol heard nothing of it

    # Removing her again: she is no participant.
    with pytest.raises(NotFound, match="No such participant"):
        await runtime.conversations.remove_person(
            seeded.alice, seeded.group_id, seeded.carol.user_id
        )
    assert await heard(clients) == {}


async def test_leaving_tells_the_leavers_tabs_removed_and_the_others_updated(
    runtime: Runtime, seeded: Seeded
) -> None:
    await runtime.messages.mark_read(seeded.bob, seeded.group_id)  # bob: nothing unread
    clients = await everyone(runtime, seeded)
    await runtime.conversations.leave(seeded.bob, seeded.group_id)
    view = await runtime.conversations.get(seeded.alice, seeded.group_id)
    assert [p.id for p in view.participants] == ids_of(seeded.alice, seeded.carol)
    assert await heard(clients) == {
        "alice": [conversation_event("updated", view)],
        "carol": [conversation_event("updated", view)],
        "bob": [conversation_event("removed", view)],  # no unread count: his did not change
    }
    assert await listed(runtime, seeded.bob) == {seeded.direct_id}
    with pytest.raises(NotFound, match=NO_SUCH_CONVERSATION):
        await runtime.conversations.leave(seeded.bob, seeded.group_id)

    # The last ones leave, the very last with no one left to tell "updated".
    await runtime.conversations.leave(seeded.carol, seeded.group_id)
    await runtime.conversations.leave(seeded.alice, seeded.group_id)
    found = await heard(clients)
    assert set(found) == {"alice", "carol"}

    def actions(name: str) -> list[tuple[str, list[int]]]:
        return [
            (data["action"], [p["id"] for p in data["conversation"]["participants"]])
            for event_type, data in found[name]
            if event_type == CONVERSATION
        ]

    assert actions("carol") == [("removed", [seeded.alice.user_id])]
    assert actions("alice") == [("updated", [seeded.alice.user_id]), ("removed", [])]
    # carol had the welcome message unread; alice had not.
    assert [d for t, d in found["carol"] if t == UNREAD] == [
        {"conversationId": seeded.group_id, "count": 0, "total": 0}
    ]
    assert [t for t, _ in found["alice"]] == [CONVERSATION, CONVERSATION]
    assert seeded.group_id not in await listed(runtime, seeded.alice)


async def test_removing_yourself_is_leaving(runtime: Runtime, seeded: Seeded) -> None:
    with pytest.raises(InvalidInput, match="leave"):
        await runtime.conversations.remove_person(
            seeded.alice, seeded.group_id, seeded.alice.user_id
        )
    assert seeded.group_id in await listed(runtime, seeded.alice)


async def test_the_leavers_typing_stops_and_no_typing_there_reaches_them(
    runtime: Runtime, seeded: Seeded
) -> None:
    group = seeded.group_id
    await runtime.typing.set_typing(seeded.carol, group, True)
    await runtime.typing.set_typing(seeded.bob, group, True)
    clients = await everyone(runtime, seeded)
    await runtime.conversations.leave(seeded.bob, group)
    stop = {
        "conversationId": group,
        "userId": seeded.bob.user_id,
        "userName": "Bob",
        "isTyping": False,
    }
    for name in ("alice", "carol"):
        assert data_of(await drain(clients[name]), EventType.CHAT_TYPING) == [stop], name
    assert not runtime.typing.is_typing(seeded.acme_id, group, seeded.bob.user_id)
    assert data_of(await drain(clients["bob"]), EventType.CHAT_TYPING) == []
    # carol, typing since before, stops: alice hears it, bob does not.
    await runtime.typing.set_typing(seeded.carol, group, False)
    carol_stops = {**stop, "userId": seeded.carol.user_id, "userName": "Carol"}
    assert await heard(clients) == {"alice": [(EventType.CHAT_TYPING, carol_stops)]}


# -- refusals ---------------------------------------------------------------------------------


def admin_attempts(
    runtime: Runtime, principal: Principal, conversation_id: int, other: Principal
) -> dict[str, Callable[[], Awaitable[Any]]]:
    conversations = runtime.conversations
    return {
        "rename": lambda: conversations.rename(principal, conversation_id, "mine now"),
        "add": lambda: conversations.add_people(principal, conversation_id, [other.user_id]),
        "remove": lambda: conversations.remove_person(principal, conversation_id, other.user_id),
        "leave": lambda: conversations.leave(principal, conversation_id),
    }


async def test_a_1to1_cannot_be_renamed_left_or_given_other_people(
    runtime: Runtime, seeded: Seeded
) -> None:
    clients = await everyone(runtime, seeded)
    attempts = admin_attempts(runtime, seeded.alice, seeded.direct_id, seeded.carol)
    attempts["remove bob"] = lambda: runtime.conversations.remove_person(
        seeded.alice, seeded.direct_id, seeded.bob.user_id
    )
    messages = {}
    for name, attempt in attempts.items():
        with pytest.raises(InvalidInput) as refused:
            await attempt()
        messages[name] = refused.value.message
    assert messages == {
        "rename": "A 1:1 conversation cannot be renamed.",
        "add": "A 1:1 conversation cannot take more people: start a group with them.",
        "remove": "Nobody can be removed from a 1:1 conversation.",
        "leave": "A 1:1 conversation cannot be left; it stays between the two of you.",
        "remove bob": "Nobody can be removed from a 1:1 conversation.",
    }
    assert await heard(clients) == {}
    view = await runtime.conversations.get(seeded.bob, seeded.direct_id)
    assert (view.title, [p.id for p in view.participants]) == (
        None,
        ids_of(seeded.alice, seeded.bob),
    )


async def test_anyone_outside_the_conversation_gets_not_found_and_nothing_is_emitted(
    runtime: Runtime, seeded: Seeded
) -> None:
    """carol and the 1:1 alice-bob; dave, and carol acting in Globex, and Acme's group: the
    answer of a conversation that does not exist, whatever the change."""
    clients = await everyone(runtime, seeded)
    cases = [
        (seeded.carol, seeded.direct_id),
        (seeded.dave, seeded.group_id),
        (seeded.carol_globex, seeded.group_id),
        (seeded.alice, 987_654),
    ]
    for principal, conversation_id in cases:
        for name, attempt in admin_attempts(
            runtime, principal, conversation_id, seeded.bob
        ).items():
            with pytest.raises(NotFound) as refused:
                await attempt()
            assert refused.value.message == NO_SUCH_CONVERSATION, (principal.username, name)
    assert await heard(clients) == {}
    for conversation_id in (seeded.direct_id, seeded.group_id):
        view = await runtime.conversations.get(seeded.alice, conversation_id)
        assert view.title in (None, "Acme team")
        assert seeded.dave.user_id not in {p.id for p in view.participants}


async def test_removing_someone_of_another_tenant_is_removing_no_one(
    runtime: Runtime, seeded: Seeded
) -> None:
    clients = await everyone(runtime, seeded)
    answers = []
    for user_id in (seeded.dave.user_id, 987_654):
        with pytest.raises(NotFound) as refused:
            await runtime.conversations.remove_person(seeded.alice, seeded.group_id, user_id)
        answers.append(refused.value.message)
    assert answers[0] == answers[1]
    assert await heard(clients) == {}


# -- verify_action: the events rebuild each user's list -----------------------------------------


@dataclass(frozen=True, slots=True)
class Listed:
    kind: str
    title: str | None
    participants: tuple[int, ...]
    unread: int


@dataclass(frozen=True, slots=True)
class ListState:
    conversations: dict[int, Listed]
    total: int


async def read_list(runtime: Runtime, principal: Principal) -> ListState:
    views, total = await runtime.conversations.list_for(principal)
    return ListState(
        {
            v.id: Listed(v.kind, v.title, tuple(p.id for p in v.participants), v.unread_count)
            for v in views
        },
        total,
    )


def apply_list_event(state: ListState, event: Event) -> ListState:
    """What a consumer's conversation list does with an event (others leave it alone)."""
    data = event.data
    conversations = dict(state.conversations)
    if event.type == CONVERSATION:
        body_ = data["conversation"]
        if data["action"] == "removed":
            conversations.pop(data["conversationId"], None)
        else:
            known = conversations.get(data["conversationId"])
            conversations[data["conversationId"]] = Listed(
                body_["kind"],
                body_["title"],
                tuple(p["id"] for p in body_["participants"]),
                0 if known is None else known.unread,  # new to the list: nothing unread
            )
        return replace(state, conversations=conversations)
    if event.type == UNREAD:
        known = conversations.get(data["conversationId"])
        if known is not None:
            conversations[data["conversationId"]] = replace(known, unread=data["count"])
        return ListState(conversations, data["total"])
    return state


async def test_each_change_s_events_applied_to_the_list_before_give_the_list_after(
    runtime: Runtime, seeded: Seeded
) -> None:
    people = [seeded.alice, seeded.bob, seeded.carol, seeded.dave, seeded.carol_globex]
    clients = [await listen(runtime, p, CONVERSATION, UNREAD) for p in people]
    states = [await read_list(runtime, p) for p in people]
    conversations = runtime.conversations
    alice, bob, carol = seeded.alice, seeded.bob, seeded.carol
    group: list[int] = []

    async def create() -> None:
        view, _ = await conversations.create(alice, [bob.user_id], "Launch")
        group.append(view.id)

    actions: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("create", create),
        ("message", lambda: runtime.messages.send(bob, group[0], "hello")),
        ("rename", lambda: conversations.rename(bob, group[0], "Launch day")),
        ("add carol", lambda: conversations.add_people(alice, group[0], [carol.user_id])),
        ("carol writes", lambda: runtime.messages.send(carol, group[0], "hi")),
        ("remove alice", lambda: conversations.remove_person(carol, group[0], alice.user_id)),
        ("add alice back", lambda: conversations.add_people(bob, group[0], [alice.user_id])),
        ("untitle", lambda: conversations.rename(alice, group[0], None)),
        ("bob leaves the team", lambda: conversations.leave(bob, seeded.group_id)),
        ("carol leaves", lambda: conversations.leave(carol, group[0])),
    ]
    for name, action in actions:
        await action()
        for index, (principal, client) in enumerate(zip(people, clients)):
            for event in await drain(client):
                states[index] = apply_list_event(states[index], event)
            assert states[index] == await read_list(runtime, principal), (name, principal.username)


# -- the tail command's line ------------------------------------------------------------------


def test_tail_describes_each_conversation_action_in_a_line() -> None:
    conversation = {
        "id": 7,
        "kind": "group",
        "title": None,
        "participants": [
            {"id": 1, "username": "alice", "displayName": "Alice"},
            {"id": 2, "username": "bob", "displayName": "Bob"},
        ],
        "createdAt": "2025-01-01T00:00:00Z",
    }
    actions = ("created", "added", "updated", "removed")
    lines = [
        describe(
            ClientEvent(
                "chat:conversation",
                "1-1",
                {"conversationId": 7, "action": action, "conversation": conversation},
            )
        )
        for action in actions
    ]
    assert lines == [f"#7 {action}: Alice, Bob" for action in actions]
    titled = {
        "conversationId": 7,
        "action": "updated",
        "conversation": {**conversation, "title": "Q3"},
    }
    assert describe(ClientEvent("chat:conversation", "1-2", titled)) == "#7 updated: Q3"


# -- over REST --------------------------------------------------------------------------------


SignIn = Callable[[str], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[SignIn]:
    """`await api(username)`: an httpx client of the API on this test's runtime, signed in."""
    app = build_api()
    app.dependency_overrides[current_runtime] = lambda: runtime
    opened: list[httpx.AsyncClient] = []

    async def signed_in(username: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app)
        http = httpx.AsyncClient(transport=transport, base_url="http://chat.test")
        opened.append(http)
        token = await http.post(
            "/api/auth/token", json={"username": username, "password": f"{username}-pass"}
        )
        assert token.status_code == 200, token.text
        http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        return http

    try:
        yield signed_in
    finally:
        for http in opened:
            await http.aclose()


async def test_the_routes_rename_add_remove_and_leave(
    api: SignIn, runtime: Runtime, seeded: Seeded
) -> None:
    alice, bob = await api("alice"), await api("bob")
    carol_client = await listen(runtime, seeded.carol, CONVERSATION)
    team = f"/api/conversations/{seeded.group_id}"

    renamed = await bob.patch(team, json={"title": " Crew "})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json() == (await bob.get(team)).json()
    assert (renamed.json()["title"], renamed.json()["unreadCount"]) == ("Crew", 1)
    assert (await alice.patch(team, json={"title": None})).json()["title"] is None

    removed = await alice.delete(f"{team}/participants/{seeded.carol.user_id}")
    assert removed.status_code == 200, removed.text
    assert [p["id"] for p in removed.json()["participants"]] == ids_of(seeded.alice, seeded.bob)
    assert set(removed.json()) == set((await alice.get(team)).json())  # _conversation_out

    added = await bob.post(f"{team}/participants", json={"userIds": [seeded.carol.user_id]})
    assert added.status_code == 200, added.text
    assert [p["displayName"] for p in added.json()["participants"]] == ["Alice", "Bob", "Carol"]
    actions = [e["action"] for e in data_of(await drain(carol_client), CONVERSATION)]
    assert actions == ["updated", "updated", "removed", "added"]

    left = await bob.delete(f"{team}/participants/{seeded.bob.user_id}")
    assert (left.status_code, left.content) == (204, b"")
    assert (await bob.get(team)).status_code == 404
    assert (await bob.get(f"{team}/messages")).status_code == 404
    listing = (await bob.get("/api/conversations")).json()["items"]
    assert seeded.group_id not in {c["id"] for c in listing}


ADD = "/participants"
BAD_REQUESTS = {
    # id: (method, path under the conversation, body, status, error code)
    "rename-no-title": ("PATCH", "", {}, 422, "invalid_request"),
    "rename-title-not-text": ("PATCH", "", {"title": 5}, 422, "invalid_request"),
    "rename-unknown-field": ("PATCH", "", {"title": "t", "kind": "direct"}, 422, "invalid_request"),
    "rename-title-over-limit": ("PATCH", "", {"title": "x" * 201}, 422, "invalid_input"),
    "rename-malformed": ("PATCH", "", b"{not json", 400, "malformed_json"),
    "rename-array": ("PATCH", "", ["t"], 422, "invalid_request"),
    "add-no-ids": ("POST", ADD, {}, 422, "invalid_request"),
    "add-empty": ("POST", ADD, {"userIds": []}, 422, "invalid_request"),
    "add-id-as-text": ("POST", ADD, {"userIds": ["3"]}, 422, "invalid_request"),
    "add-id-zero": ("POST", ADD, {"userIds": [0]}, 422, "invalid_request"),
    "add-id-huge": ("POST", ADD, {"userIds": [2**70]}, 422, "invalid_request"),
    "add-not-a-list": ("POST", ADD, {"userIds": 3}, 422, "invalid_request"),
    "add-nobody": ("POST", ADD, {"userIds": [987_654]}, 404, "not_found"),
    "remove-id-zero": ("DELETE", f"{ADD}/0", None, 422, "invalid_request"),
    "remove-id-text": ("DELETE", f"{ADD}/abc", None, 422, "invalid_request"),
    "remove-id-huge": ("DELETE", f"{ADD}/{2**70}", None, 422, "invalid_request"),
    "remove-nobody": ("DELETE", f"{ADD}/987654", None, 404, "not_found"),
}


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code"),
    [pytest.param(*case, id=name) for name, case in BAD_REQUESTS.items()],
)
async def test_bad_requests_get_a_json_4xx_and_change_nothing(
    api: SignIn,
    runtime: Runtime,
    seeded: Seeded,
    method: str,
    path: str,
    payload: Any,
    status: int,
    code: str,
) -> None:
    alice = await api("alice")
    watcher = await listen(runtime, seeded.bob, CONVERSATION)
    before = (await alice.get(f"/api/conversations/{seeded.group_id}")).json()
    url = f"/api/conversations/{seeded.group_id}{path}"
    if isinstance(payload, bytes):
        sent = await alice.request(
            method, url, content=payload, headers={"Content-Type": "application/json"}
        )
    else:
        sent = await alice.request(method, url, json=payload)
    assert sent.status_code == status, sent.text
    assert sent.headers["content-type"] == "application/json"
    error = sent.json()["error"]
    assert error["code"] == code and error["message"]
    assert (await alice.get(f"/api/conversations/{seeded.group_id}")).json() == before
    assert watcher.queued == 0


async def test_a_1to1_over_rest_is_a_readable_422_and_a_stranger_a_404(
    api: SignIn, seeded: Seeded
) -> None:
    alice, carol = await api("alice"), await api("carol")

    def attempts(conversation_id: int) -> dict[str, tuple[str, str, Any]]:
        at = f"/api/conversations/{conversation_id}"
        return {
            "rename": ("PATCH", at, {"title": "us"}),
            "add": ("POST", f"{at}/participants", {"userIds": [seeded.carol.user_id]}),
            "leave": ("DELETE", f"{at}/participants/{seeded.alice.user_id}", None),
            "remove": ("DELETE", f"{at}/participants/{seeded.bob.user_id}", None),
        }

    nowhere = attempts(987_654)
    for name, (method, url, payload) in attempts(seeded.direct_id).items():
        refused = await alice.request(method, url, json=payload)
        assert refused.status_code == 422, (name, refused.text)
        assert refused.json()["error"]["code"] == "invalid_input"
        assert "1:1" in refused.json()["error"]["message"]
        # carol is not in it: the answer a conversation that does not exist gets.
        unknown = await carol.request(method, url, json=payload)
        missing = await carol.request(nowhere[name][0], nowhere[name][1], json=payload)
        assert unknown.status_code == 404, (name, unknown.text)
        assert unknown.json() == missing.json()
    view = await alice.get(f"/api/conversations/{seeded.direct_id}")
    assert [p["id"] for p in view.json()["participants"]] == ids_of(seeded.alice, seeded.bob)
