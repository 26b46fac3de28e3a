"""The bell: unread badge and a dropdown of the latest notifications."""

from __future__ import annotations

import reflex as rx
from reflex.vars import ObjectVar

from app.components.bidi import user_text
from app.state.items import NotificationItem
from app.state.notifications import NotificationState


def _item(item: ObjectVar[NotificationItem]) -> rx.Component:
    return rx.hstack(
        rx.box(
            width="8px",
            height="8px",
            border_radius="50%",
            margin_top="6px",
            flex_shrink="0",
            background=rx.cond(item.read, "transparent", "var(--accent-9)"),
        ),
        rx.vstack(
            user_text(item.title, size="2", weight="medium"),
            rx.cond(item.body != "", user_text(item.body, size="1", color_scheme="gray")),
            rx.moment(item.created_at, from_now=True, font_size="12px", color="var(--gray-10)"),
            spacing="0",
            flex="1",
            min_width="0",
        ),
        rx.cond(
            ~item.read,
            rx.icon_button(
                rx.icon("check", size=14),
                size="1",
                variant="ghost",
                title="Mark as read",
                # Only this: the item's own click would follow the link too.
                on_click=NotificationState.mark_read(item.id).stop_propagation,  # type: ignore[operator]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
                custom_attrs={"data-testid": "notification-read"},
            ),
        ),
        align="start",
        width="100%",
        padding="8px",
        border_radius="6px",
        cursor=rx.cond(item.link != "", "pointer", "default"),
        _hover={"background": "var(--gray-3)"},
        on_click=NotificationState.open_notification(item.id),  # type: ignore[operator]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
        custom_attrs={"data-testid": "notification", "data-link": item.link},
    )


def notification_bell() -> rx.Component:
    return rx.popover.root(
        rx.popover.trigger(
            rx.box(
                rx.icon_button(
                    rx.icon("bell", size=18),
                    variant="ghost",
                    size="2",
                    title="Notifications",
                    custom_attrs={"data-testid": "bell"},
                ),
                rx.cond(
                    NotificationState.unread_count > 0,
                    rx.badge(
                        NotificationState.badge,
                        color_scheme="red",
                        variant="solid",
                        radius="full",
                        size="1",
                        position="absolute",
                        top="-6px",
                        right="-8px",
                        custom_attrs={"data-testid": "bell-badge"},
                    ),
                ),
                position="relative",
            )
        ),
        rx.popover.content(
            rx.vstack(
                rx.hstack(
                    rx.heading("Notifications", size="3"),
                    rx.spacer(),
                    rx.button(
                        "Mark all read",
                        size="1",
                        variant="ghost",
                        on_click=NotificationState.mark_all_read,
                        disabled=NotificationState.unread_count == 0,
                        custom_attrs={"data-testid": "notifications-read-all"},
                    ),
                    width="100%",
                    align="center",
                ),
                rx.cond(
                    NotificationState.items.length() == 0,
                    rx.text("Nothing yet.", size="2", color_scheme="gray"),
                    rx.scroll_area(
                        rx.vstack(rx.foreach(NotificationState.items, _item), spacing="1"),
                        type="hover",
                        scrollbars="vertical",
                        max_height="360px",
                    ),
                ),
                spacing="2",
                width="320px",
            ),
            align="end",
        ),
    )
