"""GET /metrics: the process's figures in Prometheus text format, for operators.

Process-wide aggregates only (app/metrics.py). Readable with `Authorization: Bearer
<METRICS_TOKEN>` when that setting is set, otherwise from loopback only (a scraper on the
same host or a sidecar), so a public deployment does not publish its traffic figures.
"""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request, Response

from app.api.deps import RuntimeDep, bearer_token, client_address
from app.api.errors import ApiError
from app.metrics import CONTENT_TYPE
from app.security.tokens import digests_match

router = APIRouter(tags=["operations"])


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    secret = runtime.settings.metrics_token
    if secret:
        given = bearer_token(request)
        if given is None or not digests_match(given, secret):
            raise ApiError(
                401,
                "not_authenticated",
                "Send 'Authorization: Bearer <METRICS_TOKEN>'.",
                {"WWW-Authenticate": "Bearer"},
            )
    elif not _is_loopback(client_address(request)):
        raise ApiError(403, "forbidden", "Set METRICS_TOKEN to read /metrics from elsewhere.")
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)
