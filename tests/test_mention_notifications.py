"""The notifications the server creates by itself (app/domain/message_notifications.py):
`mention` for "@username" of a participant, `direct` for a 1:1 message its recipient has
not read within `dm_notify_after_seconds`. In process, on the real use cases.

As in tests/test_chat_use_cases.py, every test gets its own runtime on a copy of one seeded
database. Events of a use case are queued when it returns (the memory broker publishes
synchronously); a `direct` notification is awaited with a timeout; "none" after the grace
period is proven by waiting until every scheduled check has run
(`MessageNotifications.idle`), never by sleeping.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.domain.message_notifications import PREVIEW_CHARS, mentioned_usernames, preview
from app.domain.principal import Principal
from app.realtime.client import Client
from app.realtime.events import EventType
from app.routes import conversation_in_link, message_in_link, message_link
from app.runtime import Runtime
from tests.seeded_chat import EVENT_TIMEOUT, MakeRuntime, Seeded, drain

# On SQLite and on PostgreSQL (tests/databases.py).
pytestmark = pytest.mark.databases("sqlite", "postgres")

# Long enough that a read right after the send always comes first, short enough to wait out.
READ_IN_TIME_GRACE = 0.5
# "Not looking": the check runs almost at once.
QUICK_GRACE = 0.05


@pytest.fixture
def seeded_settings() -> dict[str, Any]:
    """Mentions are sent in bursts here; the rate limits have tests of their own."""
    return {"rate_limit_enabled": False}


@pytest.fixture
async def runtime(make_runtime: MakeRuntime) -> Runtime:
    """The default grace period (5 s): no `direct` check fires within a mention test."""
    return await make_runtime()


# -- helpers ----------------------------------------------------------------------------------


async def bell(runtime: Runtime, principal: Principal) -> Client:
    """A client of `principal`'s on their user channel, receiving `notification:new` only."""
    connection = await runtime.manager.connect(
        user_id=principal.user_id,
        tenant_id=principal.tenant_id,
        types=frozenset({EventType.NOTIFICATION_NEW}),
    )
    return connection.client


async def next_notification(client: Client) -> dict[str, Any]:
    async with asyncio.timeout(EVENT_TIMEOUT):
        events = await client.next_batch()
    assert [e.type for e in events] == [EventType.NOTIFICATION_NEW]
    return events[0].data


async def stored(runtime: Runtime, principal: Principal) -> list[dict[str, Any]]:
    """The principal's notifications in their active tenant, newest first, as sent."""
    page = await runtime.notifications.list_for(principal, limit=100, before=None)
    return [item.to_data() for item in page.items]


async def send(runtime: Runtime, sender: Principal, conversation_id: int, text: str) -> int:
    return (await runtime.messages.send(sender, conversation_id, text)).message.id


# -- the link ---------------------------------------------------------------------------------


def test_a_message_link_opens_its_conversation_at_the_message() -> None:
    link = message_link(12, 345)
    assert link == "/?c=12&m=345"
    assert (conversation_in_link(link), message_in_link(link)) == (12, 345)
    assert conversation_in_link("/?m=345&c=12") == 12


@pytest.mark.parametrize(
    "link",
    [
        "/?c=12",
        "/?m=345",
        "/?c=12&m=",
        "/?c=12&m=x",
        "/?c=12&m=1&m=2",
        "/?c=12&m=0",
        "https://evil.example/?c=12&m=345",
        "/login?c=12&m=345",
    ],
)
def test_a_link_without_one_clear_message_of_a_conversation_opens_no_message(link: str) -> None:
    assert message_in_link(link) is None


# -- what counts as a mention -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("@bob lunch?", {"bob"}),
        ("thanks @BOB, and (@Carol).", {"bob", "carol"}),
        ("see @carol.", {"carol", "carol."}),
        ("@bob's turn", {"bob"}),
        ("write to bob@acme.com", set()),
        ("carol.x@bob.com or a+b@carol.org", set()),
        ("@@bob, x.@bob, -@bob", set()),
        ("@ alone, @. and @-", set()),
        ("@bob.com is not bob", {"bob.com"}),
    ],
)
def test_a_mention_is_an_at_sign_starting_a_word(text: str, names: set[str]) -> None:
    assert mentioned_usernames(text) == names


