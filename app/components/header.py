"""The app bar: workspace switcher, live status, bell, colour mode, the user's menu."""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex.vars import ObjectVar
from reflex_components_core.core.banner import has_connection_errors

from app.components.bidi import initial, user_text
from app.components.notification_bell import notification_bell
from app.components.presence_list import presence_list
from app.state.chat import ChatState
from app.state.live import LiveState
from app.state.presence import PresenceState
from app.state.session import SessionState


def _workspace(membership: ObjectVar[dict[str, Any]]) -> rx.Component:
    """A workspace in the switcher, with how many unread messages wait there."""
    tenant = membership["tenantId"].to_string()
    unread = SessionState.unread_elsewhere[tenant].to(int)  # type: ignore[call-overload]  # mypy picks ArrayVar for a dict[str, int] Field; Reflex makes it an ObjectVar
    return rx.select.item(
        rx.hstack(
            user_text(membership["tenantName"].to(str), as_="span"),
            rx.cond(
                unread > 0,
                rx.badge(
                    unread,
                    radius="full",
                    size="1",
                    custom_attrs={"data-testid": "workspace-unread"},
                ),
            ),
            align="center",
            spacing="2",
        ),
        value=tenant,
    )


def _workspace_hint() -> rx.Component:
    """A dot on the switcher while another workspace has unread messages."""
    return rx.cond(
        SessionState.unread_elsewhere.length() > 0,
        rx.box(
            width="8px",
            height="8px",
            border_radius="50%",
            background="var(--red-9)",
            title="Unread messages in another workspace",
            custom_attrs={"data-testid": "workspace-hint"},
        ),
    )


def _tenant_switcher() -> rx.Component:
    return rx.cond(
        SessionState.has_several_tenants,
        rx.select.root(
            rx.select.trigger(variant="ghost", custom_attrs={"data-testid": "tenant-switcher"}),
            rx.select.content(
                rx.foreach(SessionState.memberships, _workspace),
            ),
            value=SessionState.tenant_id.to_string(),
            on_change=SessionState.switch_tenant,
            on_open_change=SessionState.refresh_workspaces,
        ),
        user_text(SessionState.tenant_name, weight="medium", color_scheme="gray"),
    )


def _live_badge() -> rx.Component:
    return rx.cond(
        has_connection_errors,
        rx.badge(
            "offline: reconnecting…",
            color_scheme="red",
            variant="soft",
            custom_attrs={"data-testid": "connection-lost"},
        ),
        rx.cond(
            LiveState.connected,
            rx.badge(
                "live", color_scheme="green", variant="soft", custom_attrs={"data-testid": "live"}
            ),
            rx.badge("connecting…", color_scheme="gray", variant="soft"),
        ),
    )


def _people_button() -> rx.Component:
    """Below the width that shows the People pane, the same list behind a button."""
    return rx.box(
        rx.popover.root(
            rx.popover.trigger(
                rx.icon_button(
                    rx.icon("users", size=18),
                    variant="ghost",
                    size="2",
                    title="People",
                    custom_attrs={"data-testid": "people-button"},
                )
            ),
            rx.popover.content(
                rx.box(presence_list(), height="min(60vh, 480px)", width="260px"),
                align="end",
                custom_attrs={"data-testid": "people-popover"},
            ),
        ),
        display=["block", "block", "block", "none"],
    )


def _on_wide_screens(component: rx.Component) -> rx.Component:
    return rx.box(component, display=["none", "none", "block"])


def _user_menu() -> rx.Component:
    return rx.menu.root(
        rx.menu.trigger(
            rx.button(
                rx.avatar(fallback=initial(SessionState.display_name), size="1", radius="full"),
                user_text(SessionState.display_name, display=["none", "none", "inline"]),
                variant="ghost",
                custom_attrs={"data-testid": "user-menu"},
            )
        ),
        rx.menu.content(
            rx.menu.item(
                rx.cond(PresenceState.chose_away, "Set yourself online", "Set yourself away"),
                on_click=PresenceState.toggle_away,
            ),
            # Handled in the page (assets/desktop_notify.js): the browser asks for leave.
            rx.menu.item(
                rx.cond(
                    ChatState.desktop_notify,
                    "Turn desktop notifications off",
                    "Turn desktop notifications on",
                ),
                custom_attrs={"data-desktop-notify-toggle": "", "data-testid": "desktop-notify"},
            ),
            rx.menu.item(
                "Event log",
                on_click=LiveState.show_event_log,
                custom_attrs={"data-testid": "show-event-log"},
            ),
            rx.menu.separator(),
            rx.menu.item(
                "Sign out",
                color="red",
                on_click=SessionState.sign_out,
                custom_attrs={"data-testid": "sign-out"},
            ),
        ),
    )


def header() -> rx.Component:
    return rx.hstack(
        rx.hstack(
            rx.icon("message-circle", size=22, color="var(--accent-9)"),
            _on_wide_screens(rx.heading("Chat", size="5")),
            _tenant_switcher(),
            _workspace_hint(),
            align="center",
            spacing="3",
        ),
        rx.spacer(),
        rx.hstack(
            _live_badge(),
            _people_button(),
            notification_bell(),
            rx.color_mode.button(variant="ghost", size="2"),
            _user_menu(),
            align="center",
            spacing=rx.breakpoints(initial="2", md="4"),
        ),
        padding=rx.breakpoints(initial="8px 10px", md="10px 16px"),
        border_bottom="1px solid var(--gray-5)",
        width="100%",
        align="center",
    )
