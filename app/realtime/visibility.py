"""The one place that decides whether a client may see an event.

Routing by channel narrows the candidates; this check is what makes tenant isolation
absolute: an event that belongs to a tenant never reaches a client whose active tenant is
another one, even when both are the same person (a user channel is shared by all of that
user's memberships). Live delivery and replay both go through it.
"""

from __future__ import annotations

from typing import Protocol

from app.realtime.events import CONTROL_TYPES, Event


class Audience(Protocol):
    tenant_id: int
    types: frozenset[str] | None


def may_see(client: Audience, event: Event) -> bool:
    if event.tenant_id is not None and event.tenant_id != client.tenant_id:
        return False
    if client.types is None or event.type in CONTROL_TYPES:
        return True
    return event.type in client.types
