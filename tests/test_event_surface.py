"""The Reflex websocket event surface, declared and attacked like the REST surface.

Issue 13, items 1 and 8: any websocket client can call any event handler of any State by
name, with arguments of its choosing. What holds here:

- every handler in Reflex's own registry is declared in app/state/surface.py (who may call
  it, why), and the socket refuses everything else quietly;
- no handler takes its caller from its arguments: the session says who is calling;
- each allowed handler, called over a real websocket signed out, as Globex's erin with Acme's
  ids, and with wrongly typed or oversized arguments, sends nothing of Acme, tells the user
  something readable, and leaves no traceback in the server log (the `backend` fixture fails
  a test on any ERROR or Traceback line). The same calls by an Acme member do show the Acme
  data: the absence means something.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
import reflex as rx
from reflex_base.registry import RegistrationContext

import app.app
from app.domain.errors import NotFound
from app.domain.principal import Principal
from app.state import replies
from app.state.arguments import BadArguments, parameters_of, parse_arguments, parse_value
from app.state.chat import ChatState
from app.state.conversation_settings import ConversationSettingsState
from app.state.handler_errors import backend_exception_handler, frontend_exception_handler
from app.state.items import MessageItem
from app.state.live import LiveState
from app.state.notifications import NotificationState
from app.state.presence import PresenceState
from app.state.search import SearchState
from app.state.session import SessionState
from app.state.surface import SURFACE, Caller, allowed
from tests.backend import Backend, bearer, cached_token
from tests.reflex_socket import ReflexTab, handler_name

GENERIC = "An error occurred"
REFUSED = "That did not work"
HUGE = "x" * 100_000

# -- Reflex's registry against the declared surface ---------------------------------------


def _walk(state: type[rx.State]) -> list[type[rx.State]]:
    """`state` and all its substates, through Reflex's own API."""
    found = [state]
    for substate in state.get_substates():
        # Reflex types substates as BaseState; a substate subclasses its parent, here rx.State.
        found.extend(_walk(cast(type[rx.State], substate)))
    return found


def _registered() -> set[tuple[type[rx.State], str]]:
    return {(state, name) for state in _walk(rx.State) for name in state.event_handlers}


def _undeclared(
    registered: set[tuple[type[rx.State], str]], declared: set[tuple[type[rx.State], str]]
) -> list[str]:
    return sorted(f"{state.__name__}.{name}" for state, name in registered - declared)


def test_every_handler_reflex_registers_is_declared_on_the_surface() -> None:
    registered = _registered()
    declared = {(entry.state, entry.handler) for entry in SURFACE}
    assert len(declared) == len(SURFACE), "an entry is declared twice"
    assert not _undeclared(registered, declared), "handlers missing from app/state/surface.py"
    assert not _undeclared(declared, registered), "surface entries Reflex does not register"
    # The walk sees everything the event processor dispatches to: nothing hides outside it.
    dispatched = set(RegistrationContext.get().event_handlers)
    assert dispatched == {f"{state.get_full_name()}.{name}" for state, name in registered}
    for entry in SURFACE:
        assert len(entry.why) > 20, f"{entry.state.__name__}.{entry.handler}: say why"


def test_the_surface_check_names_a_handler_that_is_not_declared() -> None:
    declared = {(entry.state, entry.handler) for entry in SURFACE}
    registered = _registered() | {(ChatState, "export_everything")}
    assert _undeclared(registered, declared) == ["ChatState.export_everything"]


IDENTITY_NAMES = {"principal", "user", "user_id", "caller", "token", "auth_token", "session"}


def test_no_handler_takes_its_caller_from_its_arguments() -> None:
    """Arguments only name things; who is calling comes from the session (the signed-out and
    cross-tenant tests below show it from the outside). `allowed()` already refused any
    parameter type a client would have Reflex build (the next test)."""
    for name, entry in allowed().items():
        for param in entry.parameters:
            assert param.name not in IDENTITY_NAMES, f"{name} takes {param.name}"


class _Forged:
    """Handlers that would let a client fill in who it is: refused at declaration."""

    async def as_principal(self, principal: Principal) -> None: ...

    async def as_dataclass(self, item: MessageItem) -> None: ...

    async def as_anything(self, **kwargs: Any) -> None: ...


@pytest.mark.parametrize("method", ["as_principal", "as_dataclass", "as_anything"])
def test_a_handler_cannot_declare_a_parameter_a_client_would_build(method: str) -> None:
    with pytest.raises(TypeError):
        parameters_of(getattr(_Forged, method))


