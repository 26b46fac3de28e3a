"""Read cursors moved for conversations people are looking at: once per user, and many users
in one transaction.

Every tab that has a conversation open marks it read when a message arrives in it. Done one
tab at a time that was one database transaction per tab per message, about 39 % of the
backend's CPU with 300 tabs open (docs/performance.md), though only the first mark per user
changes anything. Here a mark is dropped when this process already moved that user's cursor
that far, and the others wait a moment for one flush that moves all of them together. The
unread counts that change are announced as before (`chat:unread-count` to that user).
"""

from __future__ import annotations

import asyncio
import logging

from app.domain.messages import Messages
from app.domain.principal import Principal
from app.realtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

# Long enough to gather the marks of one fan-out (every tab applies the same message within
# a few milliseconds of the others), short enough that the badge clears at once to the eye.
FLUSH_DELAY_SECONDS = 0.02
# (user, conversation) pairs remembered as read; past this the memory starts afresh (a
# forgotten pair costs one more no-op update, nothing else).
MAX_REMEMBERED = 100_000

Key = tuple[int, int]  # (user id, conversation id)


class ReadReceipts:
    def __init__(self, messages: Messages, *, flush_delay: float = FLUSH_DELAY_SECONDS) -> None:
        self._messages = messages
        self._flush_delay = flush_delay
        self._read_through: dict[Key, int] = {}
        self._pending: dict[Key, tuple[Principal, int]] = {}
        self._flush_task: asyncio.Task[None] | None = None

    def seen(self, principal: Principal, conversation_id: int, message_id: int) -> None:
        """The caller saw `message_id` in an open conversation: its cursor moves there soon."""
        key = (principal.user_id, conversation_id)
        if self._read_through.get(key, 0) >= message_id:
            return
        waiting = self._pending.get(key)
        if waiting is None or waiting[1] < message_id:
            self._pending[key] = (principal, message_id)
        if self._flush_task is None:
            self._flush_task = asyncio.get_running_loop().create_task(
                self._flush(), name="read-receipts"
            )

    async def idle(self) -> None:
        """Until every mark made so far is stored (tests, and an orderly stop)."""
        while self._flush_task is not None:
            await asyncio.shield(self._flush_task)

    async def close(self) -> None:
        await cancel_and_wait([self._flush_task])
        self._flush_task = None

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(self._flush_delay)
            while self._pending:
                batch, self._pending = self._pending, {}
                marks = [(principal, conv, mid) for (_, conv), (principal, mid) in batch.items()]
                try:
                    await self._messages.mark_read_many(marks)
                except Exception as exc:  # noqa: BLE001  a read receipt is not worth failing anything for
                    logger.warning("could not store %d read receipts: %s", len(marks), exc)
                    continue  # the next message in the conversation marks it again
                if len(self._read_through) > MAX_REMEMBERED:
                    self._read_through.clear()
                for key, (_, message_id) in batch.items():
                    if self._read_through.get(key, 0) < message_id:
                        self._read_through[key] = message_id
        finally:
            self._flush_task = None
