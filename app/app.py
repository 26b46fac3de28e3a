"""The Reflex app: API routes mounted first, pages, and the runtime's lifespan. Thin."""

from __future__ import annotations

import reflex as rx

from app import routes
from app.api import build_api
from app.pages.chat import ON_LOAD, chat
from app.pages.login import login
from app.runtime import lifespan
from app.state.session import SessionState

app = rx.App(api_transformer=build_api())
app.register_lifespan_task(lifespan)
app.add_page(chat, route=routes.CHAT, title="Chat", on_load=ON_LOAD)
app.add_page(
    login, route=routes.LOGIN, title="Sign in · Chat", on_load=SessionState.skip_login_if_signed_in
)
