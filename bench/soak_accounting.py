"""Which chat messages each consumer had to get, and what it got: lost, duplicated, stray.

A consumer must get, exactly once over all its reconnects, every accepted message of a
conversation its user is in (in the tenant of its stream) whose POST *started* after the
consumer's first stream answered: the server registers a stream before its headers go out,
and publishes a message before the POST returns. A message whose POST had *ended* before
the consumer's first request left cannot reach it (a first connect sends no Last-Event-ID):
getting one is a stray. Messages in between race the first connect and may go either way.
The run ends with every consumer connected and caught up, so there is no end boundary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    id: int
    tenant_id: int
    participant_ids: frozenset[int]


@dataclass(slots=True)
class SentMessage:
    conversation_id: int
    sender: str
    started_at: float
    ended_at: float
    status: int = 0  # 0: no answer (timeout, connection error)
    message_id: int | None = None

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300 and self.message_id is not None


class ConsumerLike(Protocol):
    @property
    def user_id(self) -> int: ...
    @property
    def tenant_id(self) -> int: ...
    @property
    def first_request_at(self) -> float | None: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def message_ids(self) -> Counter[int]: ...


@dataclass
class Accounting:
    expected: int = 0  # (consumer, message) pairs that had to arrive
    received: int = 0  # chat:message events received, duplicates included
    lost: int = 0
    duplicates: int = 0  # chat:message deliveries beyond the first, per consumer
    strays: int = 0  # messages a consumer could not have been owed
    optional_received: int = 0  # raced the first connect and arrived (fine either way)
    consumers_with_loss: int = 0
    lost_examples: list[str] = field(default_factory=list)


def _id_of(accepted: SentMessage) -> int:
    """The id of an accepted message (`SentMessage.accepted` holds only with an id)."""
    return cast(int, accepted.message_id)


def account(
    consumers: Sequence[ConsumerLike],
    messages: list[SentMessage],
    conversations: dict[int, ConversationInfo],
) -> Accounting:
    result = Accounting()
    by_conversation: dict[int, list[SentMessage]] = {c: [] for c in conversations}
    conversation_of: dict[int, int] = {}
    for message in messages:
        if message.accepted:
            by_conversation[message.conversation_id].append(message)
            conversation_of[_id_of(message)] = message.conversation_id
    for consumer in consumers:
        got = consumer.message_ids
        result.received += sum(got.values())
        result.duplicates += sum(count - 1 for count in got.values() if count > 1)
        mine = {
            c.id
            for c in conversations.values()
            if c.tenant_id == consumer.tenant_id and consumer.user_id in c.participant_ids
        }
        owed: set[int] = set()
        too_early: set[int] = set()
        for conversation_id in mine:
            for message in by_conversation[conversation_id]:
                if consumer.started_at is not None and message.started_at >= consumer.started_at:
                    owed.add(_id_of(message))
                elif (
                    consumer.first_request_at is None
                    or message.ended_at < consumer.first_request_at
                ):
                    too_early.add(_id_of(message))
        foreign = {m for m in got if m in conversation_of and conversation_of[m] not in mine}
        missing = owed - got.keys()
        result.expected += len(owed)
        result.lost += len(missing)
        result.consumers_with_loss += bool(missing)
        result.strays += len(too_early & got.keys()) + len(foreign)
        result.optional_received += len(got.keys() - owed - too_early - foreign)
        if missing and len(result.lost_examples) < 10:
            result.lost_examples.append(
                f"consumer user {consumer.user_id}@{consumer.tenant_id}: "
                f"{len(missing)} missing, e.g. message ids {sorted(missing)[:5]}"
            )
    return result
