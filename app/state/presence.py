"""The tenant's people and their presence; this tab's activity keeps its user from idling."""

from __future__ import annotations

from typing import Any

import reflex as rx

from app.domain.presence import Status
from app.domain.principal import Principal
from app.runtime import get_runtime
from app.state import replies
from app.state.items import PersonItem, person_item
from app.state.session import SessionState

_ORDER = {"online": 0, "away": 1, "offline": 2}


class PresenceState(rx.State):
    people: list[PersonItem] = []
    chose_away: bool = False

    @rx.var
    def online_count(self) -> int:
        return sum(1 for p in self.people if p.status == "online")

    async def _load_snapshot(self, principal: Principal) -> None:
        items = await get_runtime().presence.snapshot(principal.tenant_id)
        self.people = _sorted([person_item(item.to_data()) for item in items])

    def _apply_event(self, data: dict[str, Any]) -> None:
        updated = person_item(data)
        others = [p for p in self.people if p.user_id != updated.user_id]
        self.people = _sorted([*others, updated])

    @rx.event
    async def activity(self):  # type: ignore[no-untyped-def]
        """Throttled mouse and keyboard activity in this tab."""
        principal = await (await self.get_state(SessionState))._principal()
        if principal is None:
            return replies.signed_out()
        get_runtime().presence.touch(principal)
        return None

    @rx.event
    async def toggle_away(self):  # type: ignore[no-untyped-def]
        principal = await (await self.get_state(SessionState))._principal()
        if principal is None:
            return replies.signed_out()
        wanted = Status.ONLINE if self.chose_away else Status.AWAY
        get_runtime().presence.choose(principal, wanted)
        self.chose_away = wanted is Status.AWAY
        return None


def _sorted(people: list[PersonItem]) -> list[PersonItem]:
    return sorted(people, key=lambda p: (_ORDER.get(p.status, 3), p.name.lower()))
