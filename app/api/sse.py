"""GET /api/sse (the event stream) and GET /api/sse/diagnostics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.api.deps import PrincipalDep, RuntimeDep, StreamPrincipalDep
from app.api.errors import ApiError
from app.api.params import parse_tenant
from app.api.sse_response import EventStreamResponse
from app.domain.errors import NotAMember
from app.realtime.client import ClientKind
from app.realtime.events import FILTERABLE_TYPES
from app.realtime.manager import TooManyStreams

router = APIRouter(prefix="/api/sse", tags=["stream"])


def parse_event_filter(raw: str | None) -> frozenset[str] | None:
    """`chat:message,presence:update` -> those types; None keeps every type."""
    if raw is None:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        return None
    unknown = sorted(set(names) - FILTERABLE_TYPES)
    if unknown:
        raise ApiError(
            400,
            "unknown_event_type",
            f"Unknown event type(s): {', '.join(unknown)[:200]}. "
            f"Known: {', '.join(sorted(FILTERABLE_TYPES))}.",
        )
    return frozenset(names)


LAST_EVENT_ID_MAX_CHARS = 200


@router.get("", response_class=EventStreamResponse, status_code=200)
async def stream(
    request: Request,
    # Dependencies are solved before the query is checked: a 401 comes before any 400.
    principal: StreamPrincipalDep,
    runtime: RuntimeDep,
    events: Annotated[
        str | None, Query(description="Comma-separated event types to keep (all if absent).")
    ] = None,
    tenant: Annotated[
        str | None, Query(description="The active tenant, among your memberships.")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Query(
            alias="lastEventId",
            max_length=LAST_EVENT_ID_MAX_CHARS,
            description="Resume after this event id (the Last-Event-ID header wins).",
        ),
    ] = None,
) -> EventStreamResponse:
    """Register the client and answer with its stream. The one route of /api/sse under
    every start: scripts/serve only moves the stream's live part past the middleware once
    this has answered (app/api/sse_response.py, StreamHandoff)."""
    types = parse_event_filter(events)
    tenant_id = parse_tenant(tenant)
    if tenant_id is not None:
        in_tenant = principal.in_tenant(tenant_id)
        if in_tenant is None:
            raise NotAMember()
        principal = in_tenant
    # The header wins: browsers send it on automatic reconnects.
    resume_from = request.headers.get("last-event-id") or last_event_id
    try:
        # Registered before the response starts: whatever is published after the
        # consumer's `onopen` reaches it.
        connection = await runtime.manager.connect(
            user_id=principal.user_id,
            tenant_id=principal.tenant_id,
            kind=ClientKind.STREAM,
            types=types,
            last_event_id=resume_from,
            session_ref=principal.token_id,
        )
    except TooManyStreams:
        raise ApiError(
            429,
            "too_many_streams",
            f"At most {runtime.settings.sse_max_streams_per_user} open streams per user.",
            {"Retry-After": "5"},
        ) from None
    return EventStreamResponse(
        connection,
        runtime.manager,
        runtime.writer,
        runtime.settings.sse_retry_ms,
        runtime.settings.sse_write_timeout_seconds,
    )


@router.get("/diagnostics")
async def diagnostics(principal: PrincipalDep, runtime: RuntimeDep) -> dict[str, Any]:
    """The whole process in dev mode; otherwise a tenant admin sees their tenant only."""
    if runtime.settings.dev_mode:
        return {
            "scope": "process",
            **runtime.manager.diagnostics(),
            "stalledWrites": runtime.writer.stalled_writes(),
            "broker": runtime.broker.stats(),
        }
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "Diagnostics are for tenant admins.")
    return {
        "scope": "tenant",
        "tenantId": principal.tenant_id,
        **runtime.manager.diagnostics(principal.tenant_id),
        "stalledWrites": runtime.writer.stalled_writes(principal.tenant_id),
    }
