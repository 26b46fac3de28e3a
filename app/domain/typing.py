"""Who is typing where: throttled announcements, and a stop the server sends by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from app.domain.errors import RateLimited
from app.domain.principal import Principal
from app.realtime.events import ChatTypingPayload
from app.realtime.service import RealtimeService
from app.realtime.tasks import cancel_and_wait
from app.security.rate_limit import RateLimiter
from app.settings import Settings

TypingKey = tuple[int, int, int]  # tenant, conversation, user
RecipientsOf = Callable[[Principal, int], Awaitable[list[int]]]


@dataclass(slots=True)
class _Typist:
    user_name: str
    recipients: list[int]
    last_announced: float
    expiry: asyncio.TimerHandle | None = field(default=None)


class TypingTracker:
    """A typist is announced once, then at most every `typing_throttle_seconds` while they
    keep saying so; silence for `typing_expiry_seconds` (or a sent message) ends it with an
    explicit stop, so no one types forever."""

    def __init__(
        self,
        service: RealtimeService,
        settings: Settings,
        limiter: RateLimiter,
        recipients_of: RecipientsOf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._recipients_of = recipients_of
        self._throttle = settings.typing_throttle_seconds
        self._expiry = settings.typing_expiry_seconds
        self._limiter = limiter
        self._clock = clock
        self._typists: dict[TypingKey, _Typist] = {}
        self._stopping: set[asyncio.Task[bool]] = set()

    def is_typing(self, tenant_id: int, conversation_id: int, user_id: int) -> bool:
        return (tenant_id, conversation_id, user_id) in self._typists

    async def set_typing(
        self,
        principal: Principal,
        conversation_id: int,
        is_typing: bool,
    ) -> bool:
        """Record what the typist said; True when an event went out."""
        retry_after = await self._limiter.take(f"typing:{principal.user_id}")
        if retry_after is not None:
            raise RateLimited("Too many typing updates.", retry_after)
        # Also the access check: NotFound unless the caller takes part in the conversation.
        recipients = await self._recipients_of(principal, conversation_id)
        key = (principal.tenant_id, conversation_id, principal.user_id)
        if not is_typing:
            return await self.stop(key)
        now = self._clock()
        typist = self._typists.get(key)
        if typist is None:
            typist = self._typists[key] = _Typist(
                user_name=principal.display_name, recipients=recipients, last_announced=now
            )
            announce = True
        else:
            typist.recipients = recipients
            announce = now - typist.last_announced >= self._throttle
            if announce:
                typist.last_announced = now
        self._schedule_expiry(key, typist)
        if announce:
            await self._announce(key, typist, is_typing=True)
        return announce

    async def stop(self, key: TypingKey) -> bool:
        typist = self._typists.pop(key, None)
        if typist is None:
            return False
        if typist.expiry is not None:
            typist.expiry.cancel()
        await self._announce(key, typist, is_typing=False)
        return True

    async def forget(self, tenant_id: int, conversation_id: int, user_ids: list[int]) -> None:
        """People who left a conversation: their typing there ends (the others hear the
        stop now, not at the expiry), and nobody's typing there reaches them any more."""
        gone = set(user_ids)
        for key, typist in list(self._typists.items()):
            if key[:2] != (tenant_id, conversation_id):
                continue
            typist.recipients = [uid for uid in typist.recipients if uid not in gone]
            if key[2] in gone:
                await self.stop(key)

    async def close(self) -> None:
        for typist in self._typists.values():
            if typist.expiry is not None:
                typist.expiry.cancel()
        self._typists.clear()
        await cancel_and_wait(list(self._stopping))

    def _schedule_expiry(self, key: TypingKey, typist: _Typist) -> None:
        if typist.expiry is not None:
            typist.expiry.cancel()
        typist.expiry = asyncio.get_running_loop().call_later(self._expiry, self._expire, key)

    def _expire(self, key: TypingKey) -> None:
        task = asyncio.get_running_loop().create_task(self.stop(key))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _announce(self, key: TypingKey, typist: _Typist, *, is_typing: bool) -> None:
        tenant_id, conversation_id, user_id = key
        await self._service.emit_typing(
            tenant_id=tenant_id,
            recipient_ids=typist.recipients,
            payload=ChatTypingPayload(
                conversation_id=conversation_id,
                user_id=user_id,
                user_name=typist.user_name,
                is_typing=is_typing,
            ),
        )
