"""Reflex never sends a live var: only the tab's feed does (app/state/tab_feed.py).

The live vars (each state's LIVE_VARS) are declared on the states so that components can
render them, and the page's store (assets/live_store.js) is the only writer. The server
never sets them, so their server-side values stay at the defaults; left alone, Reflex would
still send those defaults in every hydrate (a reconnect's too), blanking the page until
the next snapshot. Every update Reflex emits passes through here first and loses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from typing import Any

import reflex as rx
from reflex.state import StateUpdate
from reflex_base.constants.state import FIELD_MARKER

from app.state import chat, live, notifications, presence
from app.state.tab_feed import FeedState


@cache
def live_keys() -> dict[str, frozenset[str]]:
    """Substate full name -> the delta keys of its live vars."""
    owners: tuple[tuple[type[rx.State], tuple[str, ...]], ...] = (
        (chat.ChatState, chat.LIVE_VARS),
        (presence.PresenceState, presence.LIVE_VARS),
        (notifications.NotificationState, notifications.LIVE_VARS),
        (live.LiveState, live.LIVE_VARS),
        (FeedState, ("feed",)),
    )
    for state, names in owners:
        missing = [n for n in names if n not in state.vars]
        if missing:
            raise RuntimeError(f"{state.__name__} declares no var {missing} of its LIVE_VARS")
    return {
        state.get_full_name(): frozenset(name + FIELD_MARKER for name in names)
        for state, names in owners
    }


def without_live_vars(delta: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The delta less the live vars; None when it holds none (the usual case)."""
    keys = live_keys()
    if not any(name in keys and not keys[name].isdisjoint(sub) for name, sub in delta.items()):
        return None
    kept: dict[str, Any] = {}
    for name, sub in delta.items():
        dropped = keys.get(name, frozenset())
        rest = {key: value for key, value in sub.items() if key not in dropped}
        if rest:
            kept[name] = rest
    return kept


def install(app: rx.App) -> None:
    namespace = app.event_namespace
    if namespace is None:
        return
    live_keys()  # a LIVE_VARS entry that names no var fails the start
    emit = namespace.emit_update

    async def emit_update(update: StateUpdate, token: str) -> None:
        kept = without_live_vars(update.delta) if update.delta else None
        if kept is not None:
            if not kept and not update.events:
                return
            update = replace(update, delta=kept)
        await emit(update, token)

    # Reflex's event processor looks `emit_update` up on the namespace at each call.
    namespace.emit_update = emit_update  # type: ignore[method-assign]  # replaced on this one instance, on purpose
