"""Unknown paths under /api answer a JSON 404 instead of falling through to the Reflex app."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.errors import ApiError

router = APIRouter(include_in_schema=False)


@router.api_route(
    "/api/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
)
async def unknown_api_path(path: str) -> None:
    raise ApiError(404, "not_found", f"No API endpoint at /api/{path[:100]}.")
