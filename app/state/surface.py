"""The websocket event surface, declared like the REST routes are.

Reflex makes every public method of every State an event handler that any websocket client
may call by name, with arguments of its choosing. This is the one
list of what a client may call: each handler Reflex registers is here, with who may call it
and why, or is refused at the socket (app/state/gate.py) before Reflex looks it up.
tests/test_event_surface.py fails when Reflex's registry and this list disagree, so a new
handler is a reviewed change to this file, as a new route is.

Rule for every handler that is allowed: it learns who is calling from the session
(`SessionState._principal`, the cookie or the token this tab signed in with), never from its
arguments; arguments only name things (a conversation, a notification), and the use case
checks that the caller may see them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache

import reflex as rx
from reflex.istate.shared import SharedStateBaseInternal
from reflex.state import (
    FrontendEventExceptionState,
    OnLoadInternalState,
    State,
    UpdateVarsInternalState,
)

from app.state.arguments import Parameter, parameters_of
from app.state.chat import ChatState
from app.state.conversation_settings import ConversationSettingsState
from app.state.live import LiveState
from app.state.notifications import NotificationState
from app.state.presence import PresenceState
from app.state.search import SearchState
from app.state.session import SessionState
from app.state.tab_feed import FeedState


class Caller(enum.Enum):
    ANYONE = "anyone, signed in or not"
    # Signed out, a handler that would read or change something says "sign in again";
    # one with nothing to do (no conversation open) returns quietly.
    SIGNED_IN = "a signed-in user, as the session says"
    NOBODY = "nobody: refused at the socket"


@dataclass(frozen=True, slots=True)
class Entry:
    state: type[rx.State]
    handler: str
    caller: Caller
    why: str

    @property
    def event_name(self) -> str:
        """The name a page sends: `<state full name>.<handler>`."""
        return f"{self.state.get_full_name()}.{self.handler}"


_SETVAR = (
    "Reflex gives every state a `setvar`; with state_auto_setters=False it can set nothing "
    "and raises AttributeError for any name, and no page of ours sends it"
)

SURFACE: tuple[Entry, ...] = (
    # -- the chat page ---------------------------------------------------------------
    Entry(
        ChatState,
        "open_conversation",
        Caller.SIGNED_IN,
        "click on a conversation; the history use case refuses one the caller is not in",
    ),
    Entry(
        ChatState,
        "open_message",
        Caller.SIGNED_IN,
        "a search result or a notification's link; opens the conversation as "
        "open_conversation does, and the page scrolls to the message if it is in it",
    ),
    Entry(
        ChatState,
        "open_linked",
        Caller.ANYONE,
        "on_load of the chat page: a link's ?c= (and &m=) opens that conversation, as "
        "open_message does; signed out, it does nothing (require_session redirects)",
    ),
    Entry(
        ChatState,
        "close_conversation",
        Caller.ANYONE,
        "the back button on a phone; clears this tab's own view and reads nothing",
    ),
    Entry(
        ChatState,
        "load_older",
        Caller.SIGNED_IN,
        "the 'older messages' button; pages back, before a message id the page names, in "
        "the conversation this tab opened (the history use case checks it is the caller's)",
    ),
    Entry(
        ChatState,
        "reload_conversations",
        Caller.ANYONE,
        "the page's store met a conversation it does not list; asks this tab's own "
        "listener, which serves only its signed-in user, for a fresh snapshot",
    ),
    Entry(
        ChatState,
        "send",
        Caller.SIGNED_IN,
        "the composer; sends to the conversation this tab opened, as the session's user",
    ),
    Entry(
        ChatState,
        "send_held",
        Caller.SIGNED_IN,
        "chained by send after a rate-limit refusal; sends this tab's own held messages, "
        "as the session's user, to conversations the use case checks are the caller's",
    ),
    Entry(
        ChatState,
        "typed",
        Caller.SIGNED_IN,
        "key presses in the composer; announces typing in the conversation this tab opened",
    ),
    Entry(ChatState, "stopped_typing", Caller.SIGNED_IN, "the composer lost focus or was sent"),
    Entry(
        ChatState,
        "start_editing",
        Caller.ANYONE,
        "a message's edit button; shows this tab's edit box for a message it already shows, "
        "reads and changes nothing",
    ),
    Entry(ChatState, "stop_editing", Caller.ANYONE, "the edit box's Cancel; this tab's own view"),
    Entry(
        ChatState,
        "save_edit",
        Caller.SIGNED_IN,
        "the edit box's Save; the use case refuses a message that is not the caller's own, "
        "in the conversation this tab opened",
    ),
    Entry(
        ChatState,
        "ask_delete",
        Caller.ANYONE,
        "a message's delete button; opens this tab's confirmation, reads nothing",
    ),
    Entry(ChatState, "cancel_delete", Caller.ANYONE, "the confirmation's Cancel"),
    Entry(
        ChatState,
        "delete_message",
        Caller.SIGNED_IN,
        "the confirmation's Delete; the use case refuses a message that is not the caller's "
        "own, in the conversation this tab opened",
    ),
    Entry(
        ChatState,
        "show_new_conversation",
        Caller.ANYONE,
        "opens or closes this tab's new-conversation dialog; reads nothing",
    ),
    Entry(
        ChatState,
        "start_conversation",
        Caller.SIGNED_IN,
        "the new-conversation dialog; the use case refuses people outside the caller's tenant",
    ),
    Entry(
        ChatState,
        "refresh_conversation",
        Caller.SIGNED_IN,
        "the page's store heard the open conversation changed; reads it again for the "
        "session's user (closed if no longer theirs)",
    ),
    Entry(
        ConversationSettingsState,
        "show",
        Caller.SIGNED_IN,
        "the header's settings button; reads the conversation this tab opened, which the "
        "use case checks is the caller's",
    ),
    Entry(
        ConversationSettingsState,
        "rename",
        Caller.SIGNED_IN,
        "the settings' Rename; the use case checks the caller takes part, groups only",
    ),
    Entry(
        ConversationSettingsState,
        "add_people",
        Caller.SIGNED_IN,
        "the settings' Add; the use case refuses people outside the caller's tenant",
    ),
    Entry(
        ConversationSettingsState,
        "remove_person",
        Caller.SIGNED_IN,
        "the settings' Remove; the use case checks the caller takes part, groups only",
    ),
    Entry(
        ConversationSettingsState,
        "leave",
        Caller.SIGNED_IN,
        "the settings' Leave, for the session's own user",
    ),
    Entry(
        NotificationState,
        "mark_read",
        Caller.SIGNED_IN,
        "a click on a notification; the use case refuses one that is not the caller's",
    ),
    Entry(
        NotificationState,
        "open_notification",
        Caller.SIGNED_IN,
        "a click on a notification; the use case refuses one that is not the caller's, and "
        "the link followed is the stored one, never one the page names",
    ),
    Entry(NotificationState, "mark_all_read", Caller.SIGNED_IN, "the bell's 'mark all read'"),
    Entry(
        SearchState,
        "search",
        Caller.SIGNED_IN,
        "the search box; the use case searches the caller's own conversations in the "
        "session's tenant only",
    ),
    Entry(SearchState, "clear_search", Caller.ANYONE, "closes this tab's results"),
    Entry(
        PresenceState,
        "activity",
        Caller.SIGNED_IN,
        "throttled mouse moves: keeps the session's user from idling",
    ),
    Entry(PresenceState, "toggle_away", Caller.SIGNED_IN, "the user menu's away switch"),
    Entry(
        LiveState,
        "listen",
        Caller.SIGNED_IN,
        "the chat page's on_load: this tab as a client of the connection manager",
    ),
    Entry(
        LiveState,
        "show_event_log",
        Caller.ANYONE,
        "the user menu's event log: this tab's own last events, already delivered to it",
    ),
    Entry(LiveState, "hide_event_log", Caller.ANYONE, "closes this tab's event log"),
    # -- the session -----------------------------------------------------------------
    Entry(
        SessionState,
        "sign_in",
        Caller.ANYONE,
        "the sign-in form; the use case checks the password and throttles failures",
    ),
    Entry(
        SessionState,
        "sign_out",
        Caller.ANYONE,
        "the user menu; revokes the session's own token, if there is one",
    ),
    Entry(
        SessionState,
        "switch_tenant",
        Caller.SIGNED_IN,
        "the workspace picker; the use case refuses a tenant the caller is not a member of",
    ),
    Entry(
        SessionState,
        "refresh_workspaces",
        Caller.ANYONE,
        "the workspace switcher opened; counts the session's own user's unread messages in "
        "their other workspaces; signed out, nothing",
    ),
    Entry(
        SessionState,
        "require_session",
        Caller.ANYONE,
        "on_load of the chat page: signed out, it sends the tab to the sign-in page",
    ),
    Entry(
        SessionState,
        "skip_login_if_signed_in",
        Caller.ANYONE,
        "on_load of the sign-in page: signed in, it sends the tab to the chat page",
    ),
    # -- Reflex's own ------------------------------------------------------------------
    Entry(
        State,
        "hydrate_and_load",
        Caller.ANYONE,
        "Reflex: every page's first event (in the socket's CONNECT packet): sends the "
        "tab's own state and queues the page's on_load handlers",
    ),
    Entry(
        OnLoadInternalState,
        "on_load_internal",
        Caller.ANYONE,
        "Reflex: sent on each client-side navigation; queues that page's on_load handlers",
    ),
    Entry(
        UpdateVarsInternalState,
        "update_vars_internal",
        Caller.ANYONE,
        "Reflex: the page's cookies and local storage; sets client-storage vars only, and "
        "this app has none",
    ),
    Entry(
        FrontendEventExceptionState,
        "handle_frontend_exception",
        Caller.ANYONE,
        "Reflex: the page reports a JavaScript error; app/state/handler_errors.py logs it "
        "as a warning, bounded (any client can send one)",
    ),
    Entry(
        State,
        "hydrate",
        Caller.NOBODY,
        "Reflex runs it itself inside hydrate_and_load; pages of 0.10 never send it",
    ),
    Entry(
        State,
        "set_is_hydrated",
        Caller.NOBODY,
        "Reflex chains it itself after the on_load handlers; pages never send it",
    ),
    Entry(
        OnLoadInternalState,
        "set_is_hydrated",
        Caller.NOBODY,
        "Reflex chains it itself from on_load_internal; pages never send it",
    ),
    # -- setvar, on every state ---------------------------------------------------------
    *(
        Entry(state, "setvar", Caller.NOBODY, _SETVAR)
        for state in (
            State,
            ChatState,
            NotificationState,
            PresenceState,
            LiveState,
            SessionState,
            SearchState,
            ConversationSettingsState,
            FeedState,
            OnLoadInternalState,
            UpdateVarsInternalState,
            FrontendEventExceptionState,
            SharedStateBaseInternal,
        )
    ),
)


@dataclass(frozen=True, slots=True)
class Allowed:
    entry: Entry
    parameters: tuple[Parameter, ...]


@cache
def allowed() -> dict[str, Allowed]:
    """Event name -> what a client may call under it, with the handler's parameters.

    Built on first use (the states are all defined by then); a handler whose parameters a
    client cannot be trusted to fill in fails here, at start-up, not when it is called."""
    return {
        entry.event_name: Allowed(
            entry, parameters_of(entry.state.event_handlers[entry.handler].fn)
        )
        for entry in SURFACE
        if entry.caller is not Caller.NOBODY
    }