# -- the argument parser, in process ---------------------------------------------------

_INT_BAD: list[Any] = [
    "person-abc",
    10**30,
    -(10**30),
    1.5,
    float("nan"),
    float("inf"),
    [1],
    {"id": 1},
    None,
    "\ud800",
    "9" * 100_000,
    True,
]
_STR_BAD: list[Any] = [10**30, 5, ["x"], {"x": "y"}, None, "\ud800", HUGE, True]
_DICT_BAD: list[Any] = [
    "person-abc",
    10**30,
    -1,
    [1],
    "\ud800",
    {"content": "\ud800"},
    {"content": HUGE},
    {"\ud800": "on"},
    {"k" * 300: "on"},
    {"__reflex_form_data__": "junk"},
    {"__reflex_form_data__": [["only-a-name"]]},
    {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}},
    {"k": 10**30},
    {"k": float("inf")},
    {"k": b"bytes"},
    {f"k{i}": i for i in range(500)},
]
_LIST_BAD: list[Any] = ["x", [1], ["\ud800"], ["x"] * 1000, {"a": "b"}]


@pytest.mark.parametrize(
    ("annotation", "value"),
    [(int, v) for v in _INT_BAD]
    + [(str, v) for v in _STR_BAD]
    + [(dict[str, Any], v) for v in [*_DICT_BAD, None]]
    + [(list[str] | None, v) for v in _LIST_BAD],
)
def test_the_parser_refuses_what_does_not_fit_with_a_readable_reason(
    annotation: Any, value: Any
) -> None:
    with pytest.raises(BadArguments) as refused:
        parse_value(value, annotation, "thing")
    reason = str(refused.value)
    assert "thing" in reason and reason.endswith(".") and len(reason) < 120


def test_the_parser_takes_what_a_page_sends() -> None:
    assert parse_value("12", int, "id") == 12  # an HTML select's value
    assert parse_value(-1, int, "id") == -1  # well typed: the use case answers "no such"
    assert parse_value(None, list[str] | None, "hashes") is None
    form = {"__reflex_form_data__": [["content", "hi"], ["person-2", "on"], ["content", "yo"]]}
    assert parse_value(form, dict[str, Any], "form_data") == {"content": "yo", "person-2": "on"}
    params = parameters_of(ChatState.event_handlers["open_conversation"].fn)
    assert parse_arguments(params, {"conversation_id": 3}) == {"conversation_id": 3}
    for payload, reason in [
        ({}, "conversation_id is missing."),
        ({"conversation_id": 3, "principal": {}}, "unexpected argument"),
        ([3], "the arguments must be named."),
    ]:
        with pytest.raises(BadArguments, match=reason):
            parse_arguments(params, payload)


# -- what a raising handler leaves behind, in process ------------------------------------


def test_a_bug_in_a_handler_still_logs_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nothing: dict[str, object] = {}
    try:
        nothing["missing"]
    except KeyError as exc:
        bug = exc
    with caplog.at_level(logging.WARNING, logger="app.state.handler_errors"):
        reply = backend_exception_handler(bug)
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "Traceback" in caplog.text and "KeyError" in caplog.text
    assert replies.UNEXPECTED in str(reply)


def test_the_app_uses_these_handlers() -> None:
    assert app.app.app.backend_exception_handler is backend_exception_handler
    assert app.app.app.frontend_exception_handler is frontend_exception_handler


def test_a_use_case_refusal_is_a_toast_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="app.state.handler_errors"):
        reply = backend_exception_handler(NotFound("No such conversation."))
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "Traceback" not in caplog.text
    assert "No such conversation." in str(reply)


def test_a_page_error_report_is_one_bounded_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="app.state.handler_errors"):
        frontend_exception_handler(Exception("boom\nFake line\n" + HUGE))
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert "\n" not in record.getMessage() and len(record.getMessage()) < 2_200


# -- the real backend: Acme's data, and tabs --------------------------------------------


@dataclass(frozen=True)
class Acme:
    tenant_id: int
    team_id: int
    direct_id: int
    alice_id: int
    bob_notification_id: int
    notice: str  # a notification every Acme member got
    secret: str  # a team message old enough to be on the second page
    filler: str  # in each of the 30 newer ones
    oldest_filler_id: int  # where "load older" starts: the oldest message of the first page

    def markers(self) -> list[str]:
        """Text that only Acme's members may ever receive."""
        return [
            "Acme",
            "Alice",
            "Bob",
            "Welcome to the Acme team chat!",
            self.notice,
            self.secret,
            self.filler,
        ]


