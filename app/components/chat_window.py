"""The open conversation: header, history with "load older", live messages, composer."""

from __future__ import annotations

import reflex as rx

from app.components.bidi import joined, user_text
from app.components.composer import composer
from app.components.typing_indicator import typing_indicator
from app.state.chat import ChatState
from app.state.items import MessageItem


def _message(message: rx.Var[MessageItem]) -> rx.Component:
    bubble = rx.box(
        rx.cond(
            ~message.mine,
            user_text(message.sender_name, size="1", weight="bold", color_scheme="indigo"),
        ),
        # Text, never markup: Reflex escapes it, and pre-wrap keeps the sender's line breaks.
        user_text(
            message.content,
            size="2",
            white_space="pre-wrap",
            word_break="break-word",
            custom_attrs={"data-testid": "message-text"},
        ),
        rx.moment(message.created_at, format="HH:mm", font_size="12px", color="var(--gray-10)"),
        padding="8px 12px",
        border_radius="12px",
        max_width="min(75%, 640px)",
        background=rx.cond(message.mine, "var(--accent-4)", "var(--gray-3)"),
        custom_attrs={"data-testid": "message", "data-id": message.id},
    )
    return rx.flex(
        bubble,
        justify=rx.cond(message.mine, "end", "start"),
        width="100%",
    )


def _empty() -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.icon("messages-square", size=40, color="var(--gray-8)"),
            rx.text("Pick a conversation, or start a new one.", color_scheme="gray"),
            align="center",
        ),
        height="100%",
    )


def chat_window() -> rx.Component:
    return rx.cond(
        ChatState.active_id == 0,
        _empty(),
        rx.vstack(
            rx.hstack(
                rx.icon_button(
                    rx.icon("arrow-left", size=16),
                    variant="ghost",
                    on_click=ChatState.close_conversation,
                    display=["inline-flex", "inline-flex", "none"],
                    title="Back to conversations",
                ),
                rx.vstack(
                    rx.heading(
                        joined(ChatState.active_name_parts),
                        size="4",
                        custom_attrs={"data-testid": "chat-title"},
                    ),
                    rx.text(
                        joined(ChatState.active_members),
                        size="1",
                        color_scheme="gray",
                        custom_attrs={"data-testid": "chat-members"},
                    ),
                    spacing="0",
                ),
                padding="12px 16px",
                border_bottom="1px solid var(--gray-5)",
                width="100%",
                align="center",
            ),
            rx.box(
                rx.vstack(
                    rx.cond(
                        ChatState.has_older & (ChatState.messages_of == ChatState.active_id),
                        rx.center(
                            rx.button(
                                "Load older messages",
                                variant="ghost",
                                size="1",
                                on_click=ChatState.load_older(ChatState.messages[0].id),
                                custom_attrs={"data-testid": "load-older"},
                            ),
                            width="100%",
                        ),
                    ),
                    # For a moment after a click the messages are still the last one's.
                    rx.cond(
                        ChatState.messages_of == ChatState.active_id,
                        rx.foreach(ChatState.messages, _message),
                    ),
                    spacing="2",
                    padding="16px",
                    width="100%",
                ),
                id="message-list",
                flex="1",
                overflow_y="auto",
                width="100%",
            ),
            typing_indicator(),
            composer(),
            height="100%",
            width="100%",
            spacing="0",
        ),
    )
