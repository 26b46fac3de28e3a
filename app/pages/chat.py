"""The signed-in chat page: conversations | open conversation | people."""

from __future__ import annotations

import reflex as rx

from app.components.chat_window import chat_window
from app.components.conversation_list import conversation_list
from app.components.header import header
from app.components.live_store import live_store
from app.components.presence_list import presence_list
from app.state.chat import ChatState
from app.state.live import LiveState
from app.state.presence import PresenceState
from app.state.session import SessionState

# Activity reports are throttled in the browser: the server needs only "still here".
ACTIVITY_THROTTLE_MS = 20_000


def _event_log() -> rx.Component:
    """The last events this tab applied, opened from the user menu: for support, and for
    the identical-events test."""
    return rx.cond(
        LiveState.event_log_json != "",
        rx.box(
            rx.hstack(
                rx.text("Event log: the last events this tab applied", size="1", weight="bold"),
                rx.spacer(),
                rx.icon_button(
                    rx.icon("x", size=14),
                    size="1",
                    variant="ghost",
                    on_click=LiveState.hide_event_log,
                    aria_label="Close the event log",
                ),
                width="100%",
            ),
            rx.el.pre(
                LiveState.event_log_json,
                id="event-log",
                custom_attrs={"data-testid": "event-log"},
                style={
                    "white-space": "pre-wrap",
                    "word-break": "break-all",
                    "font-size": "11px",
                    "max-height": "30vh",
                    "overflow": "auto",
                    "margin": "0",
                },
            ),
            width="100%",
            padding="8px",
            border_top="1px solid var(--gray-5)",
        ),
    )


def _panes(conversation_open: bool) -> rx.Component:
    """Three panes on a laptop; on a phone, the list or the open conversation."""
    return rx.hstack(
        rx.box(
            conversation_list(),
            width=["100%", "100%", "300px"],
            flex_shrink="0",
            border_right="1px solid var(--gray-5)",
            height="100%",
            display=["none", "none", "block"] if conversation_open else "block",
        ),
        rx.box(
            chat_window(),
            flex="1",
            min_width="0",
            height="100%",
            display="block" if conversation_open else ["none", "none", "block"],
        ),
        rx.box(
            presence_list(),
            width="240px",
            flex_shrink="0",
            border_left="1px solid var(--gray-5)",
            height="100%",
            display=["none", "none", "none", "block"],
        ),
        width="100%",
        flex="1",
        min_height="0",
        spacing="0",
    )


def chat() -> rx.Component:
    return rx.fragment(
        # Outside the cond: it must listen before the first frame of the feed arrives.
        live_store(),
        _page(),
    )


def _page() -> rx.Component:
    return rx.cond(
        SessionState.signed_in,
        rx.vstack(
            header(),
            # Responsive values cannot pass through rx.cond, so each layout is its own tree.
            rx.cond(ChatState.active_id != 0, _panes(True), _panes(False)),
            _event_log(),
            height="100vh",
            spacing="0",
            # Key presses in the composer count as activity too (ChatState.typed).
            on_mouse_move=PresenceState.activity.throttle(ACTIVITY_THROTTLE_MS),  # type: ignore[attr-defined]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
        ),
        rx.center(rx.spinner(size="3"), height="100vh"),
    )


ON_LOAD = [SessionState.require_session, LiveState.listen, ChatState.open_linked]