GLOBEX_MARKERS = ["Globex", "Dave", "Erin"]


@pytest.fixture(scope="module")
def acme(backend_process: Backend) -> Acme:
    tag = uuid.uuid4().hex[:8]
    url = backend_process.url
    alice = cached_token(backend_process, "alice")
    bob = cached_token(backend_process, "bob")
    with httpx.Client(base_url=url, timeout=30, headers=bearer(alice)) as http:
        me = http.get("/api/me").json()
        listing = http.get("/api/conversations").json()["items"]
        team = next(c["id"] for c in listing if c["title"] == "Acme team")
        direct = next(
            c["id"]
            for c in listing
            if c["kind"] == "direct"
            and {p["username"] for p in c["participants"]} == {"alice", "bob"}
        )
        secret, filler, notice = f"Acme plan {tag}", f"Acme filler {tag}", f"Acme notice {tag}"
        sent_ids = []
        for content in [secret] + [f"{filler} {i}" for i in range(30)]:
            sent = http.post(f"/api/conversations/{team}/messages", json={"content": content})
            assert sent.status_code == 201, sent.text
            sent_ids.append(sent.json()["id"])
        created = http.post(
            "/api/notifications", json={"tenant": True, "title": notice, "body": f"body {tag}"}
        )
        assert created.status_code == 201, created.text
    items = httpx.get(f"{url}/api/notifications", headers=bearer(bob), timeout=30).json()["items"]
    return Acme(
        tenant_id=me["tenantId"],
        team_id=team,
        direct_id=direct,
        alice_id=me["id"],
        bob_notification_id=next(n["id"] for n in items if n["title"] == notice),
        notice=notice,
        secret=secret,
        filler=filler,
        oldest_filler_id=sent_ids[1],
    )


def _forged_alice(acme: Acme) -> dict[str, Any]:
    """Finding 1's payload: the Principal Reflex used to build from a client's JSON."""
    return {
        "user_id": acme.alice_id,
        "username": "alice",
        "display_name": "Alice",
        "tenant_id": acme.tenant_id,
        "token_id": 1,
        "expires_at": datetime(2099, 1, 1, tzinfo=UTC).isoformat(),
        "memberships": [
            {
                "tenant_id": acme.tenant_id,
                "tenant_name": "Acme",
                "tenant_slug": "acme",
                "role": "admin",
            }
        ],
    }


@asynccontextmanager
async def _tab(
    backend: Backend, user: str | None, path: str = "/login"
) -> AsyncIterator[ReflexTab]:
    """A tab as a page opens it (hydrate, then the page's on_load), signed in or not.

    On `/login` nothing is loaded for the user, so whatever data the tab receives came from
    the calls under test; on `/` the live listener loads the snapshot first."""
    token = cached_token(backend, user) if user else None
    tab = ReflexTab(backend.url, session_token=token, path=path)
    await tab.connect()
    try:
        await tab.wait_for(lambda t: t.var(rx.State, "is_hydrated") is True)
        if user and path == "/":
            await tab.wait_for(lambda t: t.snapshots() >= 1)
        yield tab
    finally:
        await tab.close()


def _since(tab: ReflexTab, start: int) -> str:
    return json.dumps(tab.updates[start:], ensure_ascii=False)


def _redirected_to(tab: ReflexTab, path: str) -> bool:
    return any(
        e.get("name") == "_redirect" and e.get("payload", {}).get("path") == path
        for u in tab.updates
        for e in u.get("events", [])
    )


async def _settle(tab: ReflexTab) -> None:
    """Until every event sent before has been handled: a tab's foreground events run one
    after another, so when this one's answer arrives, theirs has."""
    before = len(tab.toasts())
    await tab.call(NotificationState, "mark_read", {"notification_id": -1})
    await tab.wait_for(lambda t: len(t.toasts()) > before)


# The tab's own socket.io session id comes back in its router data: random letters, which
# once spelled "Bob".
# Random values the tab's own connection carries (its session id, the websocket handshake's
# key): base64 noise can spell a marker ("...dBobWO..." once failed a run).
_RANDOM_VALUES = re.compile(r'"(session_id|sec_websocket_key|sec-websocket-key)": "[^"]*"')


def _assert_nothing_of(tab: ReflexTab, markers: list[str]) -> None:
    received = _RANDOM_VALUES.sub(r'"\1": ""', tab.received_text())
    leaked = [m for m in markers if m in received]
    assert not leaked, f"the tab received {leaked}:\n{received[:3000]}"
    assert GENERIC not in received


