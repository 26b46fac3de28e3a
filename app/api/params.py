"""Request parameters that more than one route reads, parsed once, with one error each."""

from __future__ import annotations

from app.api.errors import ApiError
from app.domain.ids import MAX_ID, parse_id


def invalid_tenant() -> ApiError:
    """The answer to a `tenant` that names no tenant, wherever it is sent: README's
    "400 bad parameters" of /api/sse, and the same for sign-in's `tenant` field."""
    return ApiError(
        400, "invalid_tenant", f"tenant must be a tenant id (an integer from 1 to {MAX_ID})."
    )


def parse_tenant(raw: str | None) -> int | None:
    """`tenant` as sent in a query or a form: absent or empty means "none chosen"."""
    if raw is None or raw == "":
        return None
    tenant = parse_id(raw)
    if tenant is None:
        raise invalid_tenant()
    return tenant
