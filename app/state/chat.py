"""The chat page: conversations, the open conversation, the composer, who is typing."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import reflex as rx

from app.domain.errors import DomainError
from app.domain.messages import HistoryPage
from app.domain.principal import Principal
from app.runtime import get_runtime
from app.state import replies
from app.state.arguments import parse_id
from app.state.items import (
    ConversationItem,
    MessageItem,
    conversation_item,
    message_item,
    with_new_message,
)
from app.state.session import SessionState

HISTORY_PAGE = 30
# A receiver forgets a typist it has not heard from for this long, whatever the server says.
TYPING_FORGET_SECONDS = 10.0
# This tab tells the server "still typing" at most this often.
TYPING_REPEAT_SECONDS = 2.5


class ChatState(rx.State):
    conversations: list[ConversationItem] = []
    total_unread: int = 0
    active_id: int = 0
    messages: list[MessageItem] = []
    has_older: bool = False
    composer_error: str = ""
    sending: bool = False
    # conversation id -> typist name -> when to forget them (time.time())
    typists: dict[str, dict[str, float]] = {}
    new_conversation_error: str = ""
    _typing_sent_at: float = 0.0
    # Set when an event names a conversation this tab does not list yet (someone started
    # it with us): the live listener reloads the list.
    _list_is_stale: bool = False

    # -- derived ---------------------------------------------------------------------

    @rx.var
    def active(self) -> ConversationItem | None:
        return next((c for c in self.conversations if c.id == self.active_id), None)

    @rx.var
    def active_name(self) -> str:
        active = next((c for c in self.conversations if c.id == self.active_id), None)
        return active.name if active else ""

    @rx.var
    def active_name_parts(self) -> list[str]:
        active = next((c for c in self.conversations if c.id == self.active_id), None)
        return active.name_parts if active else []

    @rx.var
    def active_members(self) -> list[str]:
        active = next((c for c in self.conversations if c.id == self.active_id), None)
        return active.members if active else []

    @rx.var
    def typing_label(self) -> str:
        return typing_label(list(self.typists.get(str(self.active_id), {})))

    # -- helpers ---------------------------------------------------------------------

    async def _principal(self) -> Principal | None:
        session = await self.get_state(SessionState)
        return await session._principal()

    async def _load_snapshot(self, principal: Principal) -> None:
        runtime = get_runtime()
        views, total = await runtime.conversations.list_for(principal)
        self.conversations = [conversation_item(v, principal.user_id) for v in views]
        self.total_unread = total
        if self.active_id and not any(c.id == self.active_id for c in self.conversations):
            self.active_id = 0
        if self.active_id:
            await self._load_history(principal)

    async def _load_history(self, principal: Principal) -> None:
        page = await get_runtime().messages.history(
            principal, self.active_id, before=None, limit=HISTORY_PAGE
        )
        self._show_history(page, principal.user_id)

    def _show_history(self, page: HistoryPage, me: int) -> None:
        self.messages = [message_item(m.to_data(), me) for m in reversed(page.items)]
        self.has_older = page.has_more

    def _apply_event(self, event_type: str, data: dict[str, Any], me: int) -> bool:
        """Apply one stream event; True when the open conversation got a new message
        (the caller then marks it read). Idempotent: a replayed event changes nothing."""
        if event_type == "chat:message":
            return self._apply_message(message_item(data["message"], me))
        if event_type == "chat:unread-count":
            self.total_unread = data["total"]
            self.conversations = [
                _with_unread(c, data["count"]) if c.id == data["conversationId"] else c
                for c in self.conversations
            ]
        elif event_type == "chat:typing":
            key = str(data["conversationId"])
            typists = dict(self.typists.get(key, {}))
            if data["isTyping"]:
                typists[data["userName"]] = time.time() + TYPING_FORGET_SECONDS
            else:
                typists.pop(data["userName"], None)
            self.typists = {**self.typists, key: typists}
        return False

    def _apply_message(self, message: MessageItem) -> bool:
        known = [c for c in self.conversations if c.id == message.conversation_id]
        if known and known[0].last_message_id >= message.id:
            return False  # already shown (snapshot taken after the event was queued)
        others = [c for c in self.conversations if c.id != message.conversation_id]
        if known:
            self.conversations = [with_new_message(known[0], message), *others]
        else:
            self._list_is_stale = True
        # The typist whose message arrived has stopped typing.
        key = str(message.conversation_id)
        if message.sender_name in self.typists.get(key, {}):
            typists = dict(self.typists[key])
            typists.pop(message.sender_name, None)
            self.typists = {**self.typists, key: typists}
        if message.conversation_id != self.active_id:
            return False
        if any(m.id == message.id for m in self.messages):
            return False
        self.messages = [*self.messages, message]
        return not message.mine

    def _forget_silent_typists(self) -> None:
        now = time.time()
        if any(t <= now for typists in self.typists.values() for t in typists.values()):
            self.typists = {
                key: {name: t for name, t in typists.items() if t > now}
                for key, typists in self.typists.items()
            }

    async def _reload_list_if_stale(self, principal: Principal) -> None:
        if self._list_is_stale:
            self._list_is_stale = False
            views, total = await get_runtime().conversations.list_for(principal)
            self.conversations = [conversation_item(v, principal.user_id) for v in views]
            self.total_unread = total

    # -- events ----------------------------------------------------------------------

    @rx.event
    async def open_conversation(self, conversation_id: int):  # type: ignore[no-untyped-def]
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        try:
            # Read first, then show: the tab never holds an id the caller may not see.
            page = await get_runtime().messages.history(
                principal, conversation_id, before=None, limit=HISTORY_PAGE
            )
            await get_runtime().messages.mark_read(principal, conversation_id)
        except DomainError as exc:
            self.active_id = 0
            self.messages = []
            return replies.refused(exc.message)
        self.active_id = conversation_id
        self.composer_error = ""
        self._show_history(page, principal.user_id)
        return rx.call_script(_SCROLL_TO_END)

    @rx.event
    def close_conversation(self) -> None:
        self.active_id = 0
        self.messages = []

    @rx.event
    async def load_older(self):  # type: ignore[no-untyped-def]
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        if not self.active_id or not self.messages:
            return None
        # A DomainError (say, the conversation went away) becomes a toast: handler_errors.py.
        page = await get_runtime().messages.history(
            principal, self.active_id, before=self.messages[0].id, limit=HISTORY_PAGE
        )
        older = [message_item(m.to_data(), principal.user_id) for m in reversed(page.items)]
        self.messages = [*older, *self.messages]
        self.has_older = page.has_more
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
            sent = await get_runtime().messages.send(principal, self.active_id, content)
        except DomainError as exc:
            self.composer_error = exc.message
            # Give the text back: nothing was sent.
            yield rx.set_value("composer", content)
            return
        finally:
            self.sending = False
            self._typing_sent_at = 0.0
        self._apply_message(message_item(sent.message.to_data(), principal.user_id))
        yield rx.call_script(_SCROLL_TO_END)

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
        item = conversation_item(view, principal.user_id)
        if not any(c.id == item.id for c in self.conversations):
            self.conversations = [item, *self.conversations]
        return ChatState.open_conversation(item.id)


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


def _with_unread(item: ConversationItem, count: int) -> ConversationItem:
    return dataclasses.replace(item, unread_count=count)


_SCROLL_TO_END = (
    "setTimeout(() => { const el = document.getElementById('message-list');"
    " if (el) el.scrollTop = el.scrollHeight; }, 50)"
)