# -- what each allowed handler is called with ---------------------------------------------

Call = tuple[type[rx.State], str, dict[str, Any]]


def _valid_calls(acme: Acme) -> dict[str, dict[str, Any]]:
    """A well-formed payload for each allowed handler, naming Acme's things."""
    calls: list[Call] = [
        (ChatState, "open_conversation", {"conversation_id": acme.team_id}),
        (ChatState, "close_conversation", {}),
        (
            ChatState,
            "open_message",
            {"conversation_id": acme.team_id, "message_id": acme.oldest_filler_id},
        ),
        (ChatState, "open_linked", {}),
        (ChatState, "load_older", {"before": acme.oldest_filler_id}),
        (ChatState, "reload_conversations", {}),
        (ChatState, "send", {"form_data": {"content": "hello"}}),
        (ChatState, "send_held", {}),
        (ChatState, "show_new_conversation", {"show": True}),
        (ChatState, "start_editing", {"message_id": acme.oldest_filler_id}),
        (ChatState, "stop_editing", {}),
        (ChatState, "save_edit", {"form_data": {"content": "edited"}}),
        (ChatState, "ask_delete", {"message_id": acme.oldest_filler_id}),
        (ChatState, "cancel_delete", {}),
        (ChatState, "delete_message", {}),
        (ChatState, "typed", {"key": "a"}),
        (ChatState, "stopped_typing", {}),
        (ChatState, "start_conversation", {"form_data": {f"person-{acme.alice_id}": "on"}}),
        (NotificationState, "mark_read", {"notification_id": acme.bob_notification_id}),
        (NotificationState, "open_notification", {"notification_id": acme.bob_notification_id}),
        (NotificationState, "mark_all_read", {}),
        (ChatState, "refresh_conversation", {}),
        (ConversationSettingsState, "show", {"show": True}),
        (ConversationSettingsState, "rename", {"form_data": {"title": "renamed"}}),
        (
            ConversationSettingsState,
            "add_people",
            {"form_data": {f"add-{acme.alice_id}": "on"}},
        ),
        (ConversationSettingsState, "remove_person", {"person_id": acme.alice_id}),
        (ConversationSettingsState, "leave", {}),
        (SearchState, "search", {"form_data": {"q": "hello"}}),
        (SearchState, "clear_search", {}),
        (PresenceState, "activity", {}),
        (PresenceState, "toggle_away", {}),
        (LiveState, "listen", {}),
        (LiveState, "show_event_log", {}),
        (LiveState, "hide_event_log", {}),
        (
            SessionState,
            "sign_in",
            {"form_data": {"username": f"nobody-{uuid.uuid4().hex}", "password": "wrong-pass"}},
        ),
        (SessionState, "sign_out", {}),
        (SessionState, "switch_tenant", {"tenant_id": str(acme.tenant_id)}),
        (SessionState, "require_session", {}),
        (SessionState, "refresh_workspaces", {"open": True}),
        (SessionState, "skip_login_if_signed_in", {}),
        (rx.State, "hydrate_and_load", {}),
        (_state("OnLoadInternalState"), "on_load_internal", {}),
        (_state("UpdateVarsInternalState"), "update_vars_internal", {"vars": {}}),
        (
            _state("FrontendEventExceptionState"),
            "handle_frontend_exception",
            {"info": "TypeError: x is undefined", "component_stack": "at Chat"},
        ),
    ]
    return {handler_name(state, name): payload for state, name, payload in calls}


def _state(name: str) -> type[rx.State]:
    return next(s for s in _walk(rx.State) if s.__name__ == name)


# Stands in for the real ids where a parametrization is built, before the backend is up.
DUMMY = Acme(1, 2, 3, 4, 5, "n", "s", "f", 6)


def test_every_allowed_handler_has_a_valid_call_here() -> None:
    assert set(_valid_calls(DUMMY)) == set(allowed())


@dataclass(frozen=True)
class Outcome:
    """What the user is told: a toast saying `toast`, a var taking `value`, a redirect, or
    (for a handler with nothing to do) nothing at all."""

    toast: str | None = None
    var: tuple[type[rx.State], str, Any] | None = None
    redirect: str | None = None

    def seen(self, tab: ReflexTab) -> bool:
        if self.toast is not None:
            return any(self.toast in t for t in tab.toasts())
        if self.var is not None:
            state, name, value = self.var
            return tab.var(state, name) == value
        if self.redirect is not None:
            return _redirected_to(tab, self.redirect)
        return True


SIGNED_OUT = Outcome(toast=replies.SIGNED_OUT)
QUIET = Outcome()

