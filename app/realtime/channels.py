"""Channel names. The server decides a client's channels; consumers never name them."""

from __future__ import annotations

from functools import lru_cache

GLOBAL = "global"


def user_channel(user_id: int) -> str:
    return f"user:{user_id}"


def tenant_channel(tenant_id: int) -> str:
    return f"tenant:{tenant_id}"


@lru_cache(maxsize=65536)  # one shared set for all the streams of a user in a tenant
def channels_for(user_id: int, tenant_id: int) -> frozenset[str]:
    """Every channel a client of this user, in this active tenant, listens to."""
    return frozenset({user_channel(user_id), tenant_channel(tenant_id), GLOBAL})
