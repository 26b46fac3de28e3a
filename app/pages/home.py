"""The landing page. The chat UI itself arrives with the UI issue."""

from __future__ import annotations

import reflex as rx


def home() -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.heading("Chat", size="8"),
            rx.text("The realtime API is running. Consumers connect to /api/sse."),
            rx.link("API reference", href="/api/docs", is_external=True),
            spacing="3",
            align="center",
        ),
        min_height="100vh",
    )
