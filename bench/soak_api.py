"""The REST calls of the soak: demo users signed in, conversations, history, counters."""

from __future__ import annotations

import asyncio

import httpx

from bench.soak_accounting import ConversationInfo
from bench.soak_consumer import Identity

# Who streams (user, tenant) and which group conversations they chat in (creator first).
IDENTITIES = [("alice", 1), ("bob", 1), ("carol", 1), ("carol", 2), ("dave", 2), ("erin", 2)]
CONVERSATIONS = [
    ("soak: acme all", "alice", 1, ["bob", "carol"]),
    ("soak: alice and carol", "alice", 1, ["carol"]),
    ("soak: globex all", "dave", 2, ["erin", "carol"]),
    ("soak: dave and erin", "dave", 2, ["erin"]),
]


async def sign_in(http: httpx.AsyncClient) -> dict[tuple[str, int], Identity]:
    async def one(username: str, tenant: int) -> Identity:
        response = await http.post(
            "/api/auth/token",
            json={"username": username, "password": f"{username}-pass", "tenant": tenant},
        )
        response.raise_for_status()
        body = response.json()
        return Identity(
            username, body["user"]["id"], body["user"]["tenantId"], body["access_token"]
        )

    # Concurrently: each sign-in is a deliberately slow argon2 check.
    signed_in = await asyncio.gather(*(one(username, tenant) for username, tenant in IDENTITIES))
    return {(i.username, tenant): i for i, (_, tenant) in zip(signed_in, IDENTITIES, strict=True)}


async def create_conversations(
    http: httpx.AsyncClient, identities: dict[tuple[str, int], Identity]
) -> dict[int, ConversationInfo]:
    conversations: dict[int, ConversationInfo] = {}
    for title, creator, tenant, others in CONVERSATIONS:
        owner = identities[(creator, tenant)]
        members = [identities[(name, tenant)] for name in others]
        response = await http.post(
            "/api/conversations",
            json={"participantIds": [m.user_id for m in members], "title": title},
            headers={"Authorization": f"Bearer {owner.token}"},
        )
        response.raise_for_status()
        conversation_id = response.json()["id"]
        conversations[conversation_id] = ConversationInfo(
            conversation_id,
            owner.tenant_id,
            frozenset([owner.user_id, *(m.user_id for m in members)]),
        )
    return conversations


async def history_ids(http: httpx.AsyncClient, conversation_id: int, token: str) -> set[int]:
    """Every message id of a conversation, paging back with `before`."""
    ids: set[int] = set()
    params: dict[str, int] = {"limit": 100}
    while True:
        response = await http.get(
            f"/api/conversations/{conversation_id}/messages",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        )
        response.raise_for_status()
        page = response.json()
        ids.update(item["id"] for item in page["items"])
        if not page["hasMore"] or not page["items"]:
            return ids
        params["before"] = min(item["id"] for item in page["items"])


async def server_counters(
    http: httpx.AsyncClient, identities: dict[tuple[str, int], Identity]
) -> dict[str, int]:
    """Summed over both tenants, each seen by its admin (production mode)."""
    totals: dict[str, int] = {}
    for admin in (identities[("alice", 1)], identities[("dave", 2)]):
        response = await http.get(
            "/api/sse/diagnostics", headers={"Authorization": f"Bearer {admin.token}"}
        )
        response.raise_for_status()
        for key, value in response.json().items():
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
    return totals
