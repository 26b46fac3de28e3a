"""The open conversation's settings dialog: rename a group, add and remove people, leave.

Every change goes through the conversations use case, which checks the caller takes part;
its `chat:conversation` events bring every participant's list and header up to date, this
tab's included, so nothing here is written twice."""

from __future__ import annotations

import dataclasses
from typing import Any

import reflex as rx

from app.domain.conversations import ConversationView
from app.domain.errors import DomainError
from app.domain.principal import Principal
from app.runtime import get_runtime
from app.state import replies
from app.state.arguments import parse_id
from app.state.chat import ChatState
from app.state.session import SessionState


@dataclasses.dataclass
class ParticipantOption:
    user_id: int
    name: str
    me: bool


class ConversationSettingsState(rx.State):
    open: bool = False
    is_group: bool = False
    title: str = ""
    participants: rx.Field[list[ParticipantOption]] = rx.field(default_factory=list)
    # Members of the tenant who are not in it yet: who "Add" offers.
    candidates: rx.Field[list[ParticipantOption]] = rx.field(default_factory=list)
    error: str = ""

    async def _principal(self) -> Principal | None:
        return await (await self.get_state(SessionState))._principal()

    def _show(self, view: ConversationView, principal: Principal, everyone: list[Any]) -> None:
        inside = {p.id for p in view.participants}
        self.is_group = view.kind == "group"
        self.title = view.title or ""
        self.participants = [
            ParticipantOption(p.id, p.display_name, p.id == principal.user_id)
            for p in view.participants
        ]
        self.candidates = [
            ParticipantOption(m.user_id, m.display_name, False)
            for m in everyone
            if m.user_id not in inside
        ]

    async def _reload(self, principal: Principal, conversation_id: int) -> None:
        runtime = get_runtime()
        view = await runtime.conversations.get(principal, conversation_id)
        self._show(view, principal, await runtime.members.list_for(principal))

    @rx.event
    async def show(self, show: bool):
        """Opens the dialog for the conversation this tab has open (or closes it)."""
        self.error = ""
        if show is not True:
            self.open = False
            return None
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        chat = await self.get_state(ChatState)
        if not chat.active_id:
            return None
        try:
            await self._reload(principal, chat.active_id)
        except DomainError as exc:
            return replies.refused(exc.message)
        self.open = True
        return None

    async def _change(self, change: Any, *, stays: bool = True) -> Any:
        """Runs `change(principal, conversation_id)`; then shows the conversation as it now
        is, or (`stays` False: the caller left) closes it here."""
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        chat = await self.get_state(ChatState)
        if not chat.active_id or not self.open:
            return None
        try:
            await change(principal, chat.active_id)
            if stays:
                await self._reload(principal, chat.active_id)
        except DomainError as exc:
            self.error = exc.message
            return None
        self.error = ""
        if not stays:
            # The removed event closes it in the caller's other tabs; this one at once.
            self.open = False
            chat._close()
        return None

    @rx.event
    async def rename(self, form_data: dict[str, Any]):
        title = form_data.get("title", "")
        if not isinstance(title, str):
            self.error = "The title must be text."
            return None
        conversations = get_runtime().conversations
        return await self._change(lambda p, cid: conversations.rename(p, cid, title or None))

    @rx.event
    async def add_people(self, form_data: dict[str, Any]):
        picked = [
            parse_id(key.removeprefix("add-"))
            for key, on in form_data.items()
            if key.startswith("add-") and on in ("on", True, "true")
        ]
        if not picked:
            self.error = "Pick at least one person to add."
            return None
        if None in picked:
            self.error = "Pick people from the list."
            return None
        ids = [i for i in picked if i is not None]
        conversations = get_runtime().conversations
        return await self._change(lambda p, cid: conversations.add_people(p, cid, ids))

    @rx.event
    async def remove_person(self, person_id: int):
        conversations = get_runtime().conversations
        return await self._change(lambda p, cid: conversations.remove_person(p, cid, person_id))

    @rx.event
    async def leave(self):
        conversations = get_runtime().conversations
        return await self._change(conversations.leave, stays=False)
