"""Alice, bob and carol signed in to a fresh in-process runtime, each with one manager
client opened before any snapshot: the world of the verify_action tests
(tests/test_chat_verify_action.py for the event contract, tests/test_live_model.py for the
page's store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from app.domain.principal import Principal
from app.realtime.client import Client, ClientKind
from app.runtime import Runtime
from app.settings import Settings

USERS = ("alice", "bob", "carol")
ConversationName = Literal["direct", "group"]


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