SIGNED_OUT_OUTCOMES: dict[str, Outcome] = {
    "open_conversation": SIGNED_OUT,
    "load_older": SIGNED_OUT,
    "send": SIGNED_OUT,
    "open_message": SIGNED_OUT,
    "open_linked": QUIET,
    "start_conversation": SIGNED_OUT,
    "mark_read": SIGNED_OUT,
    "mark_all_read": SIGNED_OUT,
    "open_notification": SIGNED_OUT,
    "activity": SIGNED_OUT,
    "toggle_away": SIGNED_OUT,
    "search": SIGNED_OUT,
    "clear_search": QUIET,
    "refresh_conversation": QUIET,
    "show": SIGNED_OUT,
    "rename": SIGNED_OUT,
    "add_people": SIGNED_OUT,
    "remove_person": SIGNED_OUT,
    "leave": SIGNED_OUT,
    # Nothing open, nothing to say: they return before anything is read.
    "close_conversation": QUIET,
    "reload_conversations": QUIET,
    "typed": QUIET,
    "stopped_typing": QUIET,
    "listen": QUIET,
    "send_held": QUIET,
    "show_new_conversation": QUIET,
    # Nothing open or asked for: nothing to edit or delete.
    "start_editing": QUIET,
    "stop_editing": QUIET,
    "save_edit": QUIET,
    "ask_delete": QUIET,
    "cancel_delete": QUIET,
    "delete_message": QUIET,
    "show_event_log": QUIET,
    "hide_event_log": QUIET,
    "sign_in": Outcome(var=(SessionState, "login_error", "Invalid username or password.")),
    "sign_out": Outcome(redirect="/login"),
    "switch_tenant": Outcome(redirect="/login"),
    "require_session": Outcome(redirect="/login"),
    "refresh_workspaces": QUIET,
    "skip_login_if_signed_in": QUIET,
    "hydrate_and_load": QUIET,
    "on_load_internal": QUIET,
    "update_vars_internal": QUIET,
    "handle_frontend_exception": QUIET,
}


@pytest.mark.parametrize("name", sorted(allowed()), ids=lambda n: n.rsplit(".", 1)[-1])
async def test_a_signed_out_client_gets_nothing_and_a_readable_answer(
    backend: Backend, acme: Acme, name: str
) -> None:
    outcome = SIGNED_OUT_OUTCOMES[name.rsplit(".", 1)[-1]]
    async with _tab(backend, None) as tab:
        await tab.call_named(name, _valid_calls(acme)[name])
        await tab.wait_for(outcome.seen)
        await _settle(tab)
        _assert_nothing_of(tab, acme.markers() + GLOBEX_MARKERS)
        assert tab.var(SessionState, "signed_in") in (None, False)


# -- erin of Globex, with Acme's ids; and bob of Acme, with the same calls ----------------


@dataclass(frozen=True)
class CrossCase:
    id: str
    calls: Callable[[Acme], list[Call]]
    erin_hears: Outcome
    # Acme text the same calls bring bob, received after they were made.
    bob_sees: Callable[[Acme], str] | None = None
    path: str = "/login"


def _setvar(acme: Acme) -> Call:
    return (ChatState, "setvar", {"var_name": "active_id", "value": acme.team_id})


