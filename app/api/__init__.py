"""FastAPI routers: parse, authorize, call a use case. No business rules here."""

from __future__ import annotations

from fastapi import FastAPI

from app.api import (
    auth,
    client_script,
    conversations,
    members,
    metrics,
    not_found,
    notifications,
    presence,
    search,
    sse,
)
from app.api.errors import BodySizeLimit, install_error_handlers
from app.api.http_metrics import HttpMetrics
from app.settings import get_settings


def build_api() -> FastAPI:
    api = FastAPI(
        title="Chat API",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    install_error_handlers(api)
    api.add_middleware(BodySizeLimit, max_bytes=get_settings().max_body_bytes, prefix="/api/")
    # Added last, so outermost of ours: a 413 of the body limit is counted too.
    api.add_middleware(HttpMetrics)
    routers = [
        auth.router,
        sse.router,
        notifications.router,
        conversations.router,
        presence.router,
        members.router,
        search.router,
        metrics.router,
        client_script.router,  # the JavaScript kit, where the README imports it
    ]
    for router in routers:
        api.include_router(router)
    # Last: unknown /api paths get a JSON 404, known ones asked with another method a 405.
    api.include_router(not_found.catch_unknown_paths(routers))
    return api
