"""Search over REST: the caller's messages in their active tenant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import PrincipalDep, RuntimeDep
from app.domain.search import LIMIT_MAX, QUERY_MAX_CHARS

router = APIRouter(prefix="/api/search", tags=["search"])


@router.get("")
async def search_messages(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    q: Annotated[str, Query(max_length=QUERY_MAX_CHARS)],
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX)] = 20,
) -> dict[str, Any]:
    """Best match first (then newest). Every word must match, the last one as a prefix;
    each hit's `snippet` is a list of `{text, hit}` segments, never HTML."""
    hits = await runtime.search.search(principal, q, limit)
    return {"results": [hit.to_data() for hit in hits]}
