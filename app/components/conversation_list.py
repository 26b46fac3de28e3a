"""The left pane: conversations with their last message and unread badge."""

from __future__ import annotations

import reflex as rx
from reflex.vars import ObjectVar

from app.components.bidi import initial, joined, user_text
from app.components.new_conversation import new_conversation_dialog
from app.components.search_box import search_box
from app.state.chat import ChatState
from app.state.items import ConversationItem

# One line, cut with an ellipsis: a long word (a URL) must not push the time and the unread
# badge out of the pane.
_ONE_LINE = {
    "overflow": "hidden",
    "white_space": "nowrap",
    "text_overflow": "ellipsis",
    "min_width": "0",
    "flex": "1",
}


def _preview(item: ObjectVar[ConversationItem]) -> rx.Component:
    """ "Sender: message", each of the two isolated; "No messages yet" for a new one."""
    return rx.cond(
        item.preview_sender != "",
        rx.fragment(
            user_text(item.preview_sender, as_="span"),
            ": ",
            user_text(item.preview_text, as_="span", custom_attrs={"data-testid": "preview-text"}),
        ),
        rx.text("No messages yet", as_="span", style={"font-style": "italic"}),
    )


def _row(item: ObjectVar[ConversationItem]) -> rx.Component:
    active = ChatState.active_id == item.id
    return rx.box(
        rx.hstack(
            rx.avatar(fallback=initial(item.name), size="3", radius="full", color_scheme="indigo"),
            rx.vstack(
                rx.hstack(
                    rx.text(joined(item.name_parts), weight="medium", trim="both", **_ONE_LINE),
                    # The time of the last message; a conversation without one shows none.
                    rx.cond(
                        item.preview_sender != "",
                        rx.moment(
                            item.last_message_at,
                            format="HH:mm",
                            font_size="12px",
                            color="var(--gray-10)",
                            flex_shrink="0",
                            custom_attrs={"data-testid": "conversation-time"},
                        ),
                    ),
                    width="100%",
                    align="center",
                ),
                rx.hstack(
                    rx.text(_preview(item), size="2", color_scheme="gray", **_ONE_LINE),
                    rx.cond(
                        item.unread_count > 0,  # type: ignore[operator]  # mypy types a dataclass field of an ObjectVar as a plain Var; Reflex makes it a NumberVar
                        rx.badge(
                            item.unread_count,
                            color_scheme="indigo",
                            variant="solid",
                            radius="full",
                            flex_shrink="0",
                            custom_attrs={"data-testid": "unread-badge"},
                        ),
                    ),
                    width="100%",
                    align="center",
                ),
                spacing="1",
                width="100%",
                min_width="0",
            ),
            width="100%",
            min_width="0",
            align="center",
        ),
        padding="10px 12px",
        border_radius="8px",
        cursor="pointer",
        background=rx.cond(active, "var(--accent-4)", "transparent"),
        _hover={"background": rx.cond(active, "var(--accent-4)", "var(--gray-3)")},
        width="100%",
        on_click=ChatState.open_conversation(item.id),  # type: ignore[operator]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
        custom_attrs={"data-testid": "conversation", "data-name": item.name},
    )


def conversation_list() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.heading("Chats", size="4"),
            rx.cond(
                ChatState.total_unread > 0,
                rx.badge(
                    ChatState.total_unread,
                    radius="full",
                    custom_attrs={"data-testid": "total-unread"},
                ),
            ),
            rx.spacer(),
            new_conversation_dialog(),
            width="100%",
            align="center",
            padding="12px 12px 4px",
        ),
        search_box(),
        # A plain scrolling box: Radix's ScrollArea lays its content out as a table that
        # grows to its widest row, so one long preview widened every row past the pane.
        rx.box(
            rx.vstack(
                rx.foreach(ChatState.conversations, _row),
                rx.cond(
                    ChatState.conversations.length() == 0,
                    rx.text("No conversations yet.", color_scheme="gray", size="2", padding="12px"),
                ),
                spacing="1",
                padding="4px 8px",
                width="100%",
            ),
            overflow_y="auto",
            overflow_x="hidden",
            flex="1",
            min_height="0",
            width="100%",
        ),
        height="100%",
        width="100%",
        spacing="0",
    )
