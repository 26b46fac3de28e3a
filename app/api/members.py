"""The caller's tenant members: list them (any member), remove one (tenant admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.api.deps import PrincipalDep, RuntimeDep
from app.api.schemas import MAX_ID, MemberList, MemberOut

router = APIRouter(prefix="/api/members", tags=["members"])


@router.get("", response_model=MemberList)
async def list_members(principal: PrincipalDep, runtime: RuntimeDep) -> MemberList:
    views = await runtime.members.list_for(principal)
    return MemberList(
        items=[
            MemberOut(
                id=v.user_id,
                username=v.username,
                display_name=v.display_name,
                role=v.role,
                joined_at=v.joined_at,
            )
            for v in views
        ]
    )


@router.delete(
    "/{user_id}",
    status_code=204,
    responses={
        403: {"description": "Not a tenant admin"},
        404: {"description": "No such member in your tenant (other tenants' users included)"},
        409: {"description": "Removing yourself (another admin must do it)"},
    },
)
async def remove_member(
    user_id: Annotated[int, Path(ge=1, le=MAX_ID)], principal: PrincipalDep, runtime: RuntimeDep
) -> Response:
    """Their tokens for this tenant stop working and their streams and tabs in it close;
    their messages stay, and their other tenants are untouched."""
    await runtime.members.remove(principal, user_id)
    return Response(status_code=204)