CROSS_CASES = [
    CrossCase(
        "open_conversation",
        lambda a: [(ChatState, "open_conversation", {"conversation_id": a.team_id})],
        Outcome(toast="No such conversation."),
        lambda a: a.filler,
    ),
    CrossCase(
        "open_direct_conversation",
        lambda a: [(ChatState, "open_conversation", {"conversation_id": a.direct_id})],
        Outcome(toast="No such conversation."),
        lambda a: "Alice",
        path="/",
    ),
    CrossCase(
        "open_message",
        lambda a: [
            (
                ChatState,
                "open_message",
                {"conversation_id": a.team_id, "message_id": a.oldest_filler_id},
            )
        ],
        Outcome(toast="No such conversation."),
        lambda a: a.filler,
    ),
    CrossCase(
        "setvar_then_load_older",
        lambda a: [
            (ChatState, "open_conversation", {"conversation_id": a.team_id}),
            _setvar(a),
            (ChatState, "load_older", {"before": a.oldest_filler_id}),
        ],
        Outcome(toast="No such conversation."),
        lambda a: a.secret,
    ),
    CrossCase(
        "setvar_then_send",
        lambda a: [_setvar(a), (ChatState, "send", {"form_data": {"content": "hi"}})],
        Outcome(var=(ChatState, "composer_error", "Open a conversation first.")),
    ),
    CrossCase(
        "setvar_then_typed",
        lambda a: [
            _setvar(a),
            (ChatState, "typed", {"key": "a"}),
            (ChatState, "stopped_typing", {}),
        ],
        Outcome(toast="cannot ask for that"),
    ),
    CrossCase(
        "mark_read",
        lambda a: [(NotificationState, "mark_read", {"notification_id": a.bob_notification_id})],
        # Bob's tab lists the notice already; what the call brings is its read event.
        Outcome(toast="No such notification."),
        lambda a: "notification:read",
        path="/",
    ),
    CrossCase(
        "open_notification",
        lambda a: [
            (NotificationState, "open_notification", {"notification_id": a.bob_notification_id})
        ],
        # The mark_read case has read bob's notice already: bob's click is tested in
        # tests/test_ui_first_day.py.
        Outcome(toast="No such notification."),
        path="/",
    ),
    CrossCase(
        "edit_and_delete_an_acme_message",
        lambda a: [
            (ChatState, "open_conversation", {"conversation_id": a.team_id}),
            (ChatState, "start_editing", {"message_id": a.oldest_filler_id}),
            (ChatState, "save_edit", {"form_data": {"content": "erin was here"}}),
            (ChatState, "ask_delete", {"message_id": a.oldest_filler_id}),
            (ChatState, "delete_message", {}),
        ],
        Outcome(toast="No such conversation."),
    ),
    CrossCase(
        "search_for_acme_words",
        # Erin's search ran and found nothing; bob's finds the message (its words
        # come as snippet pieces: the tag is one of them).
        lambda a: [(SearchState, "search", {"form_data": {"q": a.secret.split()[-1]}})],
        Outcome(var=(SearchState, "results", [])),
        lambda a: a.secret.split()[-1],
        path="/",
    ),
    CrossCase(
        "start_conversation_with_alice",
        lambda a: [
            (ChatState, "start_conversation", {"form_data": {f"person-{a.alice_id}": "on"}})
        ],
        Outcome(var=(ChatState, "new_conversation_error", "No such user in this tenant.")),
        lambda a: "Alice",
    ),
    CrossCase(
        "switch_to_acme",
        lambda a: [(SessionState, "switch_tenant", {"tenant_id": str(a.tenant_id)})],
        Outcome(toast="You are not a member of that workspace."),
    ),
]


def _acme_ids(acme: Acme) -> set[int]:
    return {acme.team_id, acme.direct_id}


@pytest.mark.parametrize("case", CROSS_CASES, ids=lambda c: c.id)
async def test_a_member_of_another_tenant_gets_nothing_of_acme(
    backend: Backend, acme: Acme, case: CrossCase
) -> None:
    async with _tab(backend, "erin", case.path) as tab:
        for state, name, payload in case.calls(acme):
            await tab.call(state, name, payload)
        await tab.wait_for(case.erin_hears.seen)
        await _settle(tab)
        _assert_nothing_of(tab, acme.markers())
        key = ChatState.get_full_name()
        shown = {
            u["delta"][key].get("active_id_rx_state_")
            for u in tab.updates
            if key in u.get("delta", {})
        }
        assert not shown & _acme_ids(acme), "erin's tab held an Acme conversation id"


@pytest.mark.parametrize("case", [c for c in CROSS_CASES if c.bob_sees], ids=lambda c: c.id)
async def test_the_same_calls_bring_an_acme_member_the_acme_data(
    backend: Backend, acme: Acme, case: CrossCase
) -> None:
    async with _tab(backend, "bob", case.path) as tab:
        start = len(tab.updates)
        for state, name, payload in case.calls(acme):
            await tab.call(state, name, payload)
        assert case.bob_sees is not None
        marker = case.bob_sees(acme)
        await tab.wait_for(lambda t: marker in _since(t, start))


# -- refused names, private methods, garbled frames ---------------------------------------


