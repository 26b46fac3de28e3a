"""Sign in."""

from __future__ import annotations

import reflex as rx

from app.settings import get_settings
from app.state.session import SessionState


def login() -> rx.Component:
    return rx.center(
        rx.card(
            rx.form(
                rx.vstack(
                    rx.hstack(
                        rx.icon("message-circle", size=28, color="var(--accent-9)"),
                        rx.heading("Sign in to Chat", size="6"),
                        align="center",
                    ),
                    rx.text(
                        "Demo accounts: alice, bob, carol, dave, erin (password: <name>-pass).",
                        size="2",
                        color_scheme="gray",
                    ),
                    rx.input(
                        name="username",
                        placeholder="Username",
                        auto_complete="username",
                        auto_focus=True,
                        max_length=64,
                        size="3",
                        width="100%",
                    ),
                    rx.input(
                        name="password",
                        type="password",
                        placeholder="Password",
                        auto_complete="current-password",
                        max_length=get_settings().max_password_chars,
                        size="3",
                        width="100%",
                    ),
                    rx.cond(
                        SessionState.login_error != "",
                        rx.callout(
                            SessionState.login_error,
                            icon="triangle-alert",
                            color_scheme="red",
                            size="1",
                            width="100%",
                            custom_attrs={"data-testid": "login-error"},
                        ),
                    ),
                    rx.button(
                        "Sign in",
                        type="submit",
                        size="3",
                        width="100%",
                        loading=SessionState.signing_in,
                    ),
                    spacing="4",
                    width="100%",
                ),
                on_submit=SessionState.sign_in,
            ),
            size="4",
            width="min(400px, 92vw)",
        ),
        rx.box(rx.color_mode.button(variant="ghost"), position="fixed", top="12px", right="12px"),
        # Present once the page is connected to the backend and can act on the form.
        rx.cond(
            SessionState.is_hydrated,
            rx.box(display="none", custom_attrs={"data-testid": "ready"}),
        ),
        min_height="100vh",
        background="var(--gray-2)",
    )
