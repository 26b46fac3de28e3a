"""'X is typing…' under the messages of the open conversation."""

from __future__ import annotations

import reflex as rx

from app.state.chat import ChatState


def typing_indicator() -> rx.Component:
    return rx.box(
        rx.text(
            ChatState.typing_label,
            size="1",
            color_scheme="gray",
            style={"font_style": "italic"},
            custom_attrs={"data-testid": "typing"},
        ),
        min_height="20px",
        padding_x="16px",
    )