def _refused_calls(acme: Acme) -> list[tuple[str, Any]]:
    forged = {"principal": _forged_alice(acme)}
    calls: list[tuple[str, Any]] = []
    for entry in SURFACE:
        if entry.caller is Caller.NOBODY:
            payload = (
                {"var_name": "active_id", "value": acme.team_id}
                if entry.handler == "setvar"
                else {"value": True}
            )
            calls.append((entry.event_name, payload))
    for bad in ["", "no such var", "__class__", "_auth_token", "set_is_hydrated"]:
        calls.append((handler_name(ChatState, "setvar"), {"var_name": bad, "value": 1}))
        calls.append((handler_name(SessionState, "setvar"), {"var_name": bad, "value": 1}))
    # Every private method of our states, by name: finding 1 called one with a Principal.
    # Found through Reflex's registry, so a state added later is covered without a list.
    for state in (s for s in _walk(rx.State) if s.__module__.startswith("app.state.")):
        for attr, value in vars(state).items():
            if attr.startswith("_") and not attr.startswith("__") and callable(value):
                calls.append((handler_name(state, attr), forged))
    calls += [
        (handler_name(ChatState, "load_snapshot"), forged),  # its old, public name
        (handler_name(ChatState, "nope"), {}),
        ("nope", {}),
        ("", {}),
        ("reflex___state____state.app___state___chat____chat_state", {}),
        (HUGE, {}),
        ("\ud800", {}),
    ]
    return calls


@pytest.mark.parametrize(
    "index",
    range(len(_refused_calls(DUMMY))),
    ids=[ascii(n.rsplit(".", 1)[-1][:30]) for n, _ in _refused_calls(DUMMY)],
)
async def test_a_refused_or_unknown_handler_is_dropped_quietly(
    backend: Backend, acme: Acme, index: int
) -> None:
    name, payload = _refused_calls(acme)[index]
    async with _tab(backend, "erin") as tab:
        await tab.call_named(name, payload)
        await tab.wait_for(Outcome(toast="this page cannot ask for that").seen)
        await _settle(tab)
        _assert_nothing_of(tab, acme.markers())


async def test_a_refused_event_in_the_connect_packet_is_dropped_and_the_socket_stays(
    backend: Backend, acme: Acme
) -> None:
    """Reflex takes the page's first event from the socket.io CONNECT packet (on_connect),
    a path of its own into on_event: the gate is on it too."""
    tab = ReflexTab(backend.url, session_token=cached_token(backend, "erin"), path="/")
    forged = {
        "name": handler_name(ChatState, "_load_snapshot"),
        "payload": {"principal": _forged_alice(acme)},
        "router_data": {"pathname": "/"},
    }
    await tab.connect(boot_event=forged)
    try:
        await tab.wait_for(Outcome(toast="this page cannot ask for that").seen)
        await _settle(tab)
        assert tab.connected
        _assert_nothing_of(tab, acme.markers())
    finally:
        await tab.close()


_OPEN = handler_name(ChatState, "open_conversation")


@pytest.mark.parametrize(
    "frame",
    [
        "text",
        5,
        [],
        None,
        {"name": 5},
        {"payload": {}},
        {"name": _OPEN, "payload": [1]},
        {"name": _OPEN, "payload": {"conversation_id": 1}, "router_data": "x"},
        {"name": _OPEN, "payload": {"conversation_id": 1}, "router_data": {"pathname": 5}},
        {"name": _OPEN, "payload": {"conversation_id": 1}, "router_data": {"query": "x"}},
        {"name": _OPEN, "payload": {"conversation_id": 1}, "router_data": {"query": {"a": HUGE}}},
    ],
    ids=lambda f: json.dumps(f)[:40],
)
async def test_a_garbled_frame_is_dropped_quietly(backend: Backend, acme: Acme, frame: Any) -> None:
    async with _tab(backend, "erin") as tab:
        await tab.emit_raw(frame)
        await tab.wait_for(Outcome(toast=REFUSED).seen)
        await _settle(tab)
        _assert_nothing_of(tab, acme.markers())


@pytest.mark.parametrize(
    "packet",
    [
        f'2/_event,["event",{{"name":"{_OPEN}","payload":{{"conversation_id":{"9" * 5000}}}}}]',
        '2/_event,["event",{"name":',
        "2/_event,[]",
        "2/_event,{}",
        '2/_event,"event"',
        '2/_event,["no such socket event",1]',
        "9/_event,[]",
        '51-/_event,["event",{"_placeholder":true,"num":0}]',  # then no attachment comes
    ],
    ids=lambda p: p[:24],
)
async def test_a_packet_socketio_cannot_decode_is_dropped_quietly(
    backend: Backend, acme: Acme, packet: str
) -> None:
    async with _tab(backend, "erin") as tab:
        await tab.send_packet(packet)
        await _settle(tab)  # the socket still takes events
        assert tab.connected
        _assert_nothing_of(tab, acme.markers())


# -- wrongly typed, oversized, missing and extra arguments --------------------------------


