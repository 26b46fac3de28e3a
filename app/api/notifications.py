"""Notifications REST: list, create (tenant admin), mark read, mark all read."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from app.api.deps import PrincipalDep, RuntimeDep
from app.api.schemas import MAX_ID, NotificationCreate
from app.domain.notifications import NotificationDraft

router = APIRouter(prefix="/api/notifications", tags=["notifications"])


@router.get("")
async def list_notifications(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    unread: bool = False,
) -> dict[str, Any]:
    """Newest first; pass the last item's id as `before` for the next page."""
    page = await runtime.notifications.list_for(
        principal, limit=limit, before=before, unread_only=unread
    )
    return {
        "items": [{**item.to_data(), "read": item.id in page.read_ids} for item in page.items],
        "unreadCount": page.unread_count,
    }


@router.post("", status_code=201)
async def create_notification(
    body: NotificationCreate, principal: PrincipalDep, runtime: RuntimeDep
) -> dict[str, Any]:
    created = await runtime.notifications.notify(
        principal,
        NotificationDraft(type=body.type, title=body.title, body=body.body, link=body.link),
        user_id=body.user_id,
        whole_tenant=body.tenant,
    )
    return {"created": len(created), "ids": [item.id for item in created]}


@router.post("/read-all")
async def mark_all_read(principal: PrincipalDep, runtime: RuntimeDep) -> dict[str, Any]:
    return (await runtime.notifications.mark_all_read(principal)).to_data()


@router.post("/{notification_id}/read")
async def mark_read(
    notification_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    principal: PrincipalDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    return (await runtime.notifications.mark_read(principal, notification_id)).to_data()
