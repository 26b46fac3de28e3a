"""The message box: Enter sends, Shift+Enter makes a new line, empty messages are refused."""

from __future__ import annotations

import reflex as rx
from reflex.vars import ObjectVar

from app.components.bidi import user_text
from app.settings import get_settings
from app.state.chat import ChatState
from app.state.items import MentionOption

# The counter shows from this share of the limit on.
_COUNTER_FROM = 0.9


def _counter(limit: int) -> rx.Component:
    """Near the limit, how many characters are left; past it, how many are too many (the
    box does not cut a paste: the writer decides what goes)."""
    over = ChatState.composer_length - limit
    return rx.cond(
        ChatState.composer_length >= int(limit * _COUNTER_FROM),
        rx.text(
            rx.cond(
                over > 0,
                rx.text(
                    over, " characters too many: a message is at most ", f"{limit}.", as_="span"
                ),
                rx.text(ChatState.composer_length, f" / {limit}", as_="span"),
            ),
            size="1",
            color_scheme=rx.cond(over > 0, "red", "gray"),
            custom_attrs={"data-testid": "composer-counter"},
        ),
    )


def _mention_option(option: ObjectVar[MentionOption], index: rx.Var[int]) -> rx.Component:
    chosen = index == ChatState.mention_index
    return rx.hstack(
        user_text(option.name, as_="span", size="2", weight="medium"),
        user_text("@" + option.username, as_="span", size="1", color_scheme="gray"),  # type: ignore[operator]  # mypy types a dataclass field of an ObjectVar as a plain Var; Reflex makes it a StringVar
        padding="4px 8px",
        border_radius="6px",
        background=rx.cond(chosen, "var(--accent-a4)", "transparent"),
        cursor="pointer",
        align="baseline",
        width="100%",
        role="option",
        custom_attrs={
            "data-testid": "mention-option",
            "data-mention-option": option.username,
            "aria-selected": rx.cond(chosen, "true", "false"),
        },
    )


def _mention_list() -> rx.Component:
    """The members "@" offers, above the composer (assets/mention_picker.js fills it)."""
    return rx.cond(
        ChatState.mention_matches.length() > 0,
        rx.vstack(
            rx.foreach(ChatState.mention_matches, _mention_option),
            spacing="0",
            padding="4px",
            width="min(100%, 320px)",
            background="var(--color-panel-solid)",
            border="1px solid var(--gray-6)",
            border_radius="8px",
            box_shadow="var(--shadow-4)",
            role="listbox",
            custom_attrs={"data-testid": "mention-list"},
        ),
    )


def composer() -> rx.Component:
    limit = get_settings().message_max_chars
    return rx.form(
        rx.vstack(
            rx.cond(
                ChatState.composer_error != "",
                rx.text(
                    ChatState.composer_error,
                    color_scheme="red",
                    size="2",
                    custom_attrs={"data-testid": "composer-error"},
                ),
            ),
            _mention_list(),
            _counter(limit),
            rx.hstack(
                rx.text_area(
                    id="composer",
                    name="content",
                    placeholder="Write a message…  (Enter sends, Shift+Enter for a new line)",
                    rows="1",
                    resize="vertical",
                    auto_focus=True,
                    flex="1",
                    on_key_down=ChatState.typed,
                    on_blur=ChatState.stopped_typing,
                ),
                rx.button(
                    rx.icon("send-horizontal", size=16),
                    "Send",
                    type="submit",
                    loading=ChatState.sending,
                    disabled=ChatState.composer_length > limit,
                    custom_attrs={"data-testid": "send"},
                ),
                width="100%",
                align="end",
            ),
            spacing="1",
            width="100%",
        ),
        on_submit=ChatState.send,
        reset_on_submit=True,
        width="100%",
        padding="12px 16px",
    )
