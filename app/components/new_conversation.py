"""Start a conversation with people of the tenant."""

from __future__ import annotations

import reflex as rx
from reflex.vars import ObjectVar

from app.components.bidi import user_text
from app.components.presence_dot import presence_dot
from app.state.chat import ChatState
from app.state.items import PersonItem
from app.state.presence import PresenceState
from app.state.session import SessionState


def _person(person: ObjectVar[PersonItem]) -> rx.Component:
    return rx.cond(
        person.user_id != SessionState.user_id,
        rx.el.label(
            rx.hstack(
                # Uncontrolled from the start: without a default, Radix warns once it is clicked.
                rx.checkbox(name="person-" + person.user_id.to_string(), default_checked=False),
                presence_dot(person.status),
                user_text(person.name),
                align="center",
                spacing="2",
            ),
            custom_attrs={"data-testid": "pick-person"},
        ),
    )


def new_conversation_dialog() -> rx.Component:
    # Controlled: the dialog closes when the conversation is made, and stays open, with the
    # reason, when it is not.
    return rx.dialog.root(
        rx.dialog.trigger(
            rx.icon_button(
                rx.icon("square-pen", size=16),
                variant="soft",
                size="2",
                title="New conversation",
                custom_attrs={"data-testid": "new-conversation"},
            )
        ),
        rx.dialog.content(
            rx.dialog.title("New conversation"),
            rx.dialog.description(
                "Pick one person for a direct chat, or several (and a title) for a group.",
                size="2",
            ),
            rx.form(
                rx.vstack(
                    rx.vstack(rx.foreach(PresenceState.people, _person), spacing="2"),
                    rx.input(name="title", placeholder="Group title (optional)", max_length=200),
                    rx.cond(
                        ChatState.new_conversation_error != "",
                        rx.callout(
                            ChatState.new_conversation_error,
                            color_scheme="red",
                            size="1",
                            custom_attrs={"data-testid": "new-conversation-error"},
                        ),
                    ),
                    rx.hstack(
                        rx.dialog.close(
                            rx.button("Cancel", variant="soft", color_scheme="gray", type="button")
                        ),
                        rx.button(
                            "Start",
                            type="submit",
                            custom_attrs={"data-testid": "start-conversation"},
                        ),
                        justify="end",
                        width="100%",
                    ),
                    spacing="3",
                    padding_top="12px",
                ),
                on_submit=ChatState.start_conversation,
                # Kept on a refusal; the content unmounts when the dialog closes.
                reset_on_submit=False,
            ),
            max_width="420px",
        ),
        open=ChatState.new_conversation_open,
        on_open_change=ChatState.show_new_conversation,
    )
