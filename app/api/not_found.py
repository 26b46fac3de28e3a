"""Unknown /api paths answer a JSON 404 instead of falling through to the Reflex app, and a
known path asked with a method it does not take answers 405 with `Allow`.

The catch-all below takes every method, so without the 405 check it would hide Starlette's
own: a route that matches the path but not the method is a "partial" match, and the
router goes on to the next route, which is this one. `catch_unknown_paths` is handed the
API's routers, and their routes (public `APIRoute`s) say which methods a path takes.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.routing import Match

from app.api.errors import ApiError

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def catch_unknown_paths(routers: Iterable[APIRouter]) -> APIRouter:
    """The router to include last: it answers what `routers` do not."""
    known = [route for each in routers for route in each.routes if isinstance(route, APIRoute)]
    router = APIRouter(include_in_schema=False)

    @router.api_route("/api/{path:path}", methods=_METHODS)
    async def unknown_api_path(path: str, request: Request) -> None:
        _refuse(path, request, known)

    return router


def _refuse(path: str, request: Request, known: list[APIRoute]) -> None:
    allowed = _methods_of_path(request, known)
    if allowed:
        raise ApiError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.url.path[:100]}; use {', '.join(allowed)}.",
            {"Allow": ", ".join(allowed)},
        )
    raise ApiError(404, "not_found", f"No API endpoint at /api/{path[:100]}.")


def _methods_of_path(request: Request, known: list[APIRoute]) -> list[str]:
    """The methods of the known routes whose path matches the request's."""
    methods: set[str] = set()
    for route in known:
        match, _ = route.matches(request.scope)
        if match is Match.PARTIAL and route.methods:
            methods |= route.methods
    return sorted(methods)
