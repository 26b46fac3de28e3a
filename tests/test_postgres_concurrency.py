"""What SQLite's single writer gave for free, shown on PostgreSQL (READ COMMITTED): a read
that waits for a send's row lock still counts that send's message; many senders in two
processes (two runtimes on one database) and readers at once leave every unread count
exact and the conversation's last message the newest; two admins removing each other
cannot both succeed."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from sqlalchemy import event as sa_event
from sqlmodel import Session, col, func, select

from app.domain.errors import Forbidden
from app.domain.principal import Principal
from app.models import Conversation, ConversationMember, Membership, Message, Role
from app.runtime import Runtime
from tests.databases import libpq_dsn
from tests.seeded_chat import EVENT_TIMEOUT, MakeRuntime, Seeded

pytestmark = pytest.mark.databases("postgres")


def _waiting_for_a_lock(database_url: str) -> bool:
    with psycopg.connect(libpq_dsn(database_url)) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


async def _until(predicate: Any, what: str, timeout: float = EVENT_TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(predicate):
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)


async def test_a_read_waiting_for_a_sends_lock_counts_that_send(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    """The send has added bob's +1 and holds his row; bob's read of the 1:1 (to the message
    newest when it began) waits for it. Once the send commits, the read must count the
    new message: a count taken when the read began would overwrite the +1 with 0."""
    runtime = await make_runtime()
    direct = seeded.direct_id
    await runtime.messages.send(seeded.alice, direct, "first")
    paused, resume = threading.Event(), threading.Event()
    armed = [True]

    def hold_the_send(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if armed[0] and "SET unread_count=(conversationmember.unread_count +" in statement:
            armed[0] = False
            paused.set()
            resume.wait(EVENT_TIMEOUT * 2)

    sa_event.listen(runtime.db.engine, "after_cursor_execute", hold_the_send)
    try:
        sending = asyncio.create_task(runtime.messages.send(seeded.alice, direct, "second"))
        assert await asyncio.to_thread(paused.wait, EVENT_TIMEOUT)
        reading = asyncio.create_task(runtime.messages.mark_read(seeded.bob, direct))
        await _until(
            lambda: _waiting_for_a_lock(runtime.settings.database_url), "the read never waited"
        )
        resume.set()
        async with asyncio.timeout(EVENT_TIMEOUT):
            await sending
            change = await reading
    finally:
        resume.set()
        sa_event.remove(runtime.db.engine, "after_cursor_execute", hold_the_send)
    views, _ = await runtime.conversations.list_for(seeded.bob)
    assert {v.id: v.unread_count for v in views}[direct] == 1
    assert change.count == 1


def _truth(session: Session, conversation_id: int) -> tuple[dict[int, int], dict[int, int], int]:
    """Each member's stored unread count, the count their cursor implies, and the newest id."""
    members = session.exec(
        select(ConversationMember).where(ConversationMember.conversation_id == conversation_id)
    ).all()
    stored = {m.user_id: m.unread_count for m in members}
    implied = {
        m.user_id: session.exec(
            select(func.count())
            .select_from(Message)
            .where(Message.conversation_id == conversation_id)
            .where(col(Message.id) > m.last_read_message_id)
            .where(Message.sender_id != m.user_id)
        ).one()
        for m in members
    }
    conversation = session.get(Conversation, conversation_id)
    assert conversation is not None
    newest = session.exec(
        select(func.max(Message.id)).where(Message.conversation_id == conversation_id)
    ).one()
    assert conversation.last_message_id == newest, "the last message is not the newest"
    return stored, implied, newest or 0


async def test_sends_from_two_processes_and_reads_keep_every_unread_count_exact(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    first, second = await make_runtime(), await make_runtime()
    # Both runtimes on the first one's database: two processes sharing one PostgreSQL.
    await second.stop()
    shared = Runtime(first.settings)
    await shared.start()
    try:
        group = seeded.group_id
        per_sender = 15

        async def sends(runtime: Runtime, who: str) -> None:
            sender = getattr(seeded, who)
            for n in range(per_sender):
                await runtime.messages.send(sender, group, f"{who} {n}")

        async def reads(runtime: Runtime) -> None:
            for _ in range(per_sender):
                await runtime.messages.mark_read(seeded.bob, group)
                await asyncio.sleep(0)

        await asyncio.gather(
            sends(first, "alice"),
            sends(shared, "carol"),
            sends(first, "carol"),
            sends(shared, "alice"),
            reads(first),
            reads(shared),
        )
        stored, implied, newest = await first.db.run(lambda s: _truth(s, group))
    finally:
        await shared.stop()
    assert stored == implied
    # bob read last while some sends were still arriving: he has between 0 and all unread.
    assert 0 <= stored[seeded.bob.user_id] <= 4 * per_sender
    assert newest > 0


def _as_admin(principal: Principal) -> Principal:
    memberships = tuple(replace(m, role=Role.ADMIN.value) for m in principal.memberships)
    return replace(principal, memberships=memberships)


async def test_two_admins_removing_each_other_at_once_leave_one_admin(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    """alice's removal of bob has deleted his membership and is held before it commits;
    bob's removal of alice runs meanwhile. It must wait, then find bob no admin any more:
    under READ COMMITTED it would still see bob's row, and both removals would succeed."""
    runtime = await make_runtime()
    acme, alice, bob = seeded.acme_id, seeded.alice, _as_admin(seeded.bob)

    def promote_bob(session: Session) -> None:
        row = session.exec(
            select(Membership)
            .where(Membership.tenant_id == acme)
            .where(Membership.user_id == bob.user_id)
        ).one()
        row.role = Role.ADMIN.value
        session.add(row)
        session.commit()

    await runtime.db.run(promote_bob)
    paused, resume, second_deleted = threading.Event(), threading.Event(), threading.Event()
    deletes = [0]

    def hold_the_first_removal(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.startswith("DELETE FROM membership"):
            deletes[0] += 1
            if deletes[0] == 1:
                paused.set()
                resume.wait(EVENT_TIMEOUT * 2)
            else:
                second_deleted.set()

    sa_event.listen(runtime.db.engine, "after_cursor_execute", hold_the_first_removal)
    try:
        first = asyncio.create_task(runtime.members.remove(alice, bob.user_id))
        assert await asyncio.to_thread(paused.wait, EVENT_TIMEOUT)
        second = asyncio.create_task(runtime.members.remove(bob, alice.user_id))
        await _until(
            lambda: second_deleted.is_set() or _waiting_for_a_lock(runtime.settings.database_url),
            "the second removal neither waited nor ran",
        )
        resume.set()
        outcomes = await asyncio.gather(first, second, return_exceptions=True)
    finally:
        resume.set()
        sa_event.remove(runtime.db.engine, "after_cursor_execute", hold_the_first_removal)
    assert outcomes[0] is None
    assert isinstance(outcomes[1], Forbidden), outcomes
    admins = await runtime.db.run(
        lambda s: s.exec(
            select(func.count())
            .select_from(Membership)
            .where(Membership.tenant_id == acme)
            .where(Membership.role == Role.ADMIN.value)
        ).one()
    )
    assert admins == 1
