"""One message of the open conversation: its day separator and the "new messages" divider
above it when due, the bubble (formatted text, time with the full date on hover, "edited"),
a placeholder once deleted, and the sender's own edit and delete controls."""

from __future__ import annotations

import reflex as rx
from reflex.vars import ObjectVar, var_operation, var_operation_return

from app.components.bidi import user_text
from app.components.message_text import message_text
from app.settings import get_settings
from app.state.chat import ChatState
from app.state.items import MessageItem
from app.state.session import SessionState

_ACTIONS_CLASS = "message-actions"
# The sender's controls show on hover or keyboard focus, as in Slack; always on a phone.
ROW_STYLE = {
    f".{_ACTIONS_CLASS}": {"opacity": "0", "transition": "opacity 120ms"},
    f"&:hover .{_ACTIONS_CLASS}, &:focus-within .{_ACTIONS_CLASS}": {"opacity": "1"},
    "@media (hover: none)": {f".{_ACTIONS_CLASS}": {"opacity": "1"}},
}


@var_operation
def starts_a_day(messages: rx.Var[list[MessageItem]], index: rx.Var[int]):
    """Whether message `index` is the first of its day, in the reader's time zone."""
    day = "(m) => new Date(m.created_at).toDateString()"
    return var_operation_return(
        js_expression=(
            f"({index} === 0 || ({day})({messages}[{index} - 1]) !== ({day})({messages}[{index}]))"
        ),
        var_type=bool,
    )


@var_operation
def day_label(iso: rx.Var[str]):
    """ "Today", "Yesterday", else the date in words, in the reader's locale."""
    return var_operation_return(
        js_expression=(
            f"((d) => {{ const day = (x) => x.toDateString(); const now = new Date();"
            f" const y = new Date(now); y.setDate(now.getDate() - 1);"
            f" if (day(d) === day(now)) return 'Today';"
            f" if (day(d) === day(y)) return 'Yesterday';"
            f" return d.toLocaleDateString(undefined, {{weekday: 'long', year: 'numeric',"
            f" month: 'long', day: 'numeric'}}); }})(new Date({iso}))"
        ),
        var_type=str,
    )


@var_operation
def full_time(iso: rx.Var[str]):
    """The date and time in full, in the reader's locale and time zone (the hover title)."""
    return var_operation_return(
        js_expression=(
            f"new Date({iso}).toLocaleString(undefined, {{dateStyle: 'full', timeStyle: 'medium'}})"
        ),
        var_type=str,
    )


def _divider(label: rx.Var[str] | str, testid: str, color: str) -> rx.Component:
    line = rx.box(flex="1", height="1px", background=color)
    return rx.hstack(
        line,
        rx.text(label, size="1", weight="medium", style={"color": color}),
        line,
        align="center",
        width="100%",
        padding_y="4px",
        custom_attrs={"data-testid": testid},
    )


def _time(message: ObjectVar[MessageItem]) -> rx.Component:
    return rx.hstack(
        # The full date and time on hover (react-moment passes no title of its own).
        rx.el.span(
            rx.moment(message.created_at, format="HH:mm", font_size="12px", color="var(--gray-10)"),
            title=full_time(message.created_at),
            custom_attrs={"data-testid": "message-time"},
        ),
        rx.cond(
            message.edited & ~message.deleted,
            rx.text(
                "(edited)",
                size="1",
                color="var(--gray-10)",
                custom_attrs={"data-testid": "message-edited"},
            ),
        ),
        spacing="1",
        align="center",
    )


def _actions(message: ObjectVar[MessageItem]) -> rx.Component:
    return rx.hstack(
        rx.icon_button(
            rx.icon("pencil", size=14),
            size="1",
            variant="ghost",
            color_scheme="gray",
            title="Edit",
            aria_label="Edit message",
            on_click=ChatState.start_editing(message.id),  # type: ignore[operator]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
            custom_attrs={"data-testid": "message-edit"},
        ),
        rx.icon_button(
            rx.icon("trash-2", size=14),
            size="1",
            variant="ghost",
            color_scheme="red",
            title="Delete",
            aria_label="Delete message",
            on_click=ChatState.ask_delete(message.id),  # type: ignore[operator]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
            custom_attrs={"data-testid": "message-delete"},
        ),
        class_name=_ACTIONS_CLASS,
        spacing="1",
    )


