"""'X is typing…' under the messages of the open conversation.

Built here from the typists' names rather than from one composed label, so each name is its
own bidi isolate: a name with a right-to-left override cannot turn " is typing…" around."""

from __future__ import annotations

import reflex as rx

from app.components.bidi import typists, user_text
from app.state.chat import ChatState


def _label() -> rx.Component:
    names = typists(ChatState.typists, ChatState.active_id)
    return rx.match(
        names.length(),
        (0, rx.fragment()),
        (1, rx.fragment(user_text(names[0], as_="span"), " is typing…")),
        (
            2,
            rx.fragment(
                user_text(names[0], as_="span"),
                " and ",
                user_text(names[1], as_="span"),
                " are typing…",
            ),
        ),
        rx.fragment("Several people are typing…"),
    )


def typing_indicator() -> rx.Component:
    return rx.box(
        rx.text(
            _label(),
            size="1",
            color_scheme="gray",
            style={"font_style": "italic"},
            custom_attrs={"data-testid": "typing"},
        ),
        min_height="20px",
        padding_x="16px",
    )
