"""GET /realtime-client.js: the JavaScript client kit, from the API server itself.

The README's pages import it from the API's address (`http://localhost:8000/realtime-client.js`),
which is the backend of `reflex run`, `reflex run --env prod --backend-only` and
scripts/serve: none of them serves assets/, so the kit is a route of the API. Under the
single-port `reflex run --env prod` this route answers before the frontend's copy.

A public static file: no token, no tenant data. Cross-origin imports follow the app's
origin policy like every other answer (the CORS middleware around the app adds
`Access-Control-Allow-Origin` for allowed origins and `Vary: Origin`): a module script is
fetched in CORS mode, so a page on an allowed origin can import it and others cannot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response

from app.settings import PROJECT_ROOT

SCRIPT_PATH = PROJECT_ROOT / "assets" / "realtime-client.js"
ROUTE = "/realtime-client.js"
# Browsers refuse to run a module served with another type.
MEDIA_TYPE = "text/javascript; charset=utf-8"
# Its URL carries no version: caches keep it a few minutes, then revalidate by ETag (a 304),
# so a deployment's new kit reaches pages within minutes without a full download each time.
CACHE_CONTROL = "public, max-age=300, must-revalidate"

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class _Script:
    body: bytes
    etag: str
    stamp: tuple[int, int]  # (mtime_ns, size) of the file it was read from


_cached: _Script | None = None


def _script(path: Path = SCRIPT_PATH) -> _Script:
    """The file's bytes, read again only when it changes (a stat per request, no read)."""
    global _cached
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    if _cached is None or _cached.stamp != stamp:
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        _cached = _Script(body=body, etag=etag, stamp=stamp)
    return _cached


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in candidates or "*" in candidates


@router.api_route(ROUTE, methods=["GET", "HEAD"])
async def realtime_client(request: Request) -> Response:
    script = _script()
    headers = {
        "ETag": script.etag,
        "Cache-Control": CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
    }
    if _matches(request.headers.get("if-none-match"), script.etag):
        return Response(status_code=304, headers=headers)
    return Response(script.body, media_type=MEDIA_TYPE, headers=headers)
