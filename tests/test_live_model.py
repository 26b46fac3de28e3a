"""Zulip's verify_action on the page's own store: the events of an action, applied by
assets/live_model.js (the code the chat page runs, in Node) to the model a tab had before,
must give what a fresh snapshot gives after it.

Alice, bob and carol each hold a tab client of the connection manager opened before their
snapshot, as a page's listener does, and one tab per conversation they take part in, with
that conversation open. Each event reaches the models as the feed item the server builds for
every tab (`tab_feed.event_item`), the snapshot and history as `page_data` builds them.
Hypothesis generates sequences of actions (sends by anyone into the 1:1 or the group, reads
to the newest or to an earlier message, typing on and off, edits and deletes of any message
by anyone); an action by a non-participant must fail with NotFound, a change of another's or
of a deleted message as the rules say, and a refusal emits no chat event. After every
action, each tab's Reflex vars must equal those of a fresh model fed a fresh snapshot and
history: conversation rows (order, previews, unread counts), the total, the open
conversation's newest messages (edited and deleted ones included); who is shown typing
(by user id, and by name) must be who the typing use case says is typing.

Publishing is synchronous in the memory broker, so an action's events are queued by the time
the use case returns. The one asynchronous producer, the typing expiry timer, is kept out of
the way with a long expiry; typing is stopped explicitly (or by a sent message).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.errors import DomainError
from app.realtime.client import ClientKind
from app.state import page_data
from app.state.tab_feed import event_item
from tests.backend import ROOT
from tests.browser import _fail_under_ci_else_skip
from tests.chat_world import (
    HISTORY_LIMIT,
    USERS,
    ConversationName,
    Delete,
    Edit,
    MessageChange,
    World,
    chat_world,
    expected_refusal,
    perform_change,
    picked_message,
)
from tests.seeded_chat import drain


class Model:
    """The page models in one Node process (tests/node/live_model_driver.mjs)."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            _fail_under_ci_else_skip("Node is not installed")
        self._process = subprocess.Popen(
            [str(node), str(ROOT / "tests" / "node" / "live_model_driver.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def apply(self, tab: str, items: list[dict[str, Any]], now: float | None = None) -> Any:
        assert self._process.stdin is not None and self._process.stdout is not None
        command = {"tab": tab, "items": items, **({"now": now} if now is not None else {})}
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        answer = self._process.stdout.readline()
        assert answer, "the model's driver ended"
        return json.loads(answer)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()


@pytest.fixture(scope="module")
def model() -> Iterator[Model]:
    driver = Model()
    try:
        yield driver
    finally:
        driver.close()


_generations = iter(range(1, 10**9))  # the model's tabs are named per example


@pytest.fixture
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    """The users' clients are tabs' (a page's listener), unless a test asks for /api/sse
    streams' (`indirect` parametrization): the model is fed what either receives."""
    kind = getattr(request, "param", ClientKind.TAB)
    async with chat_world(tmp_path, kind) as opened:
        yield opened


@dataclass(frozen=True, slots=True)
class Send:
    user: str
    conversation: ConversationName
    content: str


@dataclass(frozen=True, slots=True)
class Read:
    user: str
    conversation: ConversationName
    # None: read to the newest message; else the index (mod length) of the message to read to.
    pick: int | None = None


@dataclass(frozen=True, slots=True)
class Typing:
    user: str
    conversation: ConversationName
    is_typing: bool


Action = Send | Read | Typing | Edit | Delete

users = st.sampled_from(USERS)
conversation_names: st.SearchStrategy[ConversationName] = st.sampled_from(("direct", "group"))
# Surrounding blanks too: what is stored, sent and shown is the trimmed text.
contents = st.builds(
    lambda before, body, after: before + body + after,
    st.sampled_from(("", " ", "\n\t ")),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=120).filter(str.strip),
    st.sampled_from(("", " ", " \n")),
)
actions: st.SearchStrategy[Action] = st.one_of(
    st.builds(Send, users, conversation_names, contents),
    st.builds(Read, users, conversation_names, st.none() | st.integers(0, 50)),
    st.builds(Typing, users, conversation_names, st.booleans()),
    st.builds(Edit, users, conversation_names, st.integers(0, 50), contents),
    st.builds(Delete, users, conversation_names, st.integers(0, 50)),
)


async def _fresh_items(
    world: World, name: str, conversation: ConversationName
) -> list[dict[str, Any]]:
    """What a tab opened now on `conversation` would be sent: its snapshot, and the
    conversation's newest page."""
    principal = world.principals[name]
    items: list[dict[str, Any]] = [{"snapshot": await page_data.snapshot(world.runtime, principal)}]
    conversation_id = world.conversation_ids[conversation]
    page = await world.runtime.messages.history(
        principal, conversation_id, before=None, limit=page_data.HISTORY_PAGE
    )
    items.append({"history": page_data.history(conversation_id, page, principal.user_id)})
    return items


def _tabs(world: World) -> list[tuple[str, ConversationName]]:
    """(user, the conversation their tab has open): one tab per conversation of each user."""
    return [
        (name, conversation)
        for name in USERS
        for conversation in world.conversation_ids
        if name in world.participants[conversation]
    ]


async def _perform(world: World, action: Action) -> None:
    if isinstance(action, MessageChange):
        await perform_change(world, action, await picked_message(world, action))
        return
    runtime = world.runtime
    principal = world.principals[action.user]
    conversation_id = world.conversation_ids[action.conversation]
    if isinstance(action, Send):
        sent = await runtime.messages.send(principal, conversation_id, action.content)
        assert sent.message.content == action.content.strip()
    elif isinstance(action, Read):
        message_id = None
        if action.pick is not None:
            # Message ids as a participant sees them (alice takes part in both).
            page = await runtime.messages.history(
                world.principals["alice"], conversation_id, before=None, limit=HISTORY_LIMIT
            )
            if page.items:
                message_id = page.items[::-1][action.pick % len(page.items)].id
        await runtime.messages.mark_read(principal, conversation_id, message_id)
    else:
        await runtime.typing.set_typing(principal, conversation_id, action.is_typing)


def _shown_typing(world: World, viewer: str) -> dict[str, dict[str, str]]:
    """Who the typing use case says is typing, as the viewer's page should hold them:
    conversation id -> user id -> name."""
    shown: dict[str, dict[str, str]] = {}
    for conversation, conversation_id in world.conversation_ids.items():
        if viewer not in world.participants[conversation]:
            continue
        typing = {
            str(world.principals[u].user_id): world.principals[u].display_name
            for u in world.participants[conversation]
            if u != viewer
            and world.runtime.typing.is_typing(
                world.principals[u].tenant_id, conversation_id, world.principals[u].user_id
            )
        }
        if typing:
            shown[str(conversation_id)] = typing
    return shown


def _held_typing(chat: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The typists a model holds: conversation id -> user id -> name."""
    return {
        key: {user_id: typist["name"] for user_id, typist in here.items()}
        for key, here in chat["typists"].items()
        if here
    }


def _comparable(chat: dict[str, Any], newest: int) -> dict[str, Any]:
    """The chat vars a fresh read can be held to: the newest `newest` messages (a tab keeps
    what arrived live, a fresh page has one page), no typists (compared on their own)."""
    return {
        "conversations": chat["conversations"],
        "total_unread": chat["total_unread"],
        "messages": chat["messages"][len(chat["messages"]) - newest :] if newest else [],
        "messages_of": chat["messages_of"],
    }


async def verify_actions(world: World, model: Model, sequence: list[Action]) -> None:
    generation = next(_generations)
    tabs = {tab: f"{generation}-{tab[0]}-{tab[1]}" for tab in _tabs(world)}
    # Examples share the world: nobody is typing when a page opens (a snapshot names no
    # typists; typing is news, not state).
    for conversation, conversation_id in world.conversation_ids.items():
        for name in world.participants[conversation]:
            await world.runtime.typing.set_typing(world.principals[name], conversation_id, False)
    for name in USERS:
        await drain(world.clients[name])  # the connects' presence news: in the snapshot
    for (name, conversation), tab in tabs.items():
        model.apply(tab, await _fresh_items(world, name, conversation))
    for step, action in enumerate(sequence):
        target = await picked_message(world, action) if isinstance(action, MessageChange) else None
        refusal = expected_refusal(world, action, target)
        try:
            await _perform(world, action)
        except DomainError as error:
            assert type(error) is refusal, f"step {step}: {action} was refused: {error!r}"
        else:
            assert refusal is None, f"step {step}: {action} went through, not {refusal}"
        items = {}
        for name in USERS:
            events = await drain(world.clients[name])
            if refusal is not None:
                assert [e for e in events if e.type.startswith("chat:")] == [], (
                    f"step {step}: refused {action} still emitted to {name}"
                )
            items[name] = [event_item(e) for e in events]
        for (name, conversation), tab in tabs.items():
            applied = model.apply(tab, items[name])
            fresh_items = await _fresh_items(world, name, conversation)
            fresh = model.apply(f"{tab}-fresh-{step}", fresh_items)
            where = f"step {step}: {action}: {name}'s {conversation} tab"
            assert not applied["needsList"], f"{where} lost a conversation"
            expected = fresh["vars"]["chat"]
            newest = len(expected["messages"])
            assert _comparable(applied["vars"]["chat"], newest) == _comparable(expected, newest), (
                f"{where} differs from a fresh read"
            )
            assert _held_typing(applied["vars"]["chat"]) == _shown_typing(world, name), (
                f"{where}: typists"
            )


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=st.lists(actions, min_size=1, max_size=10))
async def test_the_pages_model_applying_each_actions_events_matches_a_fresh_snapshot(
    world: World, model: Model, sequence: list[Action]
) -> None:
    await verify_actions(world, model, sequence)


async def test_a_scripted_conversation_keeps_every_page_in_step(world: World, model: Model) -> None:
    """Every kind of change at least once, whatever Hypothesis draws."""
    long_word = "https://example.com/" + "x" * 200
    await verify_actions(
        world,
        model,
        [
            Typing("bob", "group", True),
            Typing("carol", "group", True),
            Send("bob", "group", "  hello team  "),  # stops his typing
            Read("carol", "group"),
            Typing("carol", "group", False),
            Send("alice", "direct", "hi bob " * 30),  # a preview cut at a word
            Typing("carol", "direct", True),  # not hers: refused, nothing emitted
            Send("bob", "direct", long_word),  # a preview cut inside a long word
            Read("alice", "direct"),
            *[Send("carol", "group", f"message {i}") for i in range(32)],  # past one page
            Read("bob", "group"),
            Edit("carol", "group", -1, "the last word " * 10),  # the preview follows, cut
            Delete("carol", "group", -2),  # not the last: no preview change
            Delete("carol", "group", -1),  # the last: "Message deleted"
            Edit("carol", "group", -1, "too late"),  # refused: deleted
            Edit("alice", "direct", 0, "hi bob, edited"),  # in a conversation not open
            Delete("bob", "direct", -1),  # the 1:1's last, bob's long word
            Edit("alice", "group", 0, "welcome, edited"),  # a message past the open page
        ],
    )


@pytest.mark.parametrize("world", [ClientKind.TAB, ClientKind.STREAM], indirect=True)
async def test_scripted_reads_refusals_and_changes_keep_every_page_in_step(
    world: World, model: Model
) -> None:
    """Reads to an earlier message and backwards, repeated stops, and every refusal (not a
    participant, not the sender, already deleted), each at least once; fed what a tab's
    listener receives and what an /api/sse stream receives."""
    await verify_actions(
        world,
        model,
        [
            Typing("bob", "group", True),
            Typing("carol", "group", True),
            Send("bob", "group", "  hello team  "),  # bob's unread 1 -> 0; stops his typing
            Read("carol", "group", 0),  # to the welcome message: 1 unread left
            Read("carol", "group", None),
            Read("carol", "group", 0),  # backwards: a no-op
            Typing("carol", "group", False),
            Typing("carol", "group", False),  # not typing: nothing
            Send("alice", "direct", "hi bob"),
            Typing("carol", "direct", True),  # not hers: NotFound, nothing emitted
            Send("carol", "direct", "let me in"),
            Read("carol", "direct", None),
            Send("bob", "direct", "hi alice"),
            Read("alice", "direct", 0),
            Read("alice", "direct", None),
            Send("carol", "group", "bye"),
            Edit("carol", "group", -1, "  bye all "),  # her last message, the group's too
            Edit("carol", "group", -1, "bye all"),  # the same content: nothing emitted
            Edit("bob", "group", -1, "not his"),  # Forbidden
            Delete("alice", "group", -1),  # Forbidden
            Edit("carol", "direct", 0, "not hers"),  # NotFound
            Delete("bob", "direct", -1),  # the 1:1's last message, his "hi alice"
            Delete("bob", "direct", -1),  # again: nothing emitted
            Edit("bob", "direct", -1, "undo"),  # Conflict
            Delete("alice", "group", 0),  # her welcome, an older message
            Send("alice", "group", "after the delete"),
        ],
    )


# A tab of user 1 that lists no conversation, and a message of bob's in conversation 3, as
# the stream and a history page carry it.
EMPTY_SNAPSHOT: dict[str, Any] = {
    "me": 1,
    "conversations": [],
    "totalUnread": 0,
    "people": [],
    "notifications": [],
    "notificationsUnread": 0,
    "notificationsShown": 20,
    "typingForgetSeconds": 10,
}
BOBS_MESSAGE = {
    "id": 5,
    "conversationId": 3,
    "content": "earlier",
    "senderId": 2,
    "senderName": "Bob",
    "createdAt": "2026-12-02T10:00:00.000Z",
    "editedAt": None,
    "deleted": False,
}
BOBS_ROW = {
    "id": 5,
    "conversation_id": 3,
    "content": "earlier",
    "sender_id": 2,
    "sender_name": "Bob",
    "created_at": "2026-12-02T10:00:00.000Z",
    "mine": False,
    "edited": False,
    "deleted": False,
}


async def test_a_message_that_crossed_a_click_is_in_the_opened_conversation(
    model: Model,
) -> None:
    """The history page was read before a message arrived, and the message reached the
    tab before the page did: the tab shows both, once each."""
    message = {**BOBS_MESSAGE, "id": 7, "content": "late"}
    event = {"id": "1-1", "type": "chat:message", "data": {"conversationId": 3, "message": message}}
    earlier = {**BOBS_ROW, "id": 5, "content": "earlier"}
    snapshot = EMPTY_SNAPSHOT
    page = {"conversationId": 3, "messages": [earlier], "hasOlder": False, "older": False}
    answer = model.apply(
        "crossed",
        [
            {"snapshot": snapshot},
            {"event": event, "preview": "late"},
            {"history": page},
            {"event": event, "preview": "late"},  # a duplicate changes nothing
        ],
    )
    assert [m["id"] for m in answer["vars"]["chat"]["messages"]] == [5, 7]
    assert answer["vars"]["chat"]["messages_of"] == 3
    assert answer["needsList"], "a conversation the tab does not list asks for the list"


async def test_an_edit_and_a_delete_that_crossed_a_click_are_in_the_opened_conversation(
    model: Model,
) -> None:
    """The history page was read before bob edited one message and deleted another, and
    both events reached the tab before the page did: the page's old copies give way."""
    edited_at = "2026-12-02T10:05:00.000Z"
    edited = {**BOBS_MESSAGE, "content": "earlier, edited", "editedAt": edited_at}
    update = {"conversationId": 3, "message": edited}
    page = {
        "conversationId": 3,
        "messages": [BOBS_ROW, {**BOBS_ROW, "id": 6, "content": "regret"}],
        "hasOlder": False,
        "older": False,
    }
    answer = model.apply(
        "crossed-changes",
        [
            {"snapshot": EMPTY_SNAPSHOT},
            {
                "event": {"id": "1-1", "type": "chat:message-updated", "data": update},
                "preview": "earlier, edited",
            },
            {
                "event": {
                    "id": "1-2",
                    "type": "chat:message-deleted",
                    "data": {"conversationId": 3, "messageId": 6},
                },
                "preview": "Message deleted",
            },
            {"history": page},
        ],
    )
    assert answer["vars"]["chat"]["messages"] == [
        {**BOBS_ROW, "content": "earlier, edited", "edited": True},
        {**BOBS_ROW, "id": 6, "content": "", "deleted": True},
    ]


def _typing(user_id: int, name: str, is_typing: bool) -> dict[str, Any]:
    data = {"conversationId": 3, "userId": user_id, "userName": name, "isTyping": is_typing}
    return {"event": {"id": f"1-{user_id}", "type": "chat:typing", "data": data}}


def _shown_names(typists: dict[str, Any], conversation_id: int) -> list[str]:
    """The names the typing indicator shows: its own expression (app/components/bidi.py),
    evaluated in Node on the model's typists."""
    from reflex.vars import Var

    from app.components.bidi import typists as typist_names

    expression = typist_names(
        Var(_js_expr="typists", _var_type=dict), Var(_js_expr="activeId", _var_type=int)
    )
    script = (
        f"const typists = {json.dumps(typists)}; const activeId = {conversation_id};"
        f"console.log(JSON.stringify({expression!s}));"
    )
    node = shutil.which("node")
    assert node is not None
    printed = subprocess.run(
        [node, "-e", script], capture_output=True, text=True, timeout=30, check=True
    )
    return json.loads(printed.stdout)


async def test_two_people_of_the_same_name_typing_are_both_shown(model: Model) -> None:
    """Typists are told apart by user id: two "Sam"s typing are two typists, each stops on
    their own, and a message stops only its sender's typing."""
    snapshot = {**EMPTY_SNAPSHOT, "people": []}
    sams = model.apply("two-sams", [{"snapshot": snapshot}, _typing(2, "Sam", True)], now=100)
    both = model.apply("two-sams", [_typing(4, "Sam", True)], now=100)["vars"]["chat"]
    assert _held_typing(both) == {"3": {"2": "Sam", "4": "Sam"}}
    assert _shown_names(both["typists"], 3) == ["Sam", "Sam"]
    assert _held_typing(sams["vars"]["chat"]) == {"3": {"2": "Sam"}}

    message = {**BOBS_MESSAGE, "id": 8, "senderId": 2, "senderName": "Sam"}
    sent = {"id": "1-5", "type": "chat:message", "data": {"conversationId": 3, "message": message}}
    after_send = model.apply("two-sams", [{"event": sent, "preview": "earlier"}], now=101)
    assert _held_typing(after_send["vars"]["chat"]) == {"3": {"4": "Sam"}}
    assert _shown_names(after_send["vars"]["chat"]["typists"], 3) == ["Sam"]

    stopped = model.apply("two-sams", [_typing(4, "Sam", False)], now=101)["vars"]["chat"]
    assert _held_typing(stopped) == {}
    assert _shown_names(stopped["typists"], 3) == []


async def test_a_typist_not_heard_from_is_forgotten_by_their_id(model: Model) -> None:
    """The page forgets a silent typist after typingForgetSeconds, whatever the server
    says; the other one of the same name, heard from later, stays."""
    forget = EMPTY_SNAPSHOT["typingForgetSeconds"]
    model.apply("forget-sams", [{"snapshot": EMPTY_SNAPSHOT}, _typing(2, "Sam", True)], now=100)
    model.apply("forget-sams", [_typing(4, "Sam", True)], now=105)
    after = model.apply("forget-sams", [{"forget": True}], now=100 + forget + 1)
    assert _held_typing(after["vars"]["chat"]) == {"3": {"4": "Sam"}}
