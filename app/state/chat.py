"""The chat page: conversations, the open conversation, the composer, who is typing."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import reflex as rx

from app.domain.errors import DomainError
from app.domain.principal import Principal
from app.runtime import get_runtime
from app.state import page_data, replies, tab_feed
from app.state.arguments import parse_id
from app.state.items import ConversationItem, MessageItem, conversation_item
from app.state.session import SessionState
from app.state.tab_feed import numbered

# This tab tells the server "still typing" at most this often.
TYPING_REPEAT_SECONDS = 2.5

# Vars only the page's store writes (assets/live_store.js, from the tab's feed): declared
# here for the components, never set by the server (app/state/live_vars.py).
LIVE_VARS = ("conversations", "total_unread", "messages", "messages_of", "has_older", "typists")


class ChatState(rx.State):
    # -- live: written by the page's store only ------------------------------------
    conversations: list[ConversationItem] = []
    total_unread: int = 0
    # The open conversation's messages, oldest first, and which conversation they are of
    # (for a moment after a click, still the one before).
    messages: list[MessageItem] = []
    messages_of: int = 0
    has_older: bool = False
    # conversation id -> typist name -> when to forget them (epoch seconds)
    typists: dict[str, dict[str, float]] = {}
    # -- this tab's own ------------------------------------------------------------
    active_id: int = 0
    active_name_parts: list[str] = []
    active_members: list[str] = []
    composer_error: str = ""
    sending: bool = False
    new_conversation_error: str = ""
    _typing_sent_at: float = 0.0

    # -- helpers ---------------------------------------------------------------------

    async def _principal(self) -> Principal | None:
        session = await self.get_state(SessionState)
        return await session._principal()

    def _close(self) -> None:
        self.active_id = 0
        self.active_name_parts = []
        self.active_members = []
        link = tab_feed.links.get(self.router.session.client_token)
        if link is not None:
            link.watching = 0

    # -- events ----------------------------------------------------------------------

    @rx.event
    async def open_conversation(self, conversation_id: int):  # type: ignore[no-untyped-def]
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        runtime = get_runtime()
        try:
            # Read first, then show: the tab never holds an id the caller may not see.
            view = await runtime.conversations.get(principal, conversation_id)
            page = await runtime.messages.history(
                principal, conversation_id, before=None, limit=page_data.HISTORY_PAGE
            )
            await runtime.messages.mark_read(principal, conversation_id)
        except DomainError as exc:
            self._close()
            return replies.refused(exc.message)
        item = conversation_item(view, principal.user_id)
        self.active_id = conversation_id
        self.active_name_parts = item.name_parts
        self.active_members = item.members
        self.composer_error = ""
        link = tab_feed.links.get(self.router.session.client_token)
        if link is not None:
            link.watching = conversation_id
        # Before this handler's own delta: the messages are there when active_id changes.
        history = page_data.history(conversation_id, page, principal.user_id)
        await tab_feed.push_to_tab(self.router.session.session_id, [numbered("history", history)])
        return rx.call_script(_SCROLL_TO_END)

    @rx.event
    def close_conversation(self) -> None:
        self._close()

    @rx.event
    async def load_older(self, before: int):  # type: ignore[no-untyped-def]
        """The page before message `before` (the oldest the tab shows) of the open one."""
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        if not self.active_id:
            return None
        # A DomainError (say, the conversation went away) becomes a toast: handler_errors.py.
        page = await get_runtime().messages.history(
            principal, self.active_id, before=before, limit=page_data.HISTORY_PAGE
        )
        older = page_data.history(self.active_id, page, principal.user_id, older=True)
        await tab_feed.push_to_tab(self.router.session.session_id, [numbered("history", older)])
        return None

    @rx.event
    async def send(self, form_data: dict[str, Any]):  # type: ignore[no-untyped-def]
        content = form_data.get("content", "")
        if not isinstance(content, str) or not content.strip():
            self.composer_error = "Type a message first."
            return
        principal = await self._principal()
        if principal is None:
            yield replies.signed_out()
            return
        if not self.active_id:
            self.composer_error = "Open a conversation first."
            return
        self.sending = True
        self.composer_error = ""
        yield
        try:
            # Shown when its chat:message comes back, as in every other tab of ours.
            await get_runtime().messages.send(principal, self.active_id, content)
        except DomainError as exc:
            self.composer_error = exc.message
            # Give the text back: nothing was sent.
            yield rx.set_value("composer", content)
            return
        finally:
            self.sending = False
            self._typing_sent_at = 0.0

    @rx.event
    async def typed(self, key: str):  # type: ignore[no-untyped-def]
        """Any key in the composer: tell the others, at most every few seconds."""
        if key == "Enter" or not self.active_id:
            return
        now = time.monotonic()
        if now - self._typing_sent_at < TYPING_REPEAT_SECONDS:
            return
        self._typing_sent_at = now
        await self._set_typing(True)

    @rx.event
    async def stopped_typing(self):  # type: ignore[no-untyped-def]
        if self._typing_sent_at and self.active_id:
            self._typing_sent_at = 0.0
            await self._set_typing(False)

    async def _set_typing(self, is_typing: bool) -> None:
        principal = await self._principal()
        if principal is None:
            return
        runtime = get_runtime()
        runtime.presence.touch(principal)
        try:
            await runtime.typing.set_typing(principal, self.active_id, is_typing)
        except DomainError:
            pass  # typing is a courtesy: a refused update is not worth bothering anyone

    @rx.event
    def reload_conversations(self) -> None:
        """The page's store met a conversation it does not list (someone started it with
        us): the tab's listener sends a fresh snapshot, in order with its events."""
        link = tab_feed.links.get(self.router.session.client_token)
        if link is not None and link.alive():
            link.want_snapshot()

    @rx.event
    async def start_conversation(self, form_data: dict[str, Any]):  # type: ignore[no-untyped-def]
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        picked = [key.removeprefix("person-") for key, on in form_data.items()
                  if key.startswith("person-") and on in ("on", True, "true")]
        ids = [parse_id(text) for text in picked]
        title = form_data.get("title") or ""
        if not isinstance(title, str):
            self.new_conversation_error = "The title must be text."
            return None
        if not ids:
            self.new_conversation_error = "Pick at least one person."
            return None
        if None in ids:
            # Only a hand-made request names someone other than by their id.
            self.new_conversation_error = "Pick people from the list."
            return None
        try:
            view, _ = await get_runtime().conversations.create(
                principal, [i for i in ids if i is not None], title.strip() or None
            )
        except DomainError as exc:
            self.new_conversation_error = exc.message
            return None
        self.new_conversation_error = ""
        item = dataclasses.asdict(conversation_item(view, principal.user_id))
        await tab_feed.push_to_tab(self.router.session.session_id, [numbered("conversation", item)])
        return ChatState.open_conversation(view.id)


def typing_label(names: list[str]) -> str:
    """"Bob is typing…", "Bob and Carol are typing…", "Several people are typing…"."""
    names = sorted(names)
    if not names:
        return ""
    if len(names) == 1:
        return f"{names[0]} is typing…"
    if len(names) == 2:
        return f"{names[0]} and {names[1]} are typing…"
    return "Several people are typing…"


_SCROLL_TO_END = (
    "setTimeout(() => { const el = document.getElementById('message-list');"
    " if (el) el.scrollTop = el.scrollHeight; }, 50)"
)
