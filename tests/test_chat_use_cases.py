"""The chat use cases, in process: conversations, messages and read cursors, rate limits,
typing and presence.

Every test gets its own runtime on its own copy of one seeded database (seeding hashes five
argon2 passwords; copying a file does not), once on SQLite and once on PostgreSQL, with principals signed in once for the module.
So each test starts from the demo data and nothing else, and can change settings freely.

Nothing here sleeps and hopes: events published by a use case are queued when it returns
(the memory broker publishes synchronously); timer-driven events (typing expiry, presence
grace and idle) are awaited with a timeout; and "no presence update" is proven with a
barrier, an update of the observer's own that the tracker announces after anything pending.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import text

from app.api import build_api
from app.api.deps import current_runtime
from app.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited
from app.domain.presence import PresenceTracker, Status
from app.domain.principal import Principal
from app.domain.typing import TypingTracker
from app.models import ConversationMember
from app.realtime.client import Client
from app.realtime.events import Event, EventType, MessageOrder
from app.runtime import Runtime
from app.security.rate_limit import TokenBucketLimiter
from tests.databases import write_lock
from tests.seeded_chat import (
    EVENT_TIMEOUT,
    MakeRuntime,
    Seeded,
    data_of,
    drain,
    listen,
    new_group,
    send_all,
    unread_events,
    unread_of,
    wait_for_events,
)

pytestmark = pytest.mark.databases("sqlite", "postgres")


@pytest.fixture
async def runtime(make_runtime: MakeRuntime) -> Runtime:
    """This module's runtimes start on a copy of the seeded database (tests/seeded_chat.py)."""
    return await make_runtime()


# -- conversations ---------------------------------------------------------------------------


async def test_a_1to1_is_unique_and_a_second_create_returns_the_existing_one(
    runtime: Runtime, seeded: Seeded
) -> None:
    again, created = await runtime.conversations.create(seeded.alice, [seeded.bob.user_id], None)
    assert (again.id, again.kind, created) == (seeded.direct_id, "direct", False)
    # From the other side, with the caller named too and a blank title: the same one.
    mirrored, created = await runtime.conversations.create(
        seeded.bob, [seeded.alice.user_id, seeded.bob.user_id], "   "
    )
    assert (mirrored.id, created) == (seeded.direct_id, False)

    first, created_first = await runtime.conversations.create(
        seeded.alice, [seeded.carol.user_id], None
    )
    second, created_second = await runtime.conversations.create(
        seeded.carol, [seeded.alice.user_id], None
    )
    assert (created_first, created_second) == (True, False)
    assert first.kind == "direct" and second.id == first.id
    assert sorted(p.id for p in first.participants) == sorted(
        [seeded.alice.user_id, seeded.carol.user_id]
    )


async def test_a_group_needs_a_title_or_two_others(runtime: Runtime, seeded: Seeded) -> None:
    titled, created = await runtime.conversations.create(
        seeded.alice, [seeded.bob.user_id], "  Planning  "
    )
    assert (titled.kind, titled.title, created) == ("group", "Planning", True)
    assert titled.id != seeded.direct_id
    # Groups are never deduplicated: the same title and people make another one.
    again, created_again = await runtime.conversations.create(
        seeded.alice, [seeded.bob.user_id], "Planning"
    )
    assert created_again and again.id != titled.id

    untitled, created = await runtime.conversations.create(
        seeded.alice, [seeded.bob.user_id, seeded.carol.user_id], None
    )
    assert (untitled.kind, untitled.title, created) == ("group", None, True)
    assert len(untitled.participants) == 3

    # One other and no title is a 1:1, not a group.
    direct, created = await runtime.conversations.create(seeded.alice, [seeded.bob.user_id], None)
    assert (direct.kind, direct.id, created) == ("direct", seeded.direct_id, False)


async def test_a_participant_outside_the_tenant_is_not_found(
    runtime: Runtime, seeded: Seeded
) -> None:
    before = await runtime.conversations.list_for(seeded.alice)
    for participant_ids, title in (
        ([seeded.dave.user_id], None),
        ([seeded.bob.user_id, seeded.dave.user_id], "Mixed"),
        ([987_654], None),
    ):
        with pytest.raises(NotFound):
            await runtime.conversations.create(seeded.alice, participant_ids, title)
    assert await runtime.conversations.list_for(seeded.alice) == before


async def test_the_caller_alone_is_invalid_input(runtime: Runtime, seeded: Seeded) -> None:
    for participant_ids, title in (([], None), ([], "Me"), ([seeded.alice.user_id], "Just me")):
        with pytest.raises(InvalidInput):
            await runtime.conversations.create(seeded.alice, participant_ids, title)


async def test_the_list_puts_the_latest_activity_first(runtime: Runtime, seeded: Seeded) -> None:
    async def order() -> list[int]:
        views, _ = await runtime.conversations.list_for(seeded.alice)
        return [v.id for v in views]

    direct, group = seeded.direct_id, seeded.group_id
    assert await order() == [group, direct]  # the group has the welcome message
    quiet = await new_group(runtime, seeded.alice, seeded.bob)
    assert await order() == [group, quiet, direct]  # no messages: newest conversation first
    await runtime.messages.send(seeded.bob, direct, "ping")
    assert await order() == [direct, group, quiet]
    await runtime.messages.send(seeded.carol, group, "pong")
    assert await order() == [group, direct, quiet]
    await runtime.messages.send(seeded.alice, quiet, "anyone?")
    assert await order() == [quiet, group, direct]


# -- messages --------------------------------------------------------------------------------


async def test_content_is_trimmed(runtime: Runtime, seeded: Seeded) -> None:
    bob = await listen(runtime, seeded.bob, EventType.CHAT_MESSAGE)
    sent = await runtime.messages.send(seeded.alice, seeded.direct_id, " \n\t hello bob  \n")
    assert sent.message.content == "hello bob"
    [event] = data_of(await drain(bob), EventType.CHAT_MESSAGE)
    assert event["message"]["content"] == "hello bob"
    page = await runtime.messages.history(seeded.alice, seeded.direct_id, before=None, limit=10)
    assert [m.content for m in page.items] == ["hello bob"]


