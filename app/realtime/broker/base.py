"""The broker interface, in the spirit of encode/broadcaster's backends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from app.realtime.events import Event
from app.realtime.ids import EventId

EventListener = Callable[[Event], None]
# (tenant_id, conversation_id, after_id, before_id) -> the conversation's chat:message
# events for the messages stored with after_id < id < before_id, oldest first.
GapFiller = Callable[[int, int, int, int], Awaitable[list[Event]]]


class StreamSlots(Protocol):
    async def acquire(self, user_id: int, client_id: str, limit: int) -> bool: ...
    async def release(self, user_id: int, client_id: str) -> None: ...
    async def renew(self, held: list[tuple[int, str]]) -> None: ...


class BrokerUnavailable(Exception):
    """The broker cannot take events now; callers refuse new work (503) instead."""


class Broker(ABC):
    """Carries published events to the connection manager of every process.

    A broker owns event ids (it alone knows the order across processes) and the replay
    history, so a consumer can resume on any process.
    """

    async def connect(self) -> None:
        """Open connections; called once before the first publish."""

    async def disconnect(self) -> None:
        """Release connections; called once at shutdown."""

    @abstractmethod
    def attach(self, listener: EventListener) -> None:
        """Call `listener` for every event published by any process, in id order."""

    @abstractmethod
    def detach(self, listener: EventListener) -> None:
        """Stop calling `listener`."""

    @abstractmethod
    async def publish(self, event: Event) -> Event:
        """Give `event` its id, keep it for replay, deliver it to every listener."""

    def fill_gaps_with(self, filler: GapFiller) -> None:
        """Where to read a conversation's messages that another process has not published
        yet, when this one is about to publish a later one (see RedisBroker). A broker of
        one process needs none: the use case publishes a conversation's messages in order."""

    def stream_slots(self) -> StreamSlots | None:
        """Where per-user stream limits are counted across processes; None: per process."""
        return None

    async def follow(self, tenant_id: int) -> None:
        """A client of this tenant is about to register in this process."""

    @property
    def accepting(self) -> bool:
        """False while publishing would fail: use cases check it before storing anything."""
        return True

    def stats(self) -> dict[str, object]:
        return {}

    @abstractmethod
    async def history(
        self, channels: Iterable[str], after: EventId, tenant_id: int | None = None
    ) -> list[Event] | None:
        """Events on `channels` newer than `after`, oldest first, each once.

        `tenant_id` is the consumer's tenant: a broker may keep one history per tenant.

        None when `after` cannot be resumed from without a gap: unknown, from another
        history (a restarted server), in the future, or older than what was kept.
        """
