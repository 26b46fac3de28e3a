"""The page's store (assets/live_store.js): applies the tab's feed to the live vars."""

from __future__ import annotations

import reflex as rx

from app.state.chat import ChatState
from app.state.live import LiveState
from app.state.notifications import NotificationState
from app.state.presence import PresenceState
from app.state.tab_feed import FeedState


class LiveStore(rx.Component):
    library = "$/public/live_store.js"
    tag = "LiveStore"

    feed_state: rx.Var[str]
    live_state: rx.Var[str]
    chat_state: rx.Var[str]
    presence_state: rx.Var[str]
    notification_state: rx.Var[str]
    reload_event: rx.Var[str]
    listen_event: rx.Var[str]
    load_older_event: rx.Var[str]
    refresh_event: rx.Var[str]


def live_store() -> rx.Component:
    return LiveStore.create(
        feed_state=FeedState.get_full_name(),
        live_state=LiveState.get_full_name(),
        chat_state=ChatState.get_full_name(),
        presence_state=PresenceState.get_full_name(),
        notification_state=NotificationState.get_full_name(),
        reload_event=f"{ChatState.get_full_name()}.reload_conversations",
        listen_event=f"{LiveState.get_full_name()}.listen",
        load_older_event=f"{ChatState.get_full_name()}.load_older",
        refresh_event=f"{ChatState.get_full_name()}.refresh_conversation",
    )
