"""The open conversation's settings: its name, its people (add, remove), and leaving."""

from __future__ import annotations

import reflex as rx
from reflex.vars import ObjectVar

from app.components.bidi import user_text
from app.state.conversation_settings import ConversationSettingsState as Settings
from app.state.conversation_settings import ParticipantOption


def _participant(person: ObjectVar[ParticipantOption]) -> rx.Component:
    return rx.hstack(
        user_text(person.name, size="2"),
        rx.cond(person.me, rx.text("(you)", size="1", color_scheme="gray")),
        rx.spacer(),
        rx.cond(
            Settings.is_group & ~person.me,
            rx.button(
                "Remove",
                size="1",
                variant="soft",
                color_scheme="red",
                type="button",
                on_click=Settings.remove_person(person.user_id),  # type: ignore[operator]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
                custom_attrs={"data-testid": "remove-person"},
            ),
        ),
        width="100%",
        align="center",
        custom_attrs={"data-testid": "participant", "data-name": person.name},
    )


def _candidate(person: ObjectVar[ParticipantOption]) -> rx.Component:
    return rx.el.label(
        rx.hstack(
            rx.checkbox(name="add-" + person.user_id.to_string(), default_checked=False),
            user_text(person.name, size="2"),
            align="center",
            spacing="2",
        ),
        custom_attrs={"data-testid": "add-candidate", "data-name": person.name},
    )


def _rename() -> rx.Component:
    return rx.form(
        rx.hstack(
            # Keyed by the title: a rename elsewhere shows here when the dialog reloads.
            rx.input(
                name="title",
                default_value=Settings.title,
                key=Settings.title,
                placeholder="Group title",
                max_length=200,
                flex="1",
                custom_attrs={"data-testid": "rename-input"},
            ),
            rx.button("Rename", type="submit", custom_attrs={"data-testid": "rename"}),
            width="100%",
        ),
        on_submit=Settings.rename,
        reset_on_submit=False,
    )


def _add() -> rx.Component:
    return rx.cond(
        Settings.candidates.length() > 0,
        rx.form(
            rx.vstack(
                rx.text("Add people", size="2", weight="bold"),
                rx.vstack(rx.foreach(Settings.candidates, _candidate), spacing="1"),
                rx.button("Add", type="submit", size="1", custom_attrs={"data-testid": "add"}),
                spacing="2",
            ),
            on_submit=Settings.add_people,
            reset_on_submit=True,
        ),
    )


def settings_button() -> rx.Component:
    return rx.icon_button(
        rx.icon("settings-2", size=16),
        variant="ghost",
        title="Conversation settings",
        aria_label="Conversation settings",
        on_click=Settings.show(True),  # type: ignore[operator]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
        custom_attrs={"data-testid": "conversation-settings"},
    )


def settings_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Conversation settings"),
            rx.vstack(
                rx.cond(Settings.is_group, _rename()),
                rx.text("People", size="2", weight="bold"),
                rx.vstack(
                    rx.foreach(Settings.participants, _participant), spacing="1", width="100%"
                ),
                rx.cond(Settings.is_group, _add()),
                rx.cond(
                    Settings.error != "",
                    rx.callout(
                        Settings.error,
                        color_scheme="red",
                        size="1",
                        custom_attrs={"data-testid": "settings-error"},
                    ),
                ),
                rx.hstack(
                    rx.cond(
                        Settings.is_group,
                        rx.button(
                            "Leave conversation",
                            color_scheme="red",
                            variant="soft",
                            type="button",
                            on_click=Settings.leave,
                            custom_attrs={"data-testid": "leave"},
                        ),
                        rx.text(
                            "A direct conversation stays between the two of you.",
                            size="1",
                            color_scheme="gray",
                        ),
                    ),
                    rx.spacer(),
                    rx.dialog.close(rx.button("Done", variant="soft", color_scheme="gray")),
                    width="100%",
                    align="center",
                ),
                spacing="3",
                padding_top="8px",
                width="100%",
            ),
            max_width="440px",
            custom_attrs={"data-testid": "settings-dialog"},
        ),
        open=Settings.open,
        on_open_change=Settings.show,
    )