def _edit_form(message: ObjectVar[MessageItem]) -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.text_area(
                name="content",
                default_value=message.content,
                auto_focus=True,
                rows="3",
                width="100%",
                max_length=get_settings().message_max_chars,
                custom_attrs={"data-testid": "edit-box"},
            ),
            rx.cond(
                ChatState.edit_error != "",
                rx.text(
                    ChatState.edit_error,
                    color_scheme="red",
                    size="1",
                    custom_attrs={"data-testid": "edit-error"},
                ),
            ),
            rx.hstack(
                rx.button(
                    "Cancel",
                    type="button",
                    size="1",
                    variant="soft",
                    color_scheme="gray",
                    on_click=ChatState.stop_editing,
                    custom_attrs={"data-testid": "edit-cancel"},
                ),
                rx.button(
                    "Save", type="submit", size="1", custom_attrs={"data-testid": "edit-save"}
                ),
                justify="end",
                width="100%",
            ),
            spacing="2",
            width="100%",
        ),
        on_submit=ChatState.save_edit,
        reset_on_submit=False,
        width="min(75%, 640px)",
    )


def _bubble(message: ObjectVar[MessageItem]) -> rx.Component:
    return rx.box(
        rx.cond(
            ~message.mine,
            user_text(message.sender_name, size="1", weight="bold", color_scheme="indigo"),
        ),
        rx.cond(
            message.deleted,
            rx.text(
                "This message was deleted.",
                size="2",
                style={"font_style": "italic"},
                color="var(--gray-10)",
                custom_attrs={"data-testid": "message-deleted"},
            ),
            # Links, emphasis, code and mentions, built as elements: never the sender's markup.
            message_text(message.content, ChatState.active_usernames, SessionState.username),
        ),
        _time(message),
        padding="8px 12px",
        border_radius="12px",
        max_width="min(75%, 640px)",
        min_width="0",
        background=rx.cond(message.mine, "var(--accent-4)", "var(--gray-3)"),
        border=rx.cond(message.deleted, "1px dashed var(--gray-6)", "none"),
        # A search result or a link's message, for a moment (assets/message_view.js).
        style={
            "&[data-focused='true']": {"box_shadow": "0 0 0 2px var(--amber-9)"},
            "transition": "box-shadow 400ms",
        },
        custom_attrs={"data-testid": "message", "data-id": message.id},
    )


def message_row(message: ObjectVar[MessageItem], index: rx.Var[int]) -> rx.Component:
    editing = message.id == ChatState.editing_id
    return rx.fragment(
        rx.cond(
            starts_a_day(ChatState.messages, index),
            _divider(day_label(message.created_at), "day-separator", "var(--gray-10)"),
        ),
        rx.cond(
            message.id == ChatState.unread_from_id,
            _divider("New messages", "unread-divider", "var(--red-10)"),
        ),
        rx.flex(
            rx.cond(
                editing,
                _edit_form(message),
                rx.fragment(
                    rx.cond(message.mine & ~message.deleted, _actions(message)),
                    _bubble(message),
                ),
            ),
            justify=rx.cond(message.mine, "end", "start"),
            align="center",
            gap="4px",
            width="100%",
            style=ROW_STYLE,
        ),
    )


def delete_dialog() -> rx.Component:
    """One confirmation for the whole pane: which message is ChatState.deleting_id."""
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete this message?"),
            rx.alert_dialog.description(
                "It is deleted for everyone in the conversation. This cannot be undone.",
                size="2",
            ),
            rx.hstack(
                rx.alert_dialog.cancel(
                    rx.button(
                        "Cancel",
                        variant="soft",
                        color_scheme="gray",
                        on_click=ChatState.cancel_delete,
                    ),
                ),
                rx.alert_dialog.action(
                    rx.button(
                        "Delete",
                        color_scheme="red",
                        on_click=ChatState.delete_message,
                        custom_attrs={"data-testid": "confirm-delete"},
                    ),
                ),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
        ),
        open=ChatState.deleting_id != 0,
    )