def test_a_preview_is_cut_after_a_whole_word_with_an_ellipsis() -> None:
    words = "lorem ipsum dolor " * 20
    cut = preview(words)
    assert len(cut) <= PREVIEW_CHARS and cut.endswith("…")
    assert words.startswith(cut[:-1]) and words[len(cut) - 1] == " "
    assert preview("  two\n\nlines  ") == "two lines"
    assert preview("x" * 500) == "x" * (PREVIEW_CHARS - 1) + "…"


# -- mentions ---------------------------------------------------------------------------------


async def test_a_mention_of_a_participant_notifies_them_with_a_link_to_the_message(
    runtime: Runtime, seeded: Seeded
) -> None:
    bob, carol, alice = [await bell(runtime, p) for p in (seeded.bob, seeded.carol, seeded.alice)]
    text = "@bob could you look at the figures before " + "the meeting " * 20
    message_id = await send(runtime, seeded.alice, seeded.group_id, text)

    notified = await next_notification(bob)
    assert notified == {
        "id": notified["id"],
        "type": "mention",
        "title": "Alice mentioned you in Acme team",
        "body": preview(text),
        "link": f"/?c={seeded.group_id}&m={message_id}",
        "createdAt": notified["createdAt"],
        "unreadCount": 1,
    }
    assert len(notified["body"]) <= PREVIEW_CHARS and notified["body"].endswith("…")
    assert message_in_link(notified["link"]) == message_id
    assert conversation_in_link(notified["link"]) == seeded.group_id
    assert await stored(runtime, seeded.bob) == [notified]
    # Carol was not mentioned, alice wrote it.
    assert await drain(carol) == [] and await drain(alice) == []
    assert await stored(runtime, seeded.carol) == [] and await stored(runtime, seeded.alice) == []


async def test_mentions_are_case_insensitive_and_each_person_is_notified_once(
    runtime: Runtime, seeded: Seeded
) -> None:
    bob, carol = await bell(runtime, seeded.bob), await bell(runtime, seeded.carol)
    await send(runtime, seeded.alice, seeded.group_id, "@BOB and @Carol, then @bob again.")
    assert (await next_notification(bob))["type"] == "mention"
    assert (await next_notification(carol))["title"] == "Alice mentioned you in Acme team"
    assert await drain(bob) == [] and await drain(carol) == []


async def test_a_mention_in_a_1to1_says_who_without_naming_the_conversation_after_them(
    runtime: Runtime, seeded: Seeded
) -> None:
    bob = await bell(runtime, seeded.bob)
    message_id = await send(runtime, seeded.alice, seeded.direct_id, "@bob ping")
    notified = await next_notification(bob)
    assert (notified["type"], notified["title"], notified["link"]) == (
        "mention",
        "Alice mentioned you",
        f"/?c={seeded.direct_id}&m={message_id}",
    )


async def test_an_untitled_group_is_named_as_the_mentioned_person_sees_it(
    runtime: Runtime, seeded: Seeded
) -> None:
    view, _ = await runtime.conversations.create(
        seeded.alice, [seeded.bob.user_id, seeded.carol.user_id], None
    )
    bob = await bell(runtime, seeded.bob)
    await send(runtime, seeded.alice, view.id, "hi @bob")
    assert (await next_notification(bob))["title"] == "Alice mentioned you in Alice, Carol"


async def test_a_mention_of_someone_outside_the_conversation_or_its_tenant_notifies_no_one(
    runtime: Runtime, seeded: Seeded
) -> None:
    """Usernames are unique across tenants, so "the same username in another tenant" is the
    same person acting in another tenant: carol of Acme and of Globex."""
    watched = [seeded.carol, seeded.carol_globex, seeded.dave, seeded.erin]
    bells = [await bell(runtime, p) for p in watched]
    # Carol is in Acme but not in alice-bob; dave and erin are in Globex only.
    await send(runtime, seeded.alice, seeded.direct_id, "@carol @dave @erin @nobody hello")
    await send(runtime, seeded.alice, seeded.group_id, "@dave @erin are in Globex")
    # In Globex, a 1:1 of dave and erin: carol of Globex is not in it.
    globex_direct, _ = await runtime.conversations.create(seeded.dave, [seeded.erin.user_id], None)
    await send(runtime, seeded.dave, globex_direct.id, "@carol will not hear of this")

    for client in bells:
        assert await drain(client) == []
    for principal in watched:
        assert await stored(runtime, principal) == []
    # A mention in Acme reaches carol in Acme only.
    await send(runtime, seeded.alice, seeded.group_id, "@carol this one is yours")
    assert (await next_notification(bells[0]))["type"] == "mention"
    assert await drain(bells[1]) == [] and await stored(runtime, seeded.carol_globex) == []