def _bad_arguments() -> list[tuple[str, dict[str, Any], str]]:
    """(event name, payload, what the refusal names) for every allowed handler, from its
    declared parameters: a new handler gets the same treatment without a new line here."""
    cases = []
    for name, entry in sorted(allowed().items()):
        valid = _valid_calls(DUMMY)[name]
        for param in entry.parameters:
            annotation = param.annotation
            values = (
                _INT_BAD
                if annotation is int
                else _STR_BAD
                if annotation is str
                else _LIST_BAD
                if "list" in str(annotation)
                else _DICT_BAD
            )
            if not param.required:
                values = [v for v in values if v is not None]
            cases += [(name, {**valid, param.name: v}, param.name) for v in values]
            if param.required:
                cases.append(
                    (
                        name,
                        {k: v for k, v in valid.items() if k != param.name},
                        f"{param.name} is missing",
                    )
                )
        cases.append((name, {**valid, "principal": {"user_id": 1}}, "unexpected argument"))
    return cases


BAD_ARGUMENTS = _bad_arguments()


@pytest.mark.parametrize(
    ("name", "payload", "named"),
    BAD_ARGUMENTS,
    ids=[f"{n.rsplit('.', 1)[-1]}-{i}" for i, (n, _, _) in enumerate(BAD_ARGUMENTS)],
)
async def test_wrong_arguments_get_a_readable_refusal_and_nothing_else(
    backend: Backend, acme: Acme, name: str, payload: dict[str, Any], named: str
) -> None:
    async with _tab(backend, "erin") as tab:
        await tab.call_named(name, payload)
        await tab.wait_for(lambda t: any(REFUSED in x and named in x for x in t.toasts()))
        await _settle(tab)
        _assert_nothing_of(tab, acme.markers())


@dataclass(frozen=True)
class WellTypedCase:
    """Right types, wrong content: the handler or its use case answers, readably."""

    id: str
    call: Callable[[Acme], Call]
    hears: Outcome


WELL_TYPED_BUT_WRONG = [
    WellTypedCase(
        "negative_conversation",
        lambda a: (ChatState, "open_conversation", {"conversation_id": -1}),
        Outcome(toast="No such conversation."),
    ),
    WellTypedCase(
        "int64_max_notification",
        lambda a: (NotificationState, "mark_read", {"notification_id": 2**63 - 1}),
        Outcome(toast="No such notification."),
    ),
    WellTypedCase(
        "person_abc",
        lambda a: (ChatState, "start_conversation", {"form_data": {"person-abc": "on"}}),
        Outcome(var=(ChatState, "new_conversation_error", "Pick people from the list.")),
    ),
    WellTypedCase(
        "person_too_big",
        lambda a: (
            ChatState,
            "start_conversation",
            {"form_data": {"person-99999999999999999999": "on"}},
        ),
        Outcome(var=(ChatState, "new_conversation_error", "Pick people from the list.")),
    ),
    WellTypedCase(
        "title_not_text",
        lambda a: (
            ChatState,
            "start_conversation",
            {"form_data": {"person-1": "on", "title": ["x"]}},
        ),
        Outcome(var=(ChatState, "new_conversation_error", "The title must be text.")),
    ),
    WellTypedCase(
        "content_not_text",
        lambda a: (ChatState, "send", {"form_data": {"content": 5}}),
        Outcome(var=(ChatState, "composer_error", "Type a message first.")),
    ),
    WellTypedCase(
        "tenant_huge_digits",
        lambda a: (SessionState, "switch_tenant", {"tenant_id": "9" * 30}),
        Outcome(toast="You are not a member of that workspace."),
    ),
    WellTypedCase(
        "tenant_words",
        lambda a: (SessionState, "switch_tenant", {"tenant_id": "person-abc"}),
        Outcome(toast="You are not a member of that workspace."),
    ),
    WellTypedCase(
        "sign_in_as_a_list",
        lambda a: (
            SessionState,
            "sign_in",
            {"form_data": {"username": ["alice"], "password": ["x"]}},
        ),
        Outcome(var=(SessionState, "login_error", "Invalid username or password.")),
    ),
]


@pytest.mark.parametrize("case", WELL_TYPED_BUT_WRONG, ids=lambda c: c.id)
async def test_well_typed_but_wrong_arguments_get_the_use_cases_answer(
    backend: Backend, acme: Acme, case: WellTypedCase
) -> None:
    async with _tab(backend, "erin") as tab:
        state, name, payload = case.call(acme)
        await tab.call(state, name, payload)
        await tab.wait_for(case.hears.seen)
        await _settle(tab)
        _assert_nothing_of(tab, acme.markers())
