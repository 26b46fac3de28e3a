"""The Reflex app: API routes mounted first, pages, and the runtime's lifespan. Thin."""

from __future__ import annotations

import reflex as rx
from starlette.types import ASGIApp

from app import routes
from app.api import build_api
from app.components.connection_toast import offline_overlay
from app.pages.chat import ON_LOAD, chat
from app.pages.login import login
from app.runtime import lifespan
from app.security.origins import OriginPolicy, own_frontend_origins
from app.security.proxies import behind_trusted_proxies
from app.settings import get_settings
from app.state import gate, live, live_vars
from app.state.handler_errors import backend_exception_handler, frontend_exception_handler
from app.state.session import SessionState

api = build_api()


def _mount_pages_in_api(reflex_app: ASGIApp) -> ASGIApp:
    """The API first, Reflex's own app (pages, websocket) behind it. Handed over as a
    function, not as the FastAPI app itself: for an app Reflex adds a second CORS middleware
    of its own, inside the one it puts around everything, and every answer with an allowed
    origin came out with `Vary: Origin, Origin`."""
    api.mount("", reflex_app)
    return api


app = rx.App(
    # The API first (the pages behind it), then the whole of it (the Reflex socket included)
    # behind the one decision of who the client is (TRUSTED_PROXIES).
    api_transformer=[
        _mount_pages_in_api,
        lambda asgi: behind_trusted_proxies(asgi, get_settings().trusted_proxies),
    ],
    backend_exception_handler=backend_exception_handler,
    frontend_exception_handler=frontend_exception_handler,
)
# Words for people, not developers, while the page is offline.
app.app_wraps[(5, "Overlay")] = offline_overlay
# Only the handlers of app/state/surface.py, with arguments of their declared types.
gate.install(app)
# Live vars reach the page through its feed only, never in Reflex's own deltas.
live_vars.install(app)
live.install(app)
app.register_lifespan_task(lifespan)
app.add_page(chat, route=routes.CHAT, title="Chat", on_load=ON_LOAD)
app.add_page(
    login, route=routes.LOGIN, title="Sign in · Chat", on_load=SessionState.skip_login_if_signed_in
)

# One origin policy for CORS, the Reflex websocket and the CSRF check of cookie requests:
# the app's own pages plus CORS_ALLOWED_ORIGINS, instead of Reflex's default "*".
_config = rx.config.get_config()
origin_policy = OriginPolicy.build(
    get_settings().cors_allowed_origins,
    own_frontend_origins(_config.deploy_url, _config.frontend_port),
)
api.state.origin_policy = origin_policy
_config.cors_allowed_origins = tuple(origin_policy.cors_list())  # read when the app is served
if app.sio is not None:
    app.sio.eio.cors_allowed_origins = origin_policy.for_socketio