async def test_a_participant_removed_from_the_tenant_is_not_notified(
    runtime: Runtime, seeded: Seeded
) -> None:
    carol = await bell(runtime, seeded.carol_globex)  # her Acme streams close with the removal
    await runtime.members.remove(seeded.alice, seeded.carol.user_id)
    await send(runtime, seeded.alice, seeded.group_id, "@carol are you still there?")
    assert await drain(carol) == []
    assert await stored(runtime, seeded.carol) == []
    assert await stored(runtime, seeded.carol_globex) == []


async def test_the_sender_mentioning_themselves_is_not_notified(
    runtime: Runtime, seeded: Seeded
) -> None:
    alice = await bell(runtime, seeded.alice)
    await send(runtime, seeded.alice, seeded.group_id, "note to self, @alice: call @Alice back")
    assert await drain(alice) == [] and await stored(runtime, seeded.alice) == []


async def test_email_addresses_are_not_mentions(runtime: Runtime, seeded: Seeded) -> None:
    bob, carol = await bell(runtime, seeded.bob), await bell(runtime, seeded.carol)
    # Every address here ends in a username ("@bob", "@carol.") and still mentions no one.
    await send(runtime, seeded.alice, seeded.group_id, "mail bob@acme.com, alice@bob or x@carol.")
    assert await drain(bob) == [] and await drain(carol) == []
    assert await stored(runtime, seeded.bob) == [] and await stored(runtime, seeded.carol) == []


async def test_an_edit_notifies_only_the_people_it_newly_mentions(
    runtime: Runtime, seeded: Seeded
) -> None:
    bob, carol = await bell(runtime, seeded.bob), await bell(runtime, seeded.carol)
    message_id = await send(runtime, seeded.alice, seeded.group_id, "@bob lunch?")
    await next_notification(bob)

    await runtime.messages.edit(seeded.alice, seeded.group_id, message_id, "@Bob and @carol lunch?")
    notified = await next_notification(carol)
    assert (notified["type"], notified["body"], notified["link"]) == (
        "mention",
        "@Bob and @carol lunch?",
        f"/?c={seeded.group_id}&m={message_id}",
    )
    assert await drain(bob) == []
    # The same content again changes nothing, so it mentions no one anew.
    await runtime.messages.edit(seeded.alice, seeded.group_id, message_id, "@Bob and @carol lunch?")
    assert await drain(bob) == [] and await drain(carol) == []
    assert len(await stored(runtime, seeded.bob)) == 1
    assert len(await stored(runtime, seeded.carol)) == 1


async def test_a_deleted_message_notifies_no_one_it_mentioned_afterwards(
    runtime: Runtime, seeded: Seeded
) -> None:
    bob = await bell(runtime, seeded.bob)
    message_id = await send(runtime, seeded.alice, seeded.group_id, "@bob oops")
    await next_notification(bob)
    await runtime.messages.delete(seeded.alice, seeded.group_id, message_id)
    assert await drain(bob) == [] and len(await stored(runtime, seeded.bob)) == 1


# -- direct messages --------------------------------------------------------------------------


