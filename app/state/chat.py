"""The chat page: conversations, the open conversation, the composer, who is typing."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import reflex as rx

from app import routes
from app.domain.conversations import ConversationView
from app.domain.errors import DomainError, RateLimited
from app.domain.principal import Principal
from app.runtime import get_runtime
from app.state import page_data, replies, tab_feed
from app.state.arguments import parse_id
from app.state.items import ConversationItem, MentionOption, MessageItem, conversation_item
from app.state.session import SessionState
from app.state.tab_feed import numbered

# Messages the rate limit may hold back in one tab before the next is refused.
MAX_HELD = 50

# Vars only the page's store writes (assets/live_store.js, from the tab's feed): declared
# here for the components, never set by the server (app/state/live_vars.py).
# The pane's view vars (assets/message_view.js writes them): how far the reader is from
# the newest message, and how long the composer's text is.
VIEW_VARS = (
    "unseen_below",
    "scrolled_up",
    "loading_older",
    "composer_length",
    # The composer's "@" (assets/mention_picker.js): the members it offers, and the chosen one.
    "mention_matches",
    "mention_index",
    # Whether this browser shows desktop notifications (assets/desktop_notify.js).
    "desktop_notify",
)
LIVE_VARS = (
    "conversations",
    "total_unread",
    "messages",
    "messages_of",
    "has_older",
    "typists",
    *VIEW_VARS,
)


@dataclasses.dataclass
class HeldMessage:
    """A message the rate limit held back: shown greyed until it goes out."""

    key: int
    conversation_id: int
    content: str


def too_fast(waiting: int, retry_after: float) -> str:
    seconds = max(1, round(retry_after))
    held = "1 message waits" if waiting == 1 else f"{waiting} messages wait"
    return f"You are sending messages too fast: {held}, the next goes out in {seconds} s."


class ChatState(rx.State):
    # -- live: written by the page's store only ------------------------------------
    conversations: rx.Field[list[ConversationItem]] = rx.field(default_factory=list)
    total_unread: int = 0
    # The open conversation's messages, oldest first, and which conversation they are of
    # (for a moment after a click, still the one before).
    messages: rx.Field[list[MessageItem]] = rx.field(default_factory=list)
    messages_of: int = 0
    has_older: bool = False
    # conversation id -> typist's user id -> {"name", "until" (when to forget them, epoch s)}
    typists: rx.Field[dict[str, dict[str, dict[str, Any]]]] = rx.field(default_factory=dict)
    # -- view: written by the page's message view only --------------------------------
    unseen_below: int = 0  # messages that arrived below while the reader was scrolled up
    scrolled_up: bool = False
    loading_older: bool = False
    composer_length: int = 0
    mention_matches: rx.Field[list[MentionOption]] = rx.field(default_factory=list)
    mention_index: int = 0
    desktop_notify: bool = False
    # -- this tab's own ------------------------------------------------------------
    active_id: int = 0
    active_name_parts: rx.Field[list[str]] = rx.field(default_factory=list)
    active_members: rx.Field[list[str]] = rx.field(default_factory=list)
    # The open conversation's usernames: mentions of them are highlighted, and offered.
    active_usernames: rx.Field[list[str]] = rx.field(default_factory=list)
    active_people: rx.Field[list[MentionOption]] = rx.field(default_factory=list)
    composer_error: str = ""
    sending: bool = False
    new_conversation_error: str = ""
    new_conversation_open: bool = False
    # The first message that was unread when the conversation opened: "New messages" above.
    unread_from_id: int = 0
    # The sender's own message being edited here, and the one whose deletion awaits a yes.
    editing_id: int = 0
    edit_error: str = ""
    deleting_id: int = 0
    # Sent in order once the rate limit allows it (send_held): nothing typed is lost.
    held: rx.Field[list[HeldMessage]] = rx.field(default_factory=list)
    _held_serial: int = 0
    _sending_held: bool = False
    _typing_sent_at: float = 0.0

    # -- helpers ---------------------------------------------------------------------

    async def _principal(self) -> Principal | None:
        session = await self.get_state(SessionState)
        return await session._principal()

    def _close(self) -> None:
        self.active_id = 0
        self.active_name_parts = []
        self.active_members = []
        self.active_usernames = []
        self.active_people = []
        self.unread_from_id = 0
        self.editing_id = self.deleting_id = 0
        link = tab_feed.links.get(self.router.session.client_token)
        if link is not None:
            link.watching = 0

    # -- events ----------------------------------------------------------------------

    @rx.event
    async def open_conversation(self, conversation_id: int):
        return await self._open(conversation_id)

    @rx.event
    async def open_message(self, conversation_id: int, message_id: int):
        """A search result or a notification: the conversation, scrolled to the message."""
        return await self._open(conversation_id, focus=message_id)

    @rx.event
    async def open_linked(self):
        """The chat page's on_load: a link "/?c=12&m=345" opens conversation 12 at message
        345 (the use case checks it is the caller's), then the address is plain "/" again."""
        link = f"{self.router.url.path}?{self.router.url.query}"
        conversation_id = routes.conversation_in_link(link)
        if conversation_id is None or await self._principal() is None:
            return None  # signed out, require_session sends the tab to sign in
        opened = await self._open(conversation_id, focus=routes.message_in_link(link) or 0)
        plain = rx.call_script(f"window.history.replaceState(null, '', {routes.CHAT!r})")
        return [opened, plain] if opened is not None else plain

    async def _open(self, conversation_id: int, *, focus: int = 0):
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
        self.active_id = conversation_id
        self._show_header(view, principal)
        # Newest first: the unread ones are the first `unread_count` of the page.
        unread = page.items[: view.unread_count]
        self.unread_from_id = unread[-1].id if unread else 0
        self.editing_id = self.deleting_id = 0
        self.composer_error = ""
        link = tab_feed.links.get(self.router.session.client_token)
        if link is not None:
            link.watching = conversation_id
        # Before this handler's own delta: the messages are there when active_id changes.
        history = page_data.history(conversation_id, page, principal.user_id, focus=focus)
        # The page's message view scrolls to the newest when the history arrives.
        await tab_feed.push_to_tab(self.router.session.session_id, [numbered("history", history)])
        return None

    @rx.event
    async def refresh_conversation(self):
        """The store heard the open conversation changed (chat:conversation): its header
        as it now is, or closed if the caller is no longer in it."""
        if not self.active_id:
            return None
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        try:
            view = await get_runtime().conversations.get(principal, self.active_id)
        except DomainError:
            self._close()
            return rx.toast.info("You are no longer in that conversation.")
        self._show_header(view, principal)
        return None

    def _show_header(self, view: ConversationView, principal: Principal) -> None:
        item = conversation_item(view, principal.user_id)
        self.active_name_parts = item.name_parts
        self.active_members = item.members
        self.active_usernames = [p.username for p in view.participants]
        self.active_people = [
            MentionOption(p.username, p.display_name)
            for p in view.participants
            if p.id != principal.user_id
        ]

    @rx.event
    def close_conversation(self) -> None:
        self._close()

    @rx.event
    async def load_older(self, before: int):
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
    async def send(self, form_data: dict[str, Any]):
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
        if len(self.held) >= MAX_HELD:
            # Held in this tab's state: a bound, like every queue here. The text stays.
            self.composer_error = (
                f"{len(self.held)} messages are waiting to go out already: send this one "
                "when they have."
            )
            yield rx.set_value("composer", content)
            return
        if self.held:
            # Behind those already waiting, so they all go out in the order they were typed.
            self._hold(self.active_id, content)
            return
        self.sending = True
        self.composer_error = ""
        yield
        try:
            # Shown when its chat:message comes back, as in every other tab of ours.
            await get_runtime().messages.send(principal, self.active_id, content)
        except RateLimited as exc:
            self._hold(self.active_id, content)
            self.composer_error = too_fast(len(self.held), exc.retry_after)
            yield ChatState.send_held
        except DomainError as exc:
            self.composer_error = exc.message
            # Give the text back: nothing was sent.
            yield rx.set_value("composer", content)
        finally:
            self.sending = False
            self._typing_sent_at = 0.0

    def _hold(self, conversation_id: int, content: str) -> None:
        self._held_serial += 1
        self.held = [*self.held, HeldMessage(self._held_serial, conversation_id, content)]

    @rx.event(background=True)
    async def send_held(self):
        """The held messages, oldest first, each as soon as the rate limit lets it go."""
        async with self:
            if self._sending_held or not self.held:
                return
            self._sending_held = True
        try:
            while True:
                async with self:
                    if not self.held:
                        self.composer_error = ""
                        return
                    first = self.held[0]
                    principal = await self._principal()
                if principal is None:
                    async with self:
                        self.held = []
                    yield replies.signed_out()
                    return
                try:
                    await get_runtime().messages.send(
                        principal, first.conversation_id, first.content
                    )
                except RateLimited as exc:
                    async with self:
                        self.composer_error = too_fast(len(self.held), exc.retry_after)
                    await asyncio.sleep(max(0.2, exc.retry_after))
                    continue
                except DomainError as exc:
                    async with self:
                        self.held = self.held[1:]
                        self.composer_error = f"Not sent: {exc.message}"
                    continue
                async with self:
                    self.held = self.held[1:]
        finally:
            async with self:
                self._sending_held = False

    @rx.event
    async def typed(self, key: str):
        """Any key in the composer: tell the others, at most every few seconds."""
        if key == "Enter" or not self.active_id:
            return
        now = time.monotonic()
        if now - self._typing_sent_at < get_runtime().settings.typing_repeat_seconds:
            return
        self._typing_sent_at = now
        await self._set_typing(True)

    @rx.event
    async def stopped_typing(self):
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

    # -- editing and deleting one's own messages --------------------------------------

    @rx.event
    def start_editing(self, message_id: int) -> None:
        """Shows the edit box in place of a message of the page's; saving checks it is the
        caller's own."""
        self.editing_id = message_id
        self.edit_error = ""

    @rx.event
    def stop_editing(self) -> None:
        self.editing_id = 0
        self.edit_error = ""

    @rx.event
    async def save_edit(self, form_data: dict[str, Any]):
        content = form_data.get("content", "")
        if not self.editing_id or not self.active_id:
            return None
        if not isinstance(content, str) or not content.strip():
            self.edit_error = "A message cannot be empty: delete it instead."
            return None
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        try:
            # Shown when its chat:message-updated comes back, in every tab alike.
            await get_runtime().messages.edit(principal, self.active_id, self.editing_id, content)
        except DomainError as exc:
            self.edit_error = exc.message
            return None
        self.editing_id = 0
        self.edit_error = ""
        return None

    @rx.event
    def ask_delete(self, message_id: int) -> None:
        """Asks for a yes first; deleting checks the message is the caller's own."""
        self.deleting_id = message_id

    @rx.event
    def cancel_delete(self) -> None:
        self.deleting_id = 0

    @rx.event
    async def delete_message(self):
        message_id, self.deleting_id = self.deleting_id, 0
        if not message_id or not self.active_id:
            return None
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        try:
            await get_runtime().messages.delete(principal, self.active_id, message_id)
        except DomainError as exc:
            return replies.refused(exc.message)
        return None

    @rx.event
    def show_new_conversation(self, show: bool) -> None:
        """The dialog opens with no error left from last time."""
        self.new_conversation_open = show is True
        self.new_conversation_error = ""

    @rx.event
    async def start_conversation(self, form_data: dict[str, Any]):
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        picked = [
            key.removeprefix("person-")
            for key, on in form_data.items()
            if key.startswith("person-") and on in ("on", True, "true")
        ]
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
        self.new_conversation_open = False
        item = dataclasses.asdict(conversation_item(view, principal.user_id))
        await tab_feed.push_to_tab(self.router.session.session_id, [numbered("conversation", item)])
        return ChatState.open_conversation(view.id)  # type: ignore[operator]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
