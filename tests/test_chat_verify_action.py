"""Zulip's verify_action for the chat use cases: the events of an action, applied to the
state a client had before it, must give what a fresh read gives after it.

Each of alice, bob and carol holds one manager client (no type filter) opened before the
snapshot is taken, as a real consumer does. Hypothesis generates sequences of actions (sends
by anyone into the 1:1 or the group, reads to the newest or to an earlier message, typing on
and off, edits and deletes of any message by anyone; an action by a non-participant must fail
with NotFound, a change of another's or of a deleted message as the rules say, and a refusal
emits nothing); after each action every client's queue is drained and applied by
`apply_event`, a small pure consumer, and each user's applied state must equal a fresh read.

Chosen over a seeded `random.Random` loop: `@given` with pytest-asyncio's Hypothesis support
runs fine on one runtime shared by all examples (every example starts from a fresh snapshot,
so examples do not interfere), and a failure shrinks to a minimal action sequence.

Publishing is synchronous in the memory broker, so an action's events are queued by the time
the use case returns. The one asynchronous producer, the typing expiry timer, is kept out of
the way with a long expiry; typing is stopped explicitly (or by a sent message).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.errors import DomainError
from app.domain.principal import Principal
from app.realtime.client import Client, ClientKind
from app.realtime.events import Event, EventType
from app.runtime import Runtime
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

# -- the consumer's state and the pure consumer --------------------------------------------


@dataclass(frozen=True, slots=True)
class ConversationState:
    unread: int
    last_message: Mapping[str, Any] | None
    messages: tuple[Mapping[str, Any], ...]  # oldest first
    typists: frozenset[int]  # the other participants currently typing here


@dataclass(frozen=True, slots=True)
class ChatState:
    order: tuple[int, ...]  # latest activity first
    conversations: Mapping[int, ConversationState]
    total: int


def _with_conversation(
    state: ChatState, conversation_id: int, conv: ConversationState
) -> ChatState:
    conversations = dict(state.conversations)
    conversations[conversation_id] = conv
    return replace(state, conversations=MappingProxyType(conversations))


def _with_message_changed(
    state: ChatState, conversation_id: int, message: Mapping[str, Any]
) -> ChatState:
    """`message` in place of the one with its id, wherever the conversation holds it."""
    conv = state.conversations[conversation_id]
    messages = tuple(message if m["id"] == message["id"] else m for m in conv.messages)
    last = conv.last_message
    if last is not None and last["id"] == message["id"]:
        last = message
    return _with_conversation(
        state, conversation_id, replace(conv, messages=messages, last_message=last)
    )


def _held_message(state: ChatState, conversation_id: int, message_id: int) -> Mapping[str, Any]:
    return next(m for m in state.conversations[conversation_id].messages if m["id"] == message_id)


def apply_event(state: ChatState, event_type: str, data: Mapping[str, Any]) -> ChatState:
    """What a consumer does with one event; events of other kinds leave the state alone."""
    if event_type == EventType.CHAT_MESSAGE_UPDATED:
        return _with_message_changed(state, data["conversationId"], data["message"])
    if event_type == EventType.CHAT_MESSAGE_DELETED:
        conversation_id = data["conversationId"]
        held = _held_message(state, conversation_id, data["messageId"])
        return _with_message_changed(
            state, conversation_id, {**held, "content": "", "deleted": True}
        )
    if event_type == EventType.CHAT_MESSAGE:
        conversation_id = data["conversationId"]
        conv = state.conversations[conversation_id]
        message = data["message"]
        moved = replace(
            state,
            order=(conversation_id, *(c for c in state.order if c != conversation_id)),
        )
        return _with_conversation(
            moved,
            conversation_id,
            replace(conv, messages=(*conv.messages, message), last_message=message),
        )
    if event_type == EventType.CHAT_UNREAD_COUNT:
        conversation_id = data["conversationId"]
        conv = state.conversations[conversation_id]
        counted = replace(state, total=data["total"])
        return _with_conversation(counted, conversation_id, replace(conv, unread=data["count"]))
    if event_type == EventType.CHAT_TYPING:
        conversation_id = data["conversationId"]
        conv = state.conversations[conversation_id]
        user_id = data["userId"]
        typists = conv.typists | {user_id} if data["isTyping"] else conv.typists - {user_id}
        return _with_conversation(state, conversation_id, replace(conv, typists=typists))
    return state


def apply_events(state: ChatState, events: list[Event]) -> ChatState:
    for event in events:
        state = apply_event(state, event.type, event.data)
    return state


# -- fresh reads ------------------------------------------------------------------------


async def read_state(runtime: Runtime, principal: Principal) -> ChatState:
    views, total = await runtime.conversations.list_for(principal)
    conversations: dict[int, ConversationState] = {}
    for view in views:
        page = await runtime.messages.history(principal, view.id, before=None, limit=HISTORY_LIMIT)
        assert not page.has_more
        conversations[view.id] = ConversationState(
            unread=view.unread_count,
            last_message=None if view.last_message is None else view.last_message.to_data(),
            messages=tuple(m.to_data() for m in reversed(page.items)),
            typists=frozenset(
                p.id
                for p in view.participants
                if p.id != principal.user_id
                and runtime.typing.is_typing(principal.tenant_id, view.id, p.id)
            ),
        )
    return ChatState(
        order=tuple(v.id for v in views),
        conversations=MappingProxyType(conversations),
        total=total,
    )


# -- actions --------------------------------------------------------------------------------


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
    pick: int | None


@dataclass(frozen=True, slots=True)
class Typing:
    user: str
    conversation: ConversationName
    is_typing: bool


Action = Send | Read | Typing | Edit | Delete

users = st.sampled_from(USERS)
conversation_names: st.SearchStrategy[ConversationName] = st.sampled_from(("direct", "group"))
contents = st.builds(
    lambda before, body, after: before + body + after,
    st.sampled_from(("", " ", "\n\t ")),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=24).filter(str.strip),
    st.sampled_from(("", " ", " \n")),
)
actions: st.SearchStrategy[Action] = st.one_of(
    st.builds(Send, users, conversation_names, contents),
    st.builds(Read, users, conversation_names, st.none() | st.integers(0, 50)),
    st.builds(Typing, users, conversation_names, st.booleans()),
    st.builds(Edit, users, conversation_names, st.integers(0, 50), contents),
    st.builds(Delete, users, conversation_names, st.integers(0, 50)),
)


# -- the world ------------------------------------------------------------------------


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with chat_world(tmp_path, ClientKind.STREAM) as opened:
        yield opened


async def drain(client: Client) -> list[Event]:
    """Whatever is queued right now, without waiting for more."""
    if client.queued == 0:
        return []
    async with asyncio.timeout(1):
        return await client.next_batch()


async def perform(world: World, action: Action) -> None:
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


async def verify_actions(world: World, sequence: list[Action]) -> None:
    for client in world.clients.values():
        await drain(client)  # presence news of the connects, or leftovers: not chat state
    states = {name: await read_state(world.runtime, p) for name, p in world.principals.items()}
    for step, action in enumerate(sequence):
        target = await picked_message(world, action) if isinstance(action, MessageChange) else None
        refusal = expected_refusal(world, action, target)
        try:
            await perform(world, action)
        except DomainError as error:
            assert type(error) is refusal, f"step {step}: {action} was refused: {error!r}"
        else:
            assert refusal is None, f"step {step}: {action} went through, not {refusal}"
        for name, principal in world.principals.items():
            events = await drain(world.clients[name])
            if refusal is not None:
                assert [e for e in events if e.type.startswith("chat:")] == [], (
                    f"step {step}: refused {action} still emitted to {name}"
                )
            states[name] = apply_events(states[name], events)
            fresh = await read_state(world.runtime, principal)
            assert states[name] == fresh, f"step {step}: {action}: {name}'s applied state differs"


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=st.lists(actions, min_size=1, max_size=12))
async def test_applying_each_actions_events_to_the_previous_state_gives_a_fresh_read(
    world: World, sequence: list[Action]
) -> None:
    await verify_actions(world, sequence)


async def test_a_scripted_conversation_keeps_every_consumer_in_step(world: World) -> None:
    """A fixed sequence through every kind of change, so the property runs at least once
    over each of them whatever Hypothesis draws."""
    await verify_actions(
        world,
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
