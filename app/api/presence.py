"""Presence over REST: the tenant's people, and setting yourself away or back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from app.api.deps import ActivePrincipalDep, PrincipalDep, RuntimeDep
from app.api.schemas import PresenceChoice
from app.domain.presence import Status

router = APIRouter(prefix="/api/presence", tags=["presence"])


@router.get("")
async def list_presence(principal: PrincipalDep, runtime: RuntimeDep) -> dict[str, Any]:
    items = await runtime.presence.snapshot(principal.tenant_id)
    return {"items": [item.to_data() for item in items]}


@router.put("")
async def choose_status(
    body: PresenceChoice, principal: PrincipalDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """`away` until you say `online` again (activity alone does not bring you back)."""
    status = runtime.presence.choose(principal, Status(body.status))
    return {"userId": principal.user_id, "status": status.value}


@router.post("/activity", status_code=204)
async def report_activity(principal: ActivePrincipalDep) -> Response:
    """A client's "the person is here" signal (typing, scrolling, focusing the window)."""
    return Response(status_code=204)
