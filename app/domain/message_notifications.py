"""The notifications the server creates by itself about messages.

- `mention`: a message that says `@username` of another participant notifies them as soon
  as it is stored; an edit notifies only the people it newly mentions.
- `direct`: a 1:1 message its recipient has not read `dm_notify_after_seconds` after it was
  sent notifies them (a task per message, owned here, waits out that time).

Both link to the message (`routes.message_link`: "/?c=<conversation>&m=<message>") and are
stored and announced by `Notifications.deliver`, as an admin's are.

Deliberate, so nobody "fixes" them:
- A mention is the "@" not after a letter, digit, "_", ".", "+", "-" or "@" (so "a@b.com" is
  an address), then the username, case-insensitive; a name ending in "." or "-" also counts
  without it ("@bob." mentions bob). Only participants in the conversation's tenant, never
  the sender. A mention notifies even someone who is looking at the conversation.
- A `direct` check looks at the message as it is then: deleted, read (the recipient's read
  cursor reached it) or by now mentioning the recipient (the mention notified them: one
  notification, not two) makes none.
- One `direct` per burst: none while the recipient has an unread `direct` for the same
  conversation; that one is left as it is (not updated to the newest message).
- Checks live in the process that stored the message and are dropped at its shutdown; two
  processes checking one burst at the same instant could both notify. A nudge, not a record.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

from sqlmodel import Session, col, select

from app.db import Database
from app.domain.conversations import conversation_name, conversation_views
from app.domain.notifications import Delivery, NotificationDraft, Notifications
from app.domain.principal import Principal
from app.domain.text import shorten
from app.models import ConversationKind, ConversationMember, Membership, Message, Notification, User
from app.realtime.tasks import cancel_and_wait
from app.routes import conversation_in_link, message_link
from app.settings import Settings

logger = logging.getLogger(__name__)

MENTION = "mention"
DIRECT = "direct"
# A notification's body: the message's first words, about a tweet's worth.
PREVIEW_CHARS = 140

_MENTION_PATTERN = re.compile(r"(?<![\w.+@-])@(\w[\w.-]*)")


def mentioned_usernames(text: str) -> frozenset[str]:
    """The lower-cased usernames `text` may mention (the caller keeps those of real people)."""
    names: set[str] = set()
    for match in _MENTION_PATTERN.finditer(text):
        name = match.group(1).lower()
        names.update((name, name.rstrip(".-")))
    names.discard("")
    return frozenset(names)


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """`text` on one line, at most `limit` characters, cut after a whole word with "…"."""
    return shorten(text, limit)


class MessageNotifications:
    def __init__(self, db: Database, notifications: Notifications, settings: Settings) -> None:
        self._db = db
        self._notifications = notifications
        self._delay = settings.dm_notify_after_seconds
        self._title_max = settings.notification_title_max_chars
        self._checks: set[asyncio.Task[None]] = set()
        # Two checks of one burst must not both find "no unread `direct` yet".
        self._check_lock = asyncio.Lock()
        self._running = False

    def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        """Drop the checks still waiting; none is scheduled from now on."""
        self._running = False
        await cancel_and_wait(list(self._checks))
        self._checks.clear()

    async def idle(self) -> None:
        """Until every check scheduled so far has run (tests)."""
        while self._checks:
            await asyncio.wait(set(self._checks))

    async def sent(
        self,
        sender: Principal,
        conversation_id: int,
        message_id: int,
        content: str,
        direct_recipient: int | None,
    ) -> None:
        """A message was stored and announced: notify whom it mentions now, and the
        recipient of a 1:1 later if they have not read it. Never raises: the message is
        sent whatever becomes of its notifications."""
        mentioned = mentioned_usernames(content)
        if mentioned:
            await self._notify_mentions(sender, conversation_id, message_id, mentioned)
        if direct_recipient is not None and direct_recipient != sender.user_id:
            self._schedule_direct_check(sender, conversation_id, message_id, direct_recipient)

    async def edited(
        self, editor: Principal, conversation_id: int, message_id: int, before: str, after: str
    ) -> None:
        """A message's content changed: notify the people it mentions now and did not.
        Never raises."""
        added = mentioned_usernames(after) - mentioned_usernames(before)
        if added:
            await self._notify_mentions(editor, conversation_id, message_id, added)

    async def _notify_mentions(
        self,
        sender: Principal,
        conversation_id: int,
        message_id: int,
        usernames: frozenset[str],
    ) -> None:
        def choose(session: Session) -> list[Delivery]:
            message = _live_message(session, sender.tenant_id, conversation_id, message_id)
            if message is None:
                return []
            people: Sequence[int] = session.exec(  # type: ignore[assignment]  # SQLModel types ids int | None; stored rows have one
                select(User.id)
                .join(ConversationMember, col(ConversationMember.user_id) == col(User.id))
                .join(Membership, col(Membership.user_id) == col(User.id))
                .where(ConversationMember.conversation_id == conversation_id)
                .where(Membership.tenant_id == sender.tenant_id)
                .where(col(User.username).in_(sorted(usernames)))
                .where(User.id != sender.user_id)
                .order_by(col(User.id))
            ).all()
            if not people:
                return []
            view = conversation_views(session, sender, [conversation_id])[0]
            body = preview(message.content)
            link = message_link(conversation_id, message_id)
            deliveries: list[Delivery] = []
            for user_id in people:
                title = f"{sender.display_name} mentioned you"
                if view.kind != ConversationKind.DIRECT.value:  # a 1:1 is named after the sender
                    title += f" in {conversation_name(view, user_id)}"
                draft = NotificationDraft(MENTION, preview(title, self._title_max), body, link)
                checked = self._notifications.validate(draft)
                deliveries.append(Delivery(user_id, checked))
            return deliveries

        try:
            await self._notifications.deliver(sender.tenant_id, choose, created_by=sender.user_id)
        except Exception as exc:  # noqa: BLE001  # a notification is not worth failing a message for
            logger.warning("could not notify the mentions of message %d: %s", message_id, exc)

    def _schedule_direct_check(
        self, sender: Principal, conversation_id: int, message_id: int, recipient_id: int
    ) -> None:
        if not self._running:
            return
        task = asyncio.get_running_loop().create_task(
            self._check_direct_later(sender, conversation_id, message_id, recipient_id),
            name="direct-message-notification",
        )
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check_direct_later(
        self, sender: Principal, conversation_id: int, message_id: int, recipient_id: int
    ) -> None:
        await asyncio.sleep(self._delay)

        def choose(session: Session) -> list[Delivery]:
            message = _live_message(session, sender.tenant_id, conversation_id, message_id)
            if message is None:
                return []
            found = session.exec(
                select(ConversationMember, User)
                .join(User, col(User.id) == col(ConversationMember.user_id))
                .join(Membership, col(Membership.user_id) == col(User.id))
                .where(ConversationMember.conversation_id == conversation_id)
                .where(ConversationMember.user_id == recipient_id)
                .where(Membership.tenant_id == sender.tenant_id)
            ).first()
            if found is None:  # no longer in the tenant
                return []
            cursor, recipient = found
            if cursor.last_read_message_id >= message_id:
                return []
            if recipient.username in mentioned_usernames(message.content):
                return []
            if _has_unread_direct(session, sender.tenant_id, recipient_id, conversation_id):
                return []
            title = preview(f"{sender.display_name} sent you a message", self._title_max)
            draft = NotificationDraft(
                DIRECT, title, preview(message.content), message_link(conversation_id, message_id)
            )
            return [Delivery(recipient_id, self._notifications.validate(draft))]

        try:
            async with self._check_lock:
                await self._notifications.deliver(
                    sender.tenant_id, choose, created_by=sender.user_id
                )
        except Exception as exc:  # noqa: BLE001  # the next message of the conversation tries again
            logger.warning("could not notify the recipient of message %d: %s", message_id, exc)


def _live_message(
    session: Session, tenant_id: int, conversation_id: int, message_id: int
) -> Message | None:
    """The message if it is still there to read, else None (deleted)."""
    message = session.get(Message, message_id)
    if (
        message is None
        or message.tenant_id != tenant_id
        or message.conversation_id != conversation_id
        or message.deleted_at is not None
    ):
        return None
    return message


def _has_unread_direct(
    session: Session, tenant_id: int, user_id: int, conversation_id: int
) -> bool:
    links = session.exec(
        select(Notification.link)
        .where(Notification.tenant_id == tenant_id)
        .where(Notification.user_id == user_id)
        .where(col(Notification.read_at).is_(None))
        .where(Notification.type == DIRECT)
    ).all()
    return any(link is not None and conversation_in_link(link) == conversation_id for link in links)
