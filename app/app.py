"""The Reflex app: API routes mounted first, pages, and the runtime's lifespan. Thin."""

from __future__ import annotations

import reflex as rx

from app.api import build_api
from app.pages.home import home
from app.runtime import lifespan

app = rx.App(api_transformer=build_api())
app.register_lifespan_task(lifespan)
app.add_page(home, route="/", title="Chat")
