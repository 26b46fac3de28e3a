"""The tenant's people and their presence; this tab's activity keeps its user from idling."""

from __future__ import annotations

import reflex as rx

from app.domain.presence import Status
from app.runtime import get_runtime
from app.state import replies
from app.state.items import PersonItem
from app.state.session import SessionState

# Vars only the page's store writes (assets/live_store.js): never set by the server.
LIVE_VARS = ("people", "online_count")


class PresenceState(rx.State):
    # -- live: written by the page's store only ------------------------------------
    # Online first, then away, then offline; by name within each.
    people: rx.Field[list[PersonItem]] = rx.field(default_factory=list)
    online_count: int = 0
    # -- this tab's own ------------------------------------------------------------
    chose_away: bool = False

    @rx.event
    async def activity(self):
        """Throttled mouse and keyboard activity in this tab."""
        principal = await (await self.get_state(SessionState))._principal()
        if principal is None:
            return replies.signed_out()
        get_runtime().presence.touch(principal)
        return None

    @rx.event
    async def toggle_away(self):
        principal = await (await self.get_state(SessionState))._principal()
        if principal is None:
            return replies.signed_out()
        wanted = Status.ONLINE if self.chose_away else Status.AWAY
        get_runtime().presence.choose(principal, wanted)
        self.chose_away = wanted is Status.AWAY
        return None