async def test_a_dm_read_within_the_grace_period_notifies_no_one(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(dm_notify_after_seconds=READ_IN_TIME_GRACE)
    bob = await bell(runtime, seeded.bob)
    message_id = await send(runtime, seeded.alice, seeded.direct_id, "are you there?")
    await runtime.messages.mark_read(seeded.bob, seeded.direct_id, message_id)
    await runtime.message_notifications.idle()
    assert await drain(bob) == [] and await stored(runtime, seeded.bob) == []


async def test_a_dm_seen_in_an_open_tab_notifies_no_one(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    """An open tab marks what arrives in its conversation read (app/domain/read_receipts.py)."""
    runtime = await make_runtime(dm_notify_after_seconds=READ_IN_TIME_GRACE)
    bob = await bell(runtime, seeded.bob)
    message_id = await send(runtime, seeded.alice, seeded.direct_id, "are you there?")
    runtime.read_receipts.seen(seeded.bob, seeded.direct_id, message_id)
    await runtime.read_receipts.idle()
    await runtime.message_notifications.idle()
    assert await drain(bob) == [] and await stored(runtime, seeded.bob) == []


async def test_a_dm_not_read_within_the_grace_period_notifies_its_recipient_once(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(dm_notify_after_seconds=QUICK_GRACE)
    bob, alice = await bell(runtime, seeded.bob), await bell(runtime, seeded.alice)
    message_id = await send(runtime, seeded.alice, seeded.direct_id, "are you there?")

    notified = await next_notification(bob)
    assert notified == {
        "id": notified["id"],
        "type": "direct",
        "title": "Alice sent you a message",
        "body": "are you there?",
        "link": f"/?c={seeded.direct_id}&m={message_id}",
        "createdAt": notified["createdAt"],
        "unreadCount": 1,
    }
    await runtime.message_notifications.idle()
    assert await drain(bob) == [] and await drain(alice) == []
    assert await stored(runtime, seeded.bob) == [notified]


async def test_a_dm_burst_makes_one_notification_until_it_is_read(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(dm_notify_after_seconds=QUICK_GRACE)
    bob = await bell(runtime, seeded.bob)
    first = await send(runtime, seeded.alice, seeded.direct_id, "one")
    for text in ("two", "three"):
        await send(runtime, seeded.alice, seeded.direct_id, text)
    notified = await next_notification(bob)
    await runtime.message_notifications.idle()
    assert await drain(bob) == []
    assert await stored(runtime, seeded.bob) == [notified]
    assert message_in_link(notified["link"]) == first

    # Once bob has read that notification, the next unread DM notifies again.
    await runtime.notifications.mark_read(seeded.bob, notified["id"])
    again = await send(runtime, seeded.alice, seeded.direct_id, "four")
    assert message_in_link((await next_notification(bob))["link"]) == again


async def test_a_dm_deleted_before_the_grace_period_ends_notifies_no_one(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(dm_notify_after_seconds=READ_IN_TIME_GRACE)
    bob = await bell(runtime, seeded.bob)
    message_id = await send(runtime, seeded.alice, seeded.direct_id, "sent to the wrong person")
    await runtime.messages.delete(seeded.alice, seeded.direct_id, message_id)
    await runtime.message_notifications.idle()
    assert await drain(bob) == [] and await stored(runtime, seeded.bob) == []


async def test_a_mention_in_a_dm_makes_the_mention_only(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(dm_notify_after_seconds=QUICK_GRACE)
    bob = await bell(runtime, seeded.bob)
    await send(runtime, seeded.alice, seeded.direct_id, "@bob look")
    assert (await next_notification(bob))["type"] == "mention"
    # ...and a DM whose edit mentions bob before its check ran is the mention only too.
    message_id = await send(runtime, seeded.alice, seeded.direct_id, "look")
    await runtime.messages.edit(seeded.alice, seeded.direct_id, message_id, "look @bob")
    assert (await next_notification(bob))["type"] == "mention"
    await runtime.message_notifications.idle()
    assert await drain(bob) == []
    assert [n["type"] for n in await stored(runtime, seeded.bob)] == ["mention", "mention"]


async def test_a_dm_notifies_whoever_of_the_two_did_not_write_it(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(dm_notify_after_seconds=QUICK_GRACE)
    alice, bob = await bell(runtime, seeded.alice), await bell(runtime, seeded.bob)
    await send(runtime, seeded.bob, seeded.direct_id, "hi alice")
    assert (await next_notification(alice))["title"] == "Bob sent you a message"
    await runtime.message_notifications.idle()
    assert await drain(bob) == [] and await stored(runtime, seeded.bob) == []


async def test_group_messages_never_make_a_direct_notification(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(dm_notify_after_seconds=QUICK_GRACE)
    bob = await bell(runtime, seeded.bob)
    await send(runtime, seeded.alice, seeded.group_id, "nobody reads this")
    await runtime.message_notifications.idle()
    assert await drain(bob) == [] and await stored(runtime, seeded.bob) == []


async def test_checks_still_waiting_are_dropped_at_shutdown_and_none_is_scheduled_after(
    make_runtime: MakeRuntime, seeded: Seeded
) -> None:
    runtime = await make_runtime(dm_notify_after_seconds=3600)
    await send(runtime, seeded.alice, seeded.direct_id, "later")
    async with asyncio.timeout(EVENT_TIMEOUT):
        await runtime.message_notifications.stop()
        await send(runtime, seeded.alice, seeded.direct_id, "during shutdown")
        await runtime.message_notifications.idle()
