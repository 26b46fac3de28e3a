"""The open conversation: header, history with "load older", live messages, composer."""

from __future__ import annotations

import reflex as rx
from reflex.vars import ObjectVar

from app.components.bidi import joined, user_text
from app.components.composer import composer
from app.components.conversation_settings import settings_button, settings_dialog
from app.components.message_row import delete_dialog, message_row
from app.components.typing_indicator import typing_indicator
from app.state.chat import ChatState, HeldMessage


def _held(message: ObjectVar[HeldMessage]) -> rx.Component:
    """A message the rate limit holds back: it goes out by itself, in order."""
    return rx.cond(
        message.conversation_id == ChatState.active_id,
        rx.flex(
            rx.box(
                user_text(
                    message.content, size="2", white_space="pre-wrap", word_break="break-word"
                ),
                rx.text("Waiting to send…", size="1", color="var(--gray-10)"),
                padding="8px 12px",
                border_radius="12px",
                max_width="min(75%, 640px)",
                border="1px dashed var(--gray-7)",
                opacity="0.7",
                custom_attrs={"data-testid": "held-message"},
            ),
            justify="end",
            width="100%",
        ),
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


def _history() -> rx.Component:
    shown = ChatState.messages_of == ChatState.active_id
    return rx.box(
        rx.vstack(
            rx.cond(
                ChatState.has_older & shown,
                rx.center(
                    # Scrolling to the top loads them too (assets/message_view.js).
                    rx.button(
                        rx.cond(ChatState.loading_older, "Loading…", "Load older messages"),
                        variant="ghost",
                        size="1",
                        loading=ChatState.loading_older,
                        on_click=ChatState.load_older(ChatState.messages[0].id),  # type: ignore[operator, attr-defined]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback; and ChatState.messages[0] as a BooleanVar
                        custom_attrs={"data-testid": "load-older"},
                    ),
                    width="100%",
                ),
            ),
            # For a moment after a click the messages are still the last one's.
            rx.cond(shown, rx.foreach(ChatState.messages, message_row)),
            rx.foreach(ChatState.held, _held),
            rx.cond(
                shown & (ChatState.messages.length() == 0),
                rx.center(
                    rx.text(
                        "No messages yet. Write the first one below.",
                        color_scheme="gray",
                        size="2",
                        custom_attrs={"data-testid": "no-messages"},
                    ),
                    width="100%",
                    padding_top="48px",
                ),
            ),
            spacing="2",
            padding="16px",
            width="100%",
        ),
        id="message-list",
        height="100%",
        overflow_y="auto",
        # The message view (assets/message_view.js) keeps the view still when older
        # messages go above; the browser's own anchoring would move it a second time.
        overflow_anchor="none",
        width="100%",
    )


def _jump_to_newest() -> rx.Component:
    """Shown while the reader is scrolled up; a click is handled by the page's message view
    (assets/message_view.js), which knows where the end is."""
    return rx.cond(
        ChatState.scrolled_up,
        rx.button(
            rx.cond(
                ChatState.unseen_below > 0,
                rx.text(
                    ChatState.unseen_below,
                    rx.cond(ChatState.unseen_below == 1, " new message", " new messages"),
                    as_="span",
                ),
                rx.text("Jump to newest", as_="span"),
            ),
            rx.icon("arrow-down", size=14),
            id="jump-to-newest",
            type="button",
            size="1",
            radius="full",
            variant=rx.cond(ChatState.unseen_below > 0, "solid", "soft"),
            position="absolute",
            bottom="12px",
            left="50%",
            transform="translateX(-50%)",
            box_shadow="var(--shadow-3)",
            custom_attrs={"data-testid": "jump-to-newest"},
        ),
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
                    flex="1",
                    min_width="0",
                ),
                settings_button(),
                settings_dialog(),
                padding="12px 16px",
                border_bottom="1px solid var(--gray-5)",
                width="100%",
                align="center",
            ),
            rx.box(
                _history(),
                _jump_to_newest(),
                position="relative",
                flex="1",
                min_height="0",
                width="100%",
            ),
            typing_indicator(),
            composer(),
            delete_dialog(),
            height="100%",
            width="100%",
            spacing="0",
        ),
    )