async def test_empty_or_too_long_content_is_invalid_and_nothing_is_stored(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(message_max_chars=10)
    bob = await listen(runtime, seeded.bob, EventType.CHAT_MESSAGE, EventType.CHAT_UNREAD_COUNT)
    for content in ("", "   ", " \n\t ", "x" * 11, "  " + "y" * 11 + "  "):
        with pytest.raises(InvalidInput):
            await runtime.messages.send(seeded.alice, seeded.direct_id, content)
    assert bob.queued == 0
    page = await runtime.messages.history(seeded.alice, seeded.direct_id, before=None, limit=10)
    assert page.items == []
    # The limit counts the trimmed content, and exactly the limit is fine.
    sent = await runtime.messages.send(seeded.alice, seeded.direct_id, "  " + "z" * 10 + "  ")
    assert sent.message.content == "z" * 10


async def test_sending_marks_the_senders_conversation_read_and_tells_them_only_if_it_had_unread(
    runtime: Runtime, seeded: Seeded
) -> None:
    clients = {
        p.username: await listen(runtime, p, EventType.CHAT_UNREAD_COUNT)
        for p in (seeded.alice, seeded.bob, seeded.carol)
    }
    group = seeded.group_id
    # bob starts with the welcome message unread.
    await runtime.messages.send(seeded.bob, group, "hi all")
    unread = {name: await unread_events(c) for name, c in clients.items()}
    assert unread == {
        "alice": [{"conversationId": group, "count": 1, "total": 1}],
        "bob": [{"conversationId": group, "count": 0, "total": 0}],
        "carol": [{"conversationId": group, "count": 2, "total": 2}],
    }
    assert await unread_of(runtime, seeded.bob) == ({group: 0, seeded.direct_id: 0}, 0)

    # Nothing unread now: sending again tells bob nothing, the others their new counts.
    await runtime.messages.send(seeded.bob, group, "anyone?")
    unread = {name: await unread_events(c) for name, c in clients.items()}
    assert unread == {
        "alice": [{"conversationId": group, "count": 2, "total": 2}],
        "bob": [],
        "carol": [{"conversationId": group, "count": 3, "total": 3}],
    }


async def test_history_pages_newest_first_with_has_more_and_before_anchors(
    runtime: Runtime, seeded: Seeded
) -> None:
    conversation = await new_group(runtime, seeded.alice, seeded.bob)
    m1, m2, m3, m4, m5 = await send_all(runtime, seeded.alice, conversation, *"abcde")

    async def page(before: int | None, limit: int) -> tuple[list[int], bool]:
        result = await runtime.messages.history(
            seeded.bob, conversation, before=before, limit=limit
        )
        return [m.id for m in result.items], result.has_more

    assert await page(None, 2) == ([m5, m4], True)
    assert await page(m4, 2) == ([m3, m2], True)
    assert await page(m2, 2) == ([m1], False)
    assert await page(m1, 2) == ([], False)
    assert await page(None, 5) == ([m5, m4, m3, m2, m1], False)
    assert await page(None, 4) == ([m5, m4, m3, m2], True)
    first = await runtime.messages.history(seeded.bob, conversation, before=m2, limit=1)
    assert first.items[0].content == "a"
    assert first.items[0].sender_id == seeded.alice.user_id
    assert first.items[0].sender_name == seeded.alice.display_name


async def test_a_gap_s_messages_are_read_back_as_the_events_their_sends_published(
    runtime: Runtime, seeded: Seeded
) -> None:
    """What a broker shared by processes publishes when a conversation's message is about
    to go out before the ones stored ahead of it (app/realtime/broker/redis.py)."""
    conversation = await new_group(runtime, seeded.alice, seeded.bob)
    bob = await listen(runtime, seeded.bob, EventType.CHAT_MESSAGE)
    m1, m2, m3, m4 = await send_all(runtime, seeded.alice, conversation, *"abcd")
    published = await wait_for_events(bob, 4)
    assert [e.order for e in published] == [
        MessageOrder(conversation, m1, None),  # a new group's first
        MessageOrder(conversation, m2, m1),
        MessageOrder(conversation, m3, m2),
        MessageOrder(conversation, m4, m3),
    ]
    missed = await runtime.messages.missed_events(seeded.acme_id, conversation, m1, m4)

    def seen(events: list[Event]) -> list[tuple[str, object, tuple[str, ...], int | None]]:
        return [(e.type, e.data, e.channels, e.tenant_id) for e in events]

    assert seen(missed) == seen(published[1:3])
    assert [e.order for e in missed] == [
        MessageOrder(conversation, m2),
        MessageOrder(conversation, m3),
    ]
    assert all(e.id is None for e in missed)  # the broker gives them ids
    # The tenant is part of the question: another tenant's id reads nothing of it.
    assert await runtime.messages.missed_events(seeded.globex_id, conversation, 0, m4 + 1) == []
    assert await runtime.messages.missed_events(seeded.acme_id, conversation, m4, m4 + 9) == []


async def test_a_foreign_or_unknown_history_anchor_is_not_found(
    runtime: Runtime, seeded: Seeded
) -> None:
    conversation = await new_group(runtime, seeded.alice, seeded.bob)
    await send_all(runtime, seeded.alice, conversation, "one")
    for anchor in (seeded.welcome_id, 987_654):
        with pytest.raises(NotFound):
            await runtime.messages.history(seeded.alice, conversation, before=anchor, limit=10)


def reach_attempts(
    runtime: Runtime, principal: Principal, conversation_id: int, message_id: int
) -> dict[str, Callable[[], Awaitable[object]]]:
    """Every use case that must refuse a caller who cannot reach the conversation."""
    return {
        "edit": lambda: runtime.messages.edit(principal, conversation_id, message_id, "mine"),
        "delete": lambda: runtime.messages.delete(principal, conversation_id, message_id),
        "get": lambda: runtime.conversations.get(principal, conversation_id),
        "send": lambda: runtime.messages.send(principal, conversation_id, "let me in"),
        "history": lambda: runtime.messages.history(
            principal, conversation_id, before=None, limit=10
        ),
        "mark_read": lambda: runtime.messages.mark_read(principal, conversation_id),
        "typing": lambda: runtime.typing.set_typing(principal, conversation_id, True),
    }


CHAT_TYPES = (
    EventType.CHAT_MESSAGE,
    EventType.CHAT_MESSAGE_UPDATED,
    EventType.CHAT_MESSAGE_DELETED,
    EventType.CHAT_TYPING,
    EventType.CHAT_UNREAD_COUNT,
)


async def test_a_non_participant_gets_not_found_and_nothing_is_emitted(
    runtime: Runtime, seeded: Seeded
) -> None:
    watchers = [await listen(runtime, p, *CHAT_TYPES) for p in (seeded.alice, seeded.bob)]
    carol, direct = seeded.carol, seeded.direct_id
    for name, attempt in reach_attempts(runtime, carol, direct, seeded.welcome_id).items():
        with pytest.raises(NotFound):
            await attempt()
        assert [w.queued for w in watchers] == [0, 0], name
    assert not runtime.typing.is_typing(seeded.acme_id, direct, carol.user_id)
    views, _ = await runtime.conversations.list_for(carol)
    assert direct not in {v.id for v in views}
    page = await runtime.messages.history(seeded.alice, direct, before=None, limit=10)
    assert page.items == []


async def test_a_principal_of_another_tenant_gets_not_found(
    runtime: Runtime, seeded: Seeded
) -> None:
    watchers = [
        await listen(runtime, p, *CHAT_TYPES) for p in (seeded.alice, seeded.bob, seeded.carol)
    ]
    group = seeded.group_id
    # carol takes part in the group, but in Acme: acting in Globex she cannot reach it.
    for outsider in (seeded.carol_globex, seeded.dave):
        for name, attempt in reach_attempts(runtime, outsider, group, seeded.welcome_id).items():
            with pytest.raises(NotFound):
                await attempt()
            assert [w.queued for w in watchers] == [0, 0, 0], (outsider.username, name)
        assert await runtime.conversations.list_for(outsider) == ([], 0)
    page = await runtime.messages.history(seeded.alice, group, before=None, limit=10)
    assert [m.id for m in page.items] == [seeded.welcome_id]


async def test_mark_read_to_an_earlier_message_leaves_the_right_count(
    runtime: Runtime, seeded: Seeded
) -> None:
    conversation = await new_group(runtime, seeded.alice, seeded.bob, seeded.carol)
    (m1,) = await send_all(runtime, seeded.alice, conversation, "one")
    (m2,) = await send_all(runtime, seeded.bob, conversation, "two")  # bob's own
    (m3,) = await send_all(runtime, seeded.carol, conversation, "three")
    (m4,) = await send_all(runtime, seeded.alice, conversation, "four")
    (m5,) = await send_all(runtime, seeded.carol, conversation, "five")
    bob = await listen(runtime, seeded.bob, EventType.CHAT_UNREAD_COUNT)
    others = [
        await listen(runtime, p, EventType.CHAT_UNREAD_COUNT) for p in (seeded.alice, seeded.carol)
    ]
    # bob read up to his own m2 by sending it: m3..m5 unread here, plus the team's welcome.
    assert await unread_of(runtime, seeded.bob) == (
        {conversation: 3, seeded.group_id: 1, seeded.direct_id: 0},
        4,
    )

    # Back before his own message is backwards for bob: nothing changes.
    change = await runtime.messages.mark_read(seeded.bob, conversation, m1)
    assert (change.count, change.total) == (3, 4)
    assert bob.queued == 0

    change = await runtime.messages.mark_read(seeded.bob, conversation, m3)
    assert (change.count, change.total) == (2, 3)
    assert data_of(await drain(bob), EventType.CHAT_UNREAD_COUNT) == [
        {"conversationId": conversation, "count": 2, "total": 3}
    ]
    change = await runtime.messages.mark_read(seeded.bob, conversation, m4)
    assert (change.count, change.total) == (1, 2)
    assert data_of(await drain(bob), EventType.CHAT_UNREAD_COUNT) == [
        {"conversationId": conversation, "count": 1, "total": 2}
    ]
    assert await unread_of(runtime, seeded.bob) == (
        {conversation: 1, seeded.group_id: 1, seeded.direct_id: 0},
        2,
    )
    assert [c.queued for c in others] == [0, 0]  # a read cursor is its owner's business
    assert m1 < m2 < m3 < m4 < m5


async def test_the_read_cursor_never_moves_backwards(runtime: Runtime, seeded: Seeded) -> None:
    conversation = await new_group(runtime, seeded.alice, seeded.bob)
    m1, m2, m3 = await send_all(runtime, seeded.alice, conversation, "one", "two", "three")
    bob = await listen(runtime, seeded.bob, EventType.CHAT_UNREAD_COUNT)

    change = await runtime.messages.mark_read(seeded.bob, conversation, m2)
    assert change.count == 1
    assert len(await drain(bob)) == 1

    for earlier in (m1, m2):
        change = await runtime.messages.mark_read(seeded.bob, conversation, earlier)
        assert change.count == 1  # still one unread: m3
        assert bob.queued == 0

    await runtime.messages.mark_read(seeded.bob, conversation)
    assert data_of(await drain(bob), EventType.CHAT_UNREAD_COUNT) == [
        {"conversationId": conversation, "count": 0, "total": 1}  # the welcome message
    ]
    for again in (None, m1, m3):
        change = await runtime.messages.mark_read(seeded.bob, conversation, again)
        assert (change.count, change.total) == (0, 1)
        assert bob.queued == 0
    assert (await unread_of(runtime, seeded.bob))[0][conversation] == 0

    with pytest.raises(NotFound):  # a message of another conversation
        await runtime.messages.mark_read(seeded.bob, conversation, seeded.welcome_id)
    assert bob.queued == 0


async def test_a_read_racing_a_send_keeps_the_new_message_unread(
    runtime: Runtime, seeded: Seeded
) -> None:
    """bob marks the 1:1 read while alice's next message is being stored. The read targets
    the message that was newest when it started, so alice's new one must stay unread.

    The interleaving is forced, not hoped for: the read is held just before it writes its
    cursor (the first UPDATE of a conversation member once armed; on PostgreSQL the row lock
    taken just before it) until the send has committed. The opposite order, a send that
    holds the row while the read waits, is tests/test_postgres_concurrency.py's.
    """
    direct = seeded.direct_id
    await runtime.messages.send(seeded.alice, direct, "first")  # bob: 1 unread
    bob = await listen(runtime, seeded.bob, EventType.CHAT_UNREAD_COUNT)
    paused, resume = threading.Event(), threading.Event()
    armed = [True]
    member_update = f"UPDATE {ConversationMember.__tablename__} ".upper()

    def hold_the_reads_write(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        upper = statement.lstrip().upper()
        row_lock = upper.startswith("SELECT") and upper.endswith("FOR NO KEY UPDATE")
        if armed[0] and (upper.startswith(member_update) or row_lock):
            armed[0] = False
            paused.set()
            # Bounded: a read that already holds the write lock would block the send.
            resume.wait(1.0)

    sa_event.listen(runtime.db.engine, "before_cursor_execute", hold_the_reads_write)
    try:
        reading = asyncio.create_task(runtime.messages.mark_read(seeded.bob, direct))
        assert await asyncio.to_thread(paused.wait, EVENT_TIMEOUT)
        await runtime.messages.send(seeded.alice, direct, "second")
        resume.set()
        async with asyncio.timeout(EVENT_TIMEOUT):
            change = await reading
    finally:
        resume.set()
        sa_event.remove(runtime.db.engine, "before_cursor_execute", hold_the_reads_write)

    unread, _ = await unread_of(runtime, seeded.bob)
    assert unread[direct] == 1, "alice's second message was lost from bob's unread count"
    assert change.count == 1
    counts = [e["count"] for e in data_of(await drain(bob), EventType.CHAT_UNREAD_COUNT)]
    assert counts[-1] == 1  # what bob's clients are left showing


async def test_many_tabs_seeing_a_message_move_each_cursor_once_in_one_transaction(
    runtime: Runtime, seeded: Seeded
) -> None:
    bob_client = await listen(runtime, seeded.bob, EventType.CHAT_UNREAD_COUNT)
    carol_client = await listen(runtime, seeded.carol, EventType.CHAT_UNREAD_COUNT)
    (m1,) = await send_all(runtime, seeded.alice, seeded.group_id, "look")
    await drain(bob_client), await drain(carol_client)  # the send's own +1
    batches: list[int] = []
    mark_read_many = runtime.messages.mark_read_many

    async def counted(marks: list[tuple[Principal, int, int]]) -> None:
        batches.append(len(marks))
        await mark_read_many(marks)

    runtime.messages.mark_read_many = counted  # type: ignore[method-assign]  # a spy on the instance
    for _ in range(5):  # five tabs each, every one applying the same message
        runtime.read_receipts.seen(seeded.bob, seeded.group_id, m1)
        runtime.read_receipts.seen(seeded.carol, seeded.group_id, m1)
    await runtime.read_receipts.idle()

    assert batches == [2]  # one transaction, one mark per user
    for principal, client in ((seeded.bob, bob_client), (seeded.carol, carol_client)):
        counts, _ = await unread_of(runtime, principal)
        assert counts[seeded.group_id] == 0
        assert [e["count"] for e in await unread_events(client)] == [0]  # announced once
    # Seen again by another tab later: already read through it, nothing to store.
    runtime.read_receipts.seen(seeded.bob, seeded.group_id, m1)
    await runtime.read_receipts.idle()
    assert batches == [2]


async def test_a_receipt_the_caller_may_not_give_is_skipped_and_the_rest_are_stored(
    runtime: Runtime, seeded: Seeded
) -> None:
    (m1,) = await send_all(runtime, seeded.alice, seeded.group_id, "hello")
    (direct_message,) = await send_all(runtime, seeded.alice, seeded.direct_id, "psst")
    runtime.read_receipts.seen(seeded.carol, seeded.direct_id, direct_message)  # not hers
    runtime.read_receipts.seen(seeded.carol, seeded.group_id, direct_message)  # wrong room
    runtime.read_receipts.seen(seeded.bob, seeded.group_id, m1)
    await runtime.read_receipts.idle()
    bob_counts, _ = await unread_of(runtime, seeded.bob)
    carol_counts, _ = await unread_of(runtime, seeded.carol)
    assert bob_counts[seeded.group_id] == 0
    assert carol_counts[seeded.group_id] == 2  # the welcome and "hello": nothing moved
    assert seeded.direct_id not in carol_counts


# -- editing and deleting --------------------------------------------------------------------


async def stored_row(runtime: Runtime, message_id: int) -> tuple[str, bool, bool]:
    """What the database holds for a message: (content, edited, deleted), read raw."""

    def load(session: Any) -> tuple[str, bool, bool]:
        content, edited_at, deleted_at = session.execute(
            text("SELECT content, edited_at, deleted_at FROM message WHERE id = :id"),
            {"id": message_id},
        ).one()
        return content, edited_at is not None, deleted_at is not None

    return await runtime.db.run(load)


def record_what_is_stored_at_publish(
    runtime: Runtime, message_id: int
) -> list[tuple[str, tuple[str, bool, bool]]]:
    """(event type, the message's stored row) as each chat event is published: proof that
    an event goes out only once what it announces is committed."""
    seen: list[tuple[str, tuple[str, bool, bool]]] = []
    publish = runtime.manager.publish

    async def publish_after_looking(event: Event) -> Any:
        if event.type in CHAT_TYPES:  # not the connects' presence news
            seen.append((event.type, await stored_row(runtime, message_id)))
        return await publish(event)

    runtime.manager.publish = publish_after_looking  # type: ignore[method-assign]  # a spy on the instance
    return seen


async def test_the_sender_edits_a_message_and_every_participant_hears_it_once_stored(
    runtime: Runtime, seeded: Seeded
) -> None:
    (message_id,) = await send_all(runtime, seeded.bob, seeded.group_id, "helo team")
    clients = {
        p.username: await listen(runtime, p, *CHAT_TYPES)
        for p in (seeded.alice, seeded.bob, seeded.carol)
    }
    seen = record_what_is_stored_at_publish(runtime, message_id)
    edited = await runtime.messages.edit(seeded.bob, seeded.group_id, message_id, "  hello team ")

    assert edited.content == "hello team" and edited.edited_at is not None
    assert not edited.deleted
    body = edited.to_data()
    assert body["editedAt"].endswith("Z") and body["editedAt"] >= body["createdAt"]
    for name, client in clients.items():  # bob's other tabs too; and no unread change
        assert [(e.type, e.data) for e in await drain(client)] == [
            (
                EventType.CHAT_MESSAGE_UPDATED,
                {"conversationId": seeded.group_id, "message": body},
            )
        ], name
    assert seen == [(EventType.CHAT_MESSAGE_UPDATED, ("hello team", True, False))]
    page = await runtime.messages.history(seeded.carol, seeded.group_id, before=None, limit=10)
    assert [m.id for m in page.items] == [message_id, seeded.welcome_id]  # the same place
    assert page.items[0].to_data() == body
    assert (await unread_of(runtime, seeded.carol))[1] == 2  # the welcome and bob's


async def test_the_sender_deletes_a_message_its_content_is_gone_and_its_place_kept(
    runtime: Runtime, seeded: Seeded
) -> None:
    m1, m2 = await send_all(runtime, seeded.bob, seeded.group_id, "oops, a secret", "after")
    clients = [await listen(runtime, p, *CHAT_TYPES) for p in (seeded.alice, seeded.bob)]
    seen = record_what_is_stored_at_publish(runtime, m1)
    await runtime.messages.delete(seeded.bob, seeded.group_id, m1)

    expected = {"conversationId": seeded.group_id, "messageId": m1}
    for client in clients:
        assert [(e.type, e.data) for e in await drain(client)] == [
            (EventType.CHAT_MESSAGE_DELETED, expected)
        ]
    assert seen == [(EventType.CHAT_MESSAGE_DELETED, ("", False, True))]
    assert await stored_row(runtime, m1) == ("", False, True)  # blanked, not kept
    page = await runtime.messages.history(seeded.alice, seeded.group_id, before=None, limit=10)
    assert [(m.id, m.content, m.deleted) for m in page.items] == [
        (m2, "after", False),
        (m1, "", True),
        (seeded.welcome_id, page.items[2].content, False),
    ]
    assert page.items[1].sender_id == seeded.bob.user_id

    # Again: still 204-quiet, nothing announced, nothing changed.
    await runtime.messages.delete(seeded.bob, seeded.group_id, m1)
    assert [c.queued for c in clients] == [0, 0]
    assert await stored_row(runtime, m1) == ("", False, True)


async def test_a_deleted_last_message_is_still_the_conversations_last_message(
    runtime: Runtime, seeded: Seeded
) -> None:
    (message_id,) = await send_all(runtime, seeded.alice, seeded.direct_id, "take this back")
    await runtime.messages.delete(seeded.alice, seeded.direct_id, message_id)
    views, _ = await runtime.conversations.list_for(seeded.bob)
    direct = next(v for v in views if v.id == seeded.direct_id)
    assert direct.last_message is not None
    assert (direct.last_message.id, direct.last_message.content) == (message_id, "")
    assert direct.last_message.deleted
    assert views[0].id == seeded.direct_id  # the order is unchanged


async def test_a_deleted_message_cannot_be_edited(runtime: Runtime, seeded: Seeded) -> None:
    (message_id,) = await send_all(runtime, seeded.alice, seeded.direct_id, "gone soon")
    await runtime.messages.delete(seeded.alice, seeded.direct_id, message_id)
    bob = await listen(runtime, seeded.bob, *CHAT_TYPES)
    with pytest.raises(Conflict):
        await runtime.messages.edit(seeded.alice, seeded.direct_id, message_id, "back again")
    assert bob.queued == 0
    assert await stored_row(runtime, message_id) == ("", False, True)


async def test_the_same_content_again_is_accepted_and_announces_nothing(
    runtime: Runtime, seeded: Seeded
) -> None:
    (message_id,) = await send_all(runtime, seeded.alice, seeded.direct_id, "as it was")
    bob = await listen(runtime, seeded.bob, *CHAT_TYPES)
    unchanged = await runtime.messages.edit(
        seeded.alice, seeded.direct_id, message_id, " as it was\n"
    )
    assert (unchanged.content, unchanged.edited_at) == ("as it was", None)
    assert bob.queued == 0
    assert await stored_row(runtime, message_id) == ("as it was", False, False)


async def test_edited_content_is_cleaned_and_limited_like_a_sent_message(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(message_max_chars=10)
    (message_id,) = await send_all(runtime, seeded.alice, seeded.direct_id, "short")
    bob = await listen(runtime, seeded.bob, *CHAT_TYPES)
    for content in ("", " \n\t ", "x" * 11):
        with pytest.raises(InvalidInput):
            await runtime.messages.edit(seeded.alice, seeded.direct_id, message_id, content)
    assert bob.queued == 0
    assert await stored_row(runtime, message_id) == ("short", False, False)
    edited = await runtime.messages.edit(seeded.alice, seeded.direct_id, message_id, " z" * 5)
    assert edited.content == "z z z z z"
    edited = await runtime.messages.edit(seeded.alice, seeded.direct_id, message_id, "z" * 10)
    assert edited.content == "z" * 10


async def test_another_participant_may_not_edit_or_delete_a_message(
    runtime: Runtime, seeded: Seeded
) -> None:
    (message_id,) = await send_all(runtime, seeded.alice, seeded.group_id, "alice's words")
    watchers = [
        await listen(runtime, p, *CHAT_TYPES) for p in (seeded.alice, seeded.bob, seeded.carol)
    ]
    for other in (seeded.bob, seeded.carol):
        with pytest.raises(Forbidden):
            await runtime.messages.edit(other, seeded.group_id, message_id, "bob's words")
        with pytest.raises(Forbidden):
            await runtime.messages.delete(other, seeded.group_id, message_id)
    assert [w.queued for w in watchers] == [0, 0, 0]
    assert await stored_row(runtime, message_id) == ("alice's words", False, False)


async def test_a_message_out_of_reach_gets_the_answer_of_a_missing_one(
    runtime: Runtime, seeded: Seeded
) -> None:
    """Another tenant (carol herself, signed in to Globex, naming the message she wrote in
    Acme), a conversation the caller is not in, or a message of another conversation: each
    refusal is word for word that of an id that names nothing."""
    (carols,) = await send_all(runtime, seeded.carol, seeded.group_id, "carol in Acme")
    (alices,) = await send_all(runtime, seeded.alice, seeded.direct_id, "to bob only")
    watchers = [
        await listen(runtime, p, *CHAT_TYPES)
        for p in (seeded.alice, seeded.bob, seeded.carol, seeded.carol_globex)
    ]
    missing = 987_654

    async def refusal(principal: Principal, conversation_id: int, message_id: int) -> list[str]:
        answers = []
        for attempt in (
            runtime.messages.edit(principal, conversation_id, message_id, "changed"),
            runtime.messages.delete(principal, conversation_id, message_id),
        ):
            with pytest.raises(NotFound) as refused:
                await attempt
            answers.append(refused.value.message)
        return answers

    no_conversation = await refusal(seeded.carol, missing, missing)
    no_message = await refusal(seeded.carol, seeded.group_id, missing)
    assert await refusal(seeded.carol_globex, seeded.group_id, carols) == no_conversation
    assert await refusal(seeded.dave, seeded.group_id, carols) == no_conversation
    assert await refusal(seeded.carol, seeded.direct_id, alices) == no_conversation
    assert await refusal(seeded.carol, seeded.group_id, alices) == no_message
    assert await refusal(seeded.alice, seeded.group_id, alices) == no_message
    assert [w.queued for w in watchers] == [0, 0, 0, 0]
    assert await stored_row(runtime, carols) == ("carol in Acme", False, False)
    assert await stored_row(runtime, alices) == ("to bob only", False, False)


async def test_edits_count_against_the_senders_message_rate_limit(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(rate_limit_messages_burst=3, rate_limit_messages_per_minute=1)
    (message_id,) = await send_all(runtime, seeded.alice, seeded.direct_id, "v0")
    bob = await listen(runtime, seeded.bob, *CHAT_TYPES)
    for version in ("v1", "v2"):
        await runtime.messages.edit(seeded.alice, seeded.direct_id, message_id, version)
    assert len(data_of(await drain(bob), EventType.CHAT_MESSAGE_UPDATED)) == 2
    with pytest.raises(RateLimited) as refused:
        await runtime.messages.edit(seeded.alice, seeded.direct_id, message_id, "v3")
    assert refused.value.retry_after >= 1
    assert bob.queued == 0
    assert await stored_row(runtime, message_id) == ("v2", True, False)
    # Deleting is not limited: it happens once per message at most.
    await runtime.messages.delete(seeded.alice, seeded.direct_id, message_id)
    assert data_of(await drain(bob), EventType.CHAT_MESSAGE_DELETED) == [
        {"conversationId": seeded.direct_id, "messageId": message_id}
    ]


# -- rate limits -----------------------------------------------------------------------------


async def test_the_fourth_message_of_a_burst_of_three_is_rate_limited_and_not_stored(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(rate_limit_messages_burst=3, rate_limit_messages_per_minute=1)
    bob = await listen(runtime, seeded.bob, EventType.CHAT_MESSAGE, EventType.CHAT_UNREAD_COUNT)
    alice = await listen(runtime, seeded.alice, EventType.CHAT_MESSAGE, EventType.CHAT_UNREAD_COUNT)
    sent = await send_all(runtime, seeded.alice, seeded.direct_id, "1", "2", "3")
    assert len(data_of(await drain(bob), EventType.CHAT_MESSAGE)) == 3
    await drain(alice)

    with pytest.raises(RateLimited) as refused:
        await runtime.messages.send(seeded.alice, seeded.direct_id, "4")
    assert refused.value.retry_after >= 1
    assert (bob.queued, alice.queued) == (0, 0)
    page = await runtime.messages.history(seeded.bob, seeded.direct_id, before=None, limit=10)
    assert [m.id for m in page.items] == sent[::-1]
    assert (await unread_of(runtime, seeded.bob))[0][seeded.direct_id] == 3
    # The limit is the sender's: bob may still send.
    await runtime.messages.send(seeded.bob, seeded.direct_id, "my turn")


async def test_the_fourth_typing_update_of_a_burst_of_three_is_rate_limited_and_not_announced(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(rate_limit_typing_burst=3, rate_limit_typing_per_minute=1)
    bob = await listen(runtime, seeded.bob, EventType.CHAT_TYPING)
    for is_typing in (True, False, True):
        assert await runtime.typing.set_typing(seeded.alice, seeded.direct_id, is_typing)
    assert [e["isTyping"] for e in data_of(await drain(bob), EventType.CHAT_TYPING)] == [
        True,
        False,
        True,
    ]
    with pytest.raises(RateLimited) as refused:
        await runtime.typing.set_typing(seeded.alice, seeded.direct_id, False)
    assert refused.value.retry_after >= 1
    assert bob.queued == 0
    assert runtime.typing.is_typing(seeded.acme_id, seeded.direct_id, seeded.alice.user_id)


async def test_with_rate_limits_disabled_nothing_is_limited(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(
        rate_limit_enabled=False,
        rate_limit_messages_burst=3,
        rate_limit_messages_per_minute=1,
        rate_limit_typing_burst=3,
        rate_limit_typing_per_minute=1,
    )
    bob = await listen(runtime, seeded.bob, EventType.CHAT_MESSAGE, EventType.CHAT_TYPING)
    sent = await send_all(runtime, seeded.alice, seeded.direct_id, *(f"m{i}" for i in range(10)))
    for i in range(10):
        await runtime.typing.set_typing(seeded.alice, seeded.direct_id, i % 2 == 0)
    events = await drain(bob)
    assert len(data_of(events, EventType.CHAT_MESSAGE)) == len(sent) == 10
    assert [e["isTyping"] for e in data_of(events, EventType.CHAT_TYPING)] == [True, False] * 5


async def test_the_api_maps_rate_limited_to_429_with_retry_after(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(
        rate_limit_messages_burst=3,
        rate_limit_messages_per_minute=1,
        rate_limit_typing_burst=3,
        rate_limit_typing_per_minute=1,
    )
    api = build_api()
    api.dependency_overrides[current_runtime] = lambda: runtime
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://chat.test") as http:
        token = await http.post(
            "/api/auth/token", json={"username": "alice", "password": "alice-pass"}
        )
        assert token.status_code == 200
        http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        messages = f"/api/conversations/{seeded.direct_id}/messages"
        typing = f"/api/conversations/{seeded.direct_id}/typing"

        statuses = [
            (await http.post(messages, json={"content": f"m{i}"})).status_code for i in range(3)
        ]
        assert statuses == [201, 201, 201]
        refused = await http.post(messages, json={"content": "m3"})
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limited"
        listed = await http.get(messages)
        assert [m["content"] for m in listed.json()["items"]] == ["m2", "m1", "m0"]

        statuses = [
            (await http.post(typing, json={"isTyping": i % 2 == 0})).status_code for i in range(3)
        ]
        assert statuses == [204, 204, 204]
        refused = await http.post(typing, json={"isTyping": False})
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limited"


# -- typing ----------------------------------------------------------------------------------


async def test_typing_start_is_announced_to_the_other_participants_only(
    runtime: Runtime, seeded: Seeded
) -> None:
    clients = {
        p.username: await listen(runtime, p, EventType.CHAT_TYPING)
        for p in (seeded.alice, seeded.bob, seeded.carol)
    }
    dave = await listen(runtime, seeded.dave, EventType.CHAT_TYPING)
    assert await runtime.typing.set_typing(seeded.alice, seeded.group_id, True)
    expected = {
        "conversationId": seeded.group_id,
        "userId": seeded.alice.user_id,
        "userName": "Alice",
        "isTyping": True,
    }
    received = {name: data_of(await drain(c), EventType.CHAT_TYPING) for name, c in clients.items()}
    assert received == {"alice": [], "bob": [expected], "carol": [expected]}
    assert dave.queued == 0
    assert runtime.typing.is_typing(seeded.acme_id, seeded.group_id, seeded.alice.user_id)
    # In the 1:1, carol hears nothing.
    await runtime.typing.set_typing(seeded.bob, seeded.direct_id, True)
    assert [len(await drain(clients[n])) for n in ("alice", "bob", "carol")] == [1, 0, 0]


@pytest.fixture
async def clocked_typing(runtime: Runtime) -> AsyncIterator[tuple[TypingTracker, list[float]]]:
    """A tracker on the runtime's service whose clock the test moves (throttle 3 s)."""
    now = [1000.0]
    tracker = TypingTracker(
        runtime.service,
        replace(runtime.settings, typing_throttle_seconds=3.0, typing_expiry_seconds=3600.0),
        TokenBucketLimiter(per_minute=60, burst=100),
        recipients_of=runtime.conversations.recipients,
        clock=lambda: now[0],
    )
    try:
        yield tracker, now
    finally:
        await tracker.close()


async def test_typing_repeats_within_the_throttle_are_dropped(
    runtime: Runtime, seeded: Seeded, clocked_typing: tuple[TypingTracker, list[float]]
) -> None:
    tracker, now = clocked_typing
    bob = await listen(runtime, seeded.bob, EventType.CHAT_TYPING)
    assert await tracker.set_typing(seeded.alice, seeded.direct_id, True)
    assert len(await drain(bob)) == 1
    for later in (0.5, 1.5, 2.999):
        now[0] = 1000.0 + later
        assert not await tracker.set_typing(seeded.alice, seeded.direct_id, True)
        assert bob.queued == 0
    assert tracker.is_typing(seeded.acme_id, seeded.direct_id, seeded.alice.user_id)


async def test_typing_repeats_after_the_throttle_are_announced_again(
    runtime: Runtime, seeded: Seeded, clocked_typing: tuple[TypingTracker, list[float]]
) -> None:
    tracker, now = clocked_typing
    bob = await listen(runtime, seeded.bob, EventType.CHAT_TYPING)
    announced = []
    for at in (0.0, 2.0, 3.0, 5.9, 6.0, 10.0):
        now[0] = 1000.0 + at
        announced.append(await tracker.set_typing(seeded.alice, seeded.direct_id, True))
    # The throttle counts from the last announcement, not from the last repeat.
    assert announced == [True, False, True, False, True, True]
    events = data_of(await drain(bob), EventType.CHAT_TYPING)
    assert [e["isTyping"] for e in events] == [True, True, True, True]


async def test_typing_silence_past_the_expiry_emits_a_stop_by_itself(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(typing_expiry_seconds=0.05)
    bob = await listen(runtime, seeded.bob, EventType.CHAT_TYPING)
    await runtime.typing.set_typing(seeded.alice, seeded.direct_id, True)
    events = data_of(await wait_for_events(bob, 2), EventType.CHAT_TYPING)
    assert [(e["userId"], e["isTyping"]) for e in events] == [
        (seeded.alice.user_id, True),
        (seeded.alice.user_id, False),
    ]
    assert not runtime.typing.is_typing(seeded.acme_id, seeded.direct_id, seeded.alice.user_id)
    # Stopping after the expiry announced it: nothing more.
    assert not await runtime.typing.set_typing(seeded.alice, seeded.direct_id, False)
    assert bob.queued == 0


async def test_an_explicit_typing_stop_emits_once(runtime: Runtime, seeded: Seeded) -> None:
    bob = await listen(runtime, seeded.bob, EventType.CHAT_TYPING)
    await runtime.typing.set_typing(seeded.alice, seeded.direct_id, True)
    await drain(bob)
    assert await runtime.typing.set_typing(seeded.alice, seeded.direct_id, False)
    assert [e["isTyping"] for e in data_of(await drain(bob), EventType.CHAT_TYPING)] == [False]
    assert not await runtime.typing.set_typing(seeded.alice, seeded.direct_id, False)
    assert bob.queued == 0
    assert not runtime.typing.is_typing(seeded.acme_id, seeded.direct_id, seeded.alice.user_id)


async def test_a_typing_stop_when_not_typing_emits_nothing(
    runtime: Runtime, seeded: Seeded
) -> None:
    bob = await listen(runtime, seeded.bob, EventType.CHAT_TYPING)
    carol = await listen(runtime, seeded.carol, EventType.CHAT_TYPING)
    assert not await runtime.typing.set_typing(seeded.alice, seeded.group_id, False)
    # Typing in one conversation is not typing in another.
    await runtime.typing.set_typing(seeded.alice, seeded.direct_id, True)
    await drain(bob)
    assert not await runtime.typing.set_typing(seeded.alice, seeded.group_id, False)
    assert (bob.queued, carol.queued) == (0, 0)


async def test_a_sent_message_stops_typing_after_the_message(
    runtime: Runtime, seeded: Seeded
) -> None:
    bob = await listen(runtime, seeded.bob, EventType.CHAT_MESSAGE, EventType.CHAT_TYPING)
    alice = await listen(runtime, seeded.alice, EventType.CHAT_MESSAGE, EventType.CHAT_TYPING)
    await runtime.typing.set_typing(seeded.alice, seeded.direct_id, True)
    await drain(bob)
    await runtime.messages.send(seeded.alice, seeded.direct_id, "done typing")
    events = await drain(bob)
    assert [e.type for e in events] == [EventType.CHAT_MESSAGE, EventType.CHAT_TYPING]
    assert events[0].data["message"]["content"] == "done typing"
    assert events[1].data["isTyping"] is False and events[1].data["userId"] == seeded.alice.user_id
    assert not runtime.typing.is_typing(seeded.acme_id, seeded.direct_id, seeded.alice.user_id)
    # The typist's own client gets the message and no typing news about herself.
    assert [e.type for e in await drain(alice)] == [EventType.CHAT_MESSAGE]
    # Sending without typing first emits no stop.
    await runtime.messages.send(seeded.alice, seeded.direct_id, "and again")
    assert [e.type for e in await drain(bob)] == [EventType.CHAT_MESSAGE]


# -- presence --------------------------------------------------------------------------------


class PresenceWatch:
    """An observer's client of presence updates in its tenant.

    `settle()` proves a negative without sleeping: the observer flips its own chosen status,
    and the tracker announces changes one at a time in the order they happened, so every
    update that was due before the flip arrives before the observer's own.
    """

    def __init__(self, runtime: Runtime, observer: Principal, client: Client) -> None:
        self.runtime = runtime
        self.observer = observer
        self.client = client
        self._buffer: list[dict[str, Any]] = []
        self._away = False

    @classmethod
    async def open(cls, runtime: Runtime, observer: Principal) -> PresenceWatch:
        client = await listen(runtime, observer, EventType.PRESENCE_UPDATE)
        watch = cls(runtime, observer, client)
        assert (await watch.next_of(observer))["status"] == "online"
        return watch

    async def next_of(self, user: Principal) -> dict[str, Any]:
        """The next update about `user` (others seen meanwhile stay buffered)."""
        async with asyncio.timeout(EVENT_TIMEOUT):
            while True:
                for index, data in enumerate(self._buffer):
                    if data["userId"] == user.user_id:
                        return self._buffer.pop(index)
                self._buffer.extend(e.data for e in await self.client.next_batch())

    async def settle(self) -> list[dict[str, Any]]:
        """Every update announced until now, about anyone but the observer."""
        self._away = not self._away
        chosen = Status.AWAY if self._away else Status.ONLINE
        self.runtime.presence.choose(self.observer, chosen)
        flip = await self.next_of(self.observer)
        assert flip["status"] == chosen.value
        seen, self._buffer = self._buffer, []
        return seen


def status_of(runtime: Runtime, tenant_id: int, user_id: int) -> Status:
    """The status the runtime's presence tracker holds for the user, read synchronously.

    `Runtime.presence` is the `Presence` protocol, which has no `status_of`: the Redis tracker
    cannot answer it synchronously. The runtimes of these tests track presence in memory."""
    return cast(PresenceTracker, runtime.presence).status_of(tenant_id, user_id)


async def connect_user(runtime: Runtime, principal: Principal) -> Client:
    return await listen(runtime, principal, EventType.NOTIFICATION_NEW)  # quiet: no presence news


async def test_a_first_client_announces_online_once_to_the_tenant(
    runtime: Runtime, seeded: Seeded
) -> None:
    acme = await PresenceWatch.open(runtime, seeded.alice)
    globex = await PresenceWatch.open(runtime, seeded.dave)
    await connect_user(runtime, seeded.bob)
    update = await acme.next_of(seeded.bob)
    assert update["userName"] == "Bob"
    assert update["status"] == "online"
    assert update["lastSeen"] is not None and update["lastSeen"].endswith("Z")
    assert await acme.settle() == []
    assert await globex.settle() == []  # Globex hears nothing of bob
    assert status_of(runtime, seeded.acme_id, seeded.bob.user_id) is Status.ONLINE


async def test_a_second_client_of_the_same_user_announces_nothing(
    runtime: Runtime, seeded: Seeded
) -> None:
    acme = await PresenceWatch.open(runtime, seeded.alice)
    await connect_user(runtime, seeded.bob)
    await connect_user(runtime, seeded.bob)
    assert [u["status"] for u in await acme.settle()] == ["online"]


async def test_one_of_two_clients_disconnecting_announces_nothing(
    runtime: Runtime, seeded: Seeded
) -> None:
    acme = await PresenceWatch.open(runtime, seeded.alice)
    first = await connect_user(runtime, seeded.bob)
    await connect_user(runtime, seeded.bob)
    assert (await acme.next_of(seeded.bob))["status"] == "online"
    runtime.manager.disconnect(first)
    assert await acme.settle() == []
    assert status_of(runtime, seeded.acme_id, seeded.bob.user_id) is Status.ONLINE


async def test_the_last_disconnect_turns_offline_after_the_grace_not_before(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    grace = 0.2
    runtime = await make_runtime(presence_grace_seconds=grace)
    acme = await PresenceWatch.open(runtime, seeded.alice)
    clients = [await connect_user(runtime, seeded.bob) for _ in range(2)]
    assert (await acme.next_of(seeded.bob))["status"] == "online"
    for client in clients:
        runtime.manager.disconnect(client)
    disconnected_at = time.monotonic()
    assert status_of(runtime, seeded.acme_id, seeded.bob.user_id) is Status.ONLINE
    update = await acme.next_of(seeded.bob)
    waited = time.monotonic() - disconnected_at
    assert update["status"] == "offline"
    assert waited >= grace - 0.01
    assert status_of(runtime, seeded.acme_id, seeded.bob.user_id) is Status.OFFLINE
    assert await acme.settle() == []  # one update, not one per client


async def test_reconnecting_within_the_grace_announces_nothing(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(presence_grace_seconds=30.0)
    acme = await PresenceWatch.open(runtime, seeded.alice)
    tab = await connect_user(runtime, seeded.bob)
    assert (await acme.next_of(seeded.bob))["status"] == "online"
    runtime.manager.disconnect(tab)  # the reload ...
    # ... takes a while: the loop runs on (timers included) until the observer's own update
    # is through, and bob has not gone offline meanwhile ...
    assert await acme.settle() == []
    await connect_user(runtime, seeded.bob)  # ... and the page is back
    assert await acme.settle() == []
    assert status_of(runtime, seeded.acme_id, seeded.bob.user_id) is Status.ONLINE


async def test_going_offline_is_announced_even_while_the_database_is_locked(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    """ "Last seen" is recorded on a best-effort basis: a locked database must not swallow
    the presence update itself."""
    runtime = await make_runtime(presence_grace_seconds=0.1)
    acme = await PresenceWatch.open(runtime, seeded.alice)
    tab = await connect_user(runtime, seeded.bob)
    assert (await acme.next_of(seeded.bob))["status"] == "online"
    with write_lock(runtime.settings.database_url):
        runtime.manager.disconnect(tab)
        async with asyncio.timeout(20):  # the write waits out the lock timeout first
            while not any(
                e.data["userId"] == seeded.bob.user_id and e.data["status"] == "offline"
                for e in await acme.client.next_batch()
            ):
                pass


async def test_idle_past_the_idle_time_turns_away_and_a_touch_turns_online_again(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(presence_idle_seconds=0.1)
    watcher = await listen(runtime, seeded.alice, EventType.PRESENCE_UPDATE)
    acme = PresenceWatch(runtime, seeded.alice, watcher)
    await connect_user(runtime, seeded.bob)
    assert (await acme.next_of(seeded.bob))["status"] == "online"
    assert (await acme.next_of(seeded.bob))["status"] == "away"
    assert status_of(runtime, seeded.acme_id, seeded.bob.user_id) is Status.AWAY
    runtime.presence.touch(seeded.bob)
    assert status_of(runtime, seeded.acme_id, seeded.bob.user_id) is Status.ONLINE
    assert (await acme.next_of(seeded.bob))["status"] == "online"


async def test_choosing_away_sticks_despite_activity_until_online_is_chosen(
    runtime: Runtime, seeded: Seeded
) -> None:
    acme = await PresenceWatch.open(runtime, seeded.alice)
    await connect_user(runtime, seeded.bob)
    assert (await acme.next_of(seeded.bob))["status"] == "online"

    assert runtime.presence.choose(seeded.bob, Status.AWAY) is Status.AWAY
    assert (await acme.next_of(seeded.bob))["status"] == "away"
    runtime.presence.touch(seeded.bob)
    await connect_user(runtime, seeded.bob)
    assert await acme.settle() == []
    assert status_of(runtime, seeded.acme_id, seeded.bob.user_id) is Status.AWAY

    assert runtime.presence.choose(seeded.bob, Status.ONLINE) is Status.ONLINE
    assert (await acme.next_of(seeded.bob))["status"] == "online"
    assert await acme.settle() == []


async def test_a_user_in_two_tenants_is_online_only_in_the_tenant_of_her_client(
    runtime: Runtime, seeded: Seeded
) -> None:
    acme = await PresenceWatch.open(runtime, seeded.alice)
    globex = await PresenceWatch.open(runtime, seeded.dave)
    await connect_user(runtime, seeded.carol_globex)
    update = await globex.next_of(seeded.carol_globex)
    assert (update["userName"], update["status"]) == ("Carol", "online")
    assert await globex.settle() == []
    assert await acme.settle() == []
    assert status_of(runtime, seeded.globex_id, seeded.carol.user_id) is Status.ONLINE
    assert status_of(runtime, seeded.acme_id, seeded.carol.user_id) is Status.OFFLINE
    snapshot = {p.user_id: p.status for p in await runtime.presence.snapshot(seeded.acme_id)}
    assert snapshot[seeded.carol.user_id] == "offline"


async def test_the_snapshot_lists_every_member_with_status_and_last_seen(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(presence_grace_seconds=0.05)
    acme = await PresenceWatch.open(runtime, seeded.alice)
    bob = await connect_user(runtime, seeded.bob)
    assert (await acme.next_of(seeded.bob))["status"] == "online"
    runtime.manager.disconnect(bob)
    offline = await acme.next_of(seeded.bob)
    assert offline["status"] == "offline" and offline["lastSeen"] is not None

    snapshot = {p.user_name: p for p in await runtime.presence.snapshot(seeded.acme_id)}
    assert sorted(snapshot) == ["Alice", "Bob", "Carol"]
    assert snapshot["Alice"].status == "online" and snapshot["Alice"].last_seen is not None
    assert (snapshot["Bob"].status, snapshot["Bob"].last_seen) == ("offline", offline["lastSeen"])
    assert (snapshot["Carol"].status, snapshot["Carol"].last_seen) == ("offline", None)
    assert {p.user_id for p in snapshot.values()} == {
        seeded.alice.user_id,
        seeded.bob.user_id,
        seeded.carol.user_id,
    }

    # The offline moment is recorded, not only remembered: a tracker that never saw bob
    # (another process, or this one after a restart) reports the same lastSeen.
    fresh = PresenceTracker(runtime.manager, runtime.service, runtime.db, runtime.settings)
    remembered = {p.user_name: p for p in await fresh.snapshot(seeded.acme_id)}
    assert remembered["Bob"].status == "offline"
    assert remembered["Bob"].last_seen == offline["lastSeen"]
    assert remembered["Alice"].status == "offline"  # that tracker knows no client of hers
