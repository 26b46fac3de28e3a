"""The right pane: the tenant's people, online first, with "last seen"."""

from __future__ import annotations

import reflex as rx
from reflex.vars import ObjectVar

from app.components.bidi import user_text
from app.components.presence_dot import presence_dot
from app.state.items import PersonItem
from app.state.presence import PresenceState


def _person(person: ObjectVar[PersonItem]) -> rx.Component:
    return rx.hstack(
        presence_dot(person.status),
        rx.vstack(
            user_text(person.name, size="2", weight="medium"),
            rx.cond(
                person.status == "offline",
                rx.cond(
                    person.last_seen != "",
                    rx.hstack(
                        rx.text("last seen", size="1", color_scheme="gray"),
                        rx.moment(
                            person.last_seen,
                            from_now=True,
                            font_size="12px",
                            color="var(--gray-10)",
                        ),
                        spacing="1",
                    ),
                    rx.text("offline", size="1", color_scheme="gray"),
                ),
                rx.text(person.status, size="1", color_scheme="gray"),
            ),
            spacing="0",
        ),
        align="center",
        padding="6px 4px",
        custom_attrs={
            "data-testid": "person",
            "data-name": person.name,
            "data-status": person.status,
        },
    )


def presence_list() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.heading("People", size="4"),
            rx.badge(PresenceState.online_count, " online", color_scheme="green", radius="full"),
            align="center",
            padding="12px 12px 4px",
        ),
        rx.scroll_area(
            rx.vstack(rx.foreach(PresenceState.people, _person), spacing="0", padding="4px 12px"),
            type="hover",
            scrollbars="vertical",
            flex="1",
        ),
        height="100%",
        width="100%",
        spacing="0",
    )
