"""Alice, bob and carol signed in to a fresh in-process runtime, each with one manager
client opened before any snapshot: the world of the verify_action tests of the page's store
(tests/test_live_model.py), and the actions they draw on to edit and delete messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

from app.domain.errors import Conflict, DomainError, Forbidden, NotFound
from app.domain.principal import Principal
from app.realtime.client import Client, ClientKind
from app.realtime.events import ChatMessageBody
from app.runtime import Runtime
from app.settings import Settings

USERS = ("alice", "bob", "carol")
ConversationName = Literal["direct", "group"]
HISTORY_LIMIT = 100_000  # "everything": examples add a few hundred messages at most
MISSING_MESSAGE_ID = 987_654_321


@dataclass(slots=True)
class World:
    runtime: Runtime
    principals: dict[str, Principal]
    clients: dict[str, Client]
    conversation_ids: dict[ConversationName, int]
    participants: dict[ConversationName, frozenset[str]]


@asynccontextmanager
async def chat_world(tmp_path: Path, kind: ClientKind) -> AsyncIterator[World]:
    chat_settings = replace(
        Settings(),
        database_url=f"sqlite:///{tmp_path / 'chat.db'}",
        sse_heartbeat_seconds=0,
        typing_expiry_seconds=3600.0,  # no expiry timer fires inside an example
        rate_limit_enabled=False,  # hundreds of sends in a few seconds
    )
    runtime = Runtime(chat_settings)
    await runtime.start()
    try:
        principals = {
            name: (await runtime.accounts.sign_in(name, f"{name}-pass", "127.0.0.1")).principal
            for name in USERS
        }
        clients = {
            name: (
                await runtime.manager.connect(
                    user_id=p.user_id, tenant_id=p.tenant_id, kind=kind, types=None
                )
            ).client
            for name, p in principals.items()
        }
        views, _ = await runtime.conversations.list_for(principals["alice"])
        direct = next(v for v in views if v.kind == "direct")
        group = next(v for v in views if v.kind == "group")
        by_id = {p.user_id: name for name, p in principals.items()}
        yield World(
            runtime=runtime,
            principals=principals,
            clients=clients,
            conversation_ids={"direct": direct.id, "group": group.id},
            participants={
                "direct": frozenset(by_id[p.id] for p in direct.participants),
                "group": frozenset(by_id[p.id] for p in group.participants),
            },
        )
    finally:
        await runtime.stop()


# -- editing and deleting, for both verify_action tests -----------------------------------


@dataclass(frozen=True, slots=True)
class Edit:
    """`user` edits the message at `pick` (mod their number, oldest first) of the conversation."""

    user: str
    conversation: ConversationName
    pick: int
    content: str


@dataclass(frozen=True, slots=True)
class Delete:
    user: str
    conversation: ConversationName
    pick: int


MessageChange = Edit | Delete


class Acting(Protocol):
    @property
    def user(self) -> str: ...

    @property
    def conversation(self) -> ConversationName: ...


async def picked_message(world: World, change: MessageChange) -> ChatMessageBody | None:
    """The message a change names; None in a conversation with no message yet."""
    # Messages as a participant sees them (alice takes part in both).
    page = await world.runtime.messages.history(
        world.principals["alice"],
        world.conversation_ids[change.conversation],
        before=None,
        limit=HISTORY_LIMIT,
    )
    oldest_first = page.items[::-1]
    return oldest_first[change.pick % len(oldest_first)] if oldest_first else None


def expected_refusal(
    world: World, action: Acting, target: ChatMessageBody | None = None
) -> type[DomainError] | None:
    """What the use case must refuse `action` with; None when it must go through."""
    if action.user not in world.participants[action.conversation]:
        return NotFound
    if not isinstance(action, MessageChange):
        return None
    if target is None:
        return NotFound
    if target.sender_id != world.principals[action.user].user_id:
        return Forbidden
    if isinstance(action, Edit) and target.deleted:
        return Conflict
    return None


async def perform_change(
    world: World, change: MessageChange, target: ChatMessageBody | None
) -> None:
    principal = world.principals[change.user]
    conversation_id = world.conversation_ids[change.conversation]
    message_id = MISSING_MESSAGE_ID if target is None else target.id
    messages = world.runtime.messages
    if isinstance(change, Edit):
        edited = await messages.edit(principal, conversation_id, message_id, change.content)
        assert edited.content == change.content.strip()
    else:
        await messages.delete(principal, conversation_id, message_id)
