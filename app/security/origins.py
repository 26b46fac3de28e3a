"""Which browser origins the app trusts: one policy for CORS, the Reflex socket and CSRF.

Closed by default: the app's own origin (same scheme and host as the request) and the
frontend origins the deployment names, nothing else. An operator opens more with
CORS_ALLOWED_ORIGINS. A request without an `Origin` header comes from a program, not a page
of another site, and is not a cross-site request at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


def origin_of(url: str) -> str:
    """`http://localhost:3000/some/path` -> `http://localhost:3000`."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return url.strip().rstrip("/")
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_frontend_origins(deploy_url: str | None, frontend_port: int | None) -> tuple[str, ...]:
    """Where this deployment's pages live: the deploy URL, and under `reflex run` the dev
    frontend on localhost (it talks to the backend on another port: another origin)."""
    origins = [origin_of(deploy_url)] if deploy_url else []
    port = frontend_port or 3000
    origins += [f"http://localhost:{port}", f"http://127.0.0.1:{port}"]
    return tuple(dict.fromkeys(origins))


def request_origin(scheme: str, host: str, forwarded_proto: str | None = None) -> str:
    """The origin a page served by this request would have."""
    if forwarded_proto:
        scheme = forwarded_proto.split(",")[0].strip() or scheme
    return f"{scheme}://{host}".lower()


@dataclass(frozen=True)
class OriginPolicy:
    allowed: frozenset[str]
    allow_any: bool = False

    @classmethod
    def build(cls, configured: Iterable[str], own_frontends: Iterable[str]) -> OriginPolicy:
        configured = tuple(configured)
        allowed = {origin_of(o) for o in (*configured, *own_frontends) if o and o != "*"}
        return cls(allowed=frozenset(allowed), allow_any="*" in configured)

    def allows(self, origin: str | None, own_origin: str | None = None) -> bool:
        """May a page of `origin` use this app with the user's credentials?"""
        if origin is None:
            return True  # not a browser page: a program, or a same-origin navigation
        origin = origin.strip().lower()
        if self.allow_any:
            return True
        if own_origin is not None and origin == own_origin:
            return True
        return origin in self.allowed

    def cors_list(self) -> list[str]:
        """For Starlette's CORSMiddleware, which answers preflights and adds the headers."""
        return ["*"] if self.allow_any else sorted(self.allowed)

    def for_socketio(self, origin: str | None, environ: Mapping[str, str]) -> bool:
        """engine.io's callable form: the Reflex websocket follows the same policy."""
        own = None
        if "HTTP_HOST" in environ:
            own = request_origin(
                environ.get("wsgi.url_scheme", "http"),
                environ["HTTP_HOST"],
                environ.get("HTTP_X_FORWARDED_PROTO"),
            )
        return self.allows(origin, own)
