"""The chat UI in headless Chromium against the real app, two people in two browsers."""

from __future__ import annotations

import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from playwright.sync_api import Browser, Locator, Page, expect

from tests.backend import Backend
from tests.browser import open_chat_tab, signed_in

TIMEOUT_MS = 15_000


def _api(backend: Backend, username: str) -> httpx.Client:
    return httpx.Client(
        base_url=backend.url,
        headers={"Authorization": f"Bearer {backend.token(username)}"},
        timeout=10,
    )


def _user_id(backend: Backend, username: str) -> int:
    with _api(backend, username) as api:
        return api.get("/api/me").json()["id"]


def _direct_with(api: httpx.Client, other_id: int) -> int:
    response = api.post("/api/conversations", json={"participantIds": [other_id]})
    assert response.status_code in (200, 201)
    return response.json()["id"]


def _row(page: Page, name: str) -> Locator:
    return page.locator(f"[data-testid=conversation][data-name='{name}']")


def _badge_count(page: Page, name: str) -> int:
    badge = _row(page, name).get_by_test_id("unread-badge")
    return int(badge.inner_text()) if badge.count() else 0


def _open(page: Page, name: str) -> None:
    _row(page, name).click()
    expect(page.get_by_test_id("chat-title")).to_have_text(name, timeout=TIMEOUT_MS)


def _send(page: Page, text: str) -> None:
    page.fill("#composer", text)
    page.press("#composer", "Enter")


def test_alice_sends_and_bob_sees_it_live_with_badges_in_every_tab(
    browser: Browser, backend: Backend
) -> None:
    with (
        signed_in(browser, backend, "bob") as (bob_context, bob_tab),
        signed_in(browser, backend, "alice") as (_, alice_tab),
    ):
        bob_second_tab = open_chat_tab(bob_context, backend)
        before = _badge_count(bob_tab, "Alice")

        _open(alice_tab, "Bob")
        _send(alice_tab, "Lunch at noon?")

        expect(_row(bob_tab, "Alice")).to_contain_text("Alice: Lunch at noon?", timeout=TIMEOUT_MS)
        expect(_row(bob_tab, "Alice").get_by_test_id("unread-badge")).to_have_text(
            str(before + 1), timeout=TIMEOUT_MS
        )
        expect(_row(bob_second_tab, "Alice").get_by_test_id("unread-badge")).to_have_text(
            str(before + 1), timeout=TIMEOUT_MS
        )

        # Bob reads in one tab: the badge clears in the other one too.
        _open(bob_tab, "Alice")
        expect(bob_tab.get_by_test_id("message-text").last).to_have_text(
            "Lunch at noon?", timeout=TIMEOUT_MS
        )
        expect(_row(bob_second_tab, "Alice").get_by_test_id("unread-badge")).to_have_count(
            0, timeout=TIMEOUT_MS
        )

        # A message into the conversation Bob has open shows up without a reload.
        _send(alice_tab, "See you there")
        expect(bob_tab.get_by_test_id("message-text").last).to_have_text(
            "See you there", timeout=TIMEOUT_MS
        )


def test_bob_typing_shows_on_alices_screen_and_goes_away_by_itself(
    browser: Browser, backend: Backend
) -> None:
    with (
        signed_in(browser, backend, "alice") as (_, alice_tab),
        signed_in(browser, backend, "bob") as (_, bob_tab),
    ):
        _open(alice_tab, "Bob")
        _open(bob_tab, "Alice")
        bob_tab.click("#composer")
        bob_tab.keyboard.type("I am wri")
        expect(alice_tab.get_by_test_id("typing")).to_have_text(
            "Bob is typing…", timeout=TIMEOUT_MS
        )
        # No more keys: the server's expiry (1.5 s in tests) ends it without Bob doing anything.
        expect(alice_tab.get_by_test_id("typing")).to_have_text("", timeout=TIMEOUT_MS)


def test_bob_closing_his_tabs_turns_him_offline_for_alice(
    browser: Browser, backend: Backend
) -> None:
    with signed_in(browser, backend, "alice") as (_, alice_tab):
        bob_in_list = alice_tab.locator("[data-testid=person][data-name='Bob']")
        with signed_in(browser, backend, "bob") as (bob_context, _):
            open_chat_tab(bob_context, backend)
            expect(bob_in_list).to_have_attribute("data-status", "online", timeout=TIMEOUT_MS)
        # Both tabs closed with the context: offline once the grace period (1 s) is over.
        expect(bob_in_list).to_have_attribute("data-status", "offline", timeout=TIMEOUT_MS)
        expect(bob_in_list).to_contain_text("last seen")


def test_an_admin_notification_rings_bobs_bell(browser: Browser, backend: Backend) -> None:
    with signed_in(browser, backend, "bob") as (_, bob_tab), _api(backend, "alice") as alice:
        bob_id = _user_id(backend, "bob")
        badge = bob_tab.get_by_test_id("bell-badge")
        before = int(badge.inner_text()) if badge.count() else 0
        response = alice.post(
            "/api/notifications", json={"userId": bob_id, "title": "Deploy at 5", "body": "ok?"}
        )
        assert response.status_code == 201
        expect(badge).to_have_text(str(before + 1), timeout=TIMEOUT_MS)
        bob_tab.get_by_test_id("bell").click()
        expect(bob_tab.get_by_test_id("notification").first).to_contain_text("Deploy at 5")
        bob_tab.get_by_test_id("notifications-read-all").click()
        expect(badge).to_have_count(0, timeout=TIMEOUT_MS)


def test_markup_in_messages_is_shown_as_text_and_never_run(
    browser: Browser, backend: Backend
) -> None:
    payload = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold?</b>'
    with (
        signed_in(browser, backend, "alice") as (_, alice_tab),
        signed_in(browser, backend, "bob") as (_, bob_tab),
    ):
        _open(bob_tab, "Alice")
        _open(alice_tab, "Bob")
        _send(alice_tab, payload)
        expect(bob_tab.get_by_test_id("message-text").last).to_have_text(
            payload, timeout=TIMEOUT_MS
        )
        assert bob_tab.evaluate("window.__pwned") is None
        assert bob_tab.locator("[data-testid=message-text] b").count() == 0


def test_double_click_on_send_sends_one_message_and_empty_is_refused(
    browser: Browser, backend: Backend
) -> None:
    with signed_in(browser, backend, "carol") as (_, tab):
        _open(tab, "Acme team")
        tab.fill("#composer", "only once please")
        tab.get_by_test_id("send").dblclick()
        expect(tab.get_by_test_id("message-text").last).to_have_text(
            "only once please", timeout=TIMEOUT_MS
        )
        with _api(backend, "carol") as carol:
            team = next(
                c["id"]
                for c in carol.get("/api/conversations").json()["items"]
                if c["title"] == "Acme team"
            )
            history = carol.get(f"/api/conversations/{team}/messages?limit=5").json()["items"]
        assert [m["content"] for m in history].count("only once please") == 1
        tab.fill("#composer", "   ")
        tab.get_by_test_id("send").click()
        expect(tab.get_by_test_id("composer-error")).to_have_text("Type a message first.")


def test_wrong_password_shows_a_clear_error(browser: Browser, backend: Backend) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{backend.url}/login/")
        expect(page.get_by_test_id("ready")).to_be_attached(timeout=TIMEOUT_MS)
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "wrong")
        page.click("button[type=submit]")
        expect(page.get_by_test_id("login-error")).to_have_text("Invalid username or password.")
    finally:
        context.close()


def test_session_survives_a_reload_and_sign_out_ends_it(browser: Browser, backend: Backend) -> None:
    with signed_in(browser, backend, "erin") as (_, page):
        page.reload()
        expect(page.get_by_test_id("live")).to_be_visible(timeout=TIMEOUT_MS)
        page.get_by_test_id("user-menu").click()
        page.get_by_test_id("sign-out").click()
        expect(page).to_have_url(re.compile(r"/login/?$"), timeout=TIMEOUT_MS)
        page.goto(f"{backend.url}/")
        expect(page).to_have_url(re.compile(r"/login/?$"), timeout=TIMEOUT_MS)


@pytest.fixture
def bob_stream(backend: Backend) -> Iterator[queue.Queue[dict[str, Any]]]:
    """An external /api/sse consumer for bob, in a thread, feeding a queue."""
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    ready = threading.Event()
    stop = threading.Event()
    token = backend.token("bob")

    def consume() -> None:
        # Pings (every second in tests) wake the loop, so it notices `stop` promptly.
        with (
            httpx.Client(base_url=backend.url, timeout=httpx.Timeout(10, read=30)) as client,
            connect_sse(client, "GET", "/api/sse", params={"access_token": token}) as source,
        ):
            ready.set()
            for event in source.iter_sse():
                if stop.is_set():
                    return
                if event.event not in ("message", "ping"):
                    data = json.loads(event.data)
                    events.put({"id": event.id, "type": event.event, "data": data})

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield events
    stop.set()
    thread.join(5)


def _event_log_with(page: Page, event_id: str) -> list[dict[str, Any]]:
    """The tab's event log (user menu, "Event log") once it holds `event_id`: it shows the
    log as it was when opened, so it is opened again until the event is in it."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        page.get_by_test_id("user-menu").click()
        page.get_by_test_id("show-event-log").click()
        log = page.get_by_test_id("event-log")
        expect(log).to_be_visible(timeout=TIMEOUT_MS)
        events: list[dict[str, Any]] = json.loads(log.inner_text())
        if any(e["id"] == event_id for e in events) or time.monotonic() > deadline:
            return events
        page.wait_for_timeout(200)


def test_a_tab_and_a_stream_receive_identical_events(
    browser: Browser, backend: Backend, bob_stream: queue.Queue[dict[str, Any]]
) -> None:
    """Every kind of event a chat makes for bob, as his tab and his stream get it."""
    with signed_in(browser, backend, "bob") as (_, bob_tab), _api(backend, "alice") as alice:
        bob_id = _user_id(backend, "bob")
        created = alice.post(
            "/api/conversations",
            json={"participantIds": [bob_id], "title": f"Identical {uuid.uuid4().hex[:6]}"},
        )
        assert created.status_code == 201, created.text
        group = created.json()["id"]
        posted = alice.post(f"/api/conversations/{group}/messages", json={"content": "same?"})
        message = posted.json()["id"]
        edit = alice.patch(
            f"/api/conversations/{group}/messages/{message}", json={"content": "same for both?"}
        )
        assert edit.status_code == 200, edit.text
        gone = alice.delete(f"/api/conversations/{group}/messages/{message}")
        assert gone.status_code == 204, gone.text
        alice.post("/api/notifications", json={"userId": bob_id, "title": "identical"})

        from_stream: list[dict[str, Any]] = []
        while not any(e["type"] == "notification:new" for e in from_stream):
            event = bob_stream.get(timeout=10)
            if event["type"] != "presence:update":
                from_stream.append(event)
        from_tab = {e["id"]: e for e in _event_log_with(bob_tab, from_stream[-1]["id"])}
    types = [e["type"] for e in from_stream]
    for wanted in [
        "chat:conversation",
        "chat:message",
        "chat:unread-count",
        "chat:message-updated",
        "chat:message-deleted",
        "notification:new",
    ]:
        assert wanted in types, types
    assert types.index("chat:conversation") < types.index("chat:message")
    assert types.index("chat:message-updated") < types.index("chat:message-deleted")
    for event in from_stream:
        assert from_tab[event["id"]] == event


def test_two_typists_are_named_together(browser: Browser, backend: Backend) -> None:
    with signed_in(browser, backend, "alice") as (_, alice_tab):
        _open(alice_tab, "Acme team")
        with _api(backend, "bob") as bob, _api(backend, "carol") as carol:
            team = next(
                c["id"]
                for c in bob.get("/api/conversations").json()["items"]
                if c["title"] == "Acme team"
            )
            bob.post(f"/api/conversations/{team}/typing", json={"isTyping": True})
            carol.post(f"/api/conversations/{team}/typing", json={"isTyping": True})
            expect(alice_tab.get_by_test_id("typing")).to_have_text(
                "Bob and Carol are typing…", timeout=TIMEOUT_MS
            )
            bob.post(f"/api/conversations/{team}/typing", json={"isTyping": False})
            expect(alice_tab.get_by_test_id("typing")).to_have_text(
                "Carol is typing…", timeout=TIMEOUT_MS
            )


def test_starting_a_group_conversation_from_the_dialog(browser: Browser, backend: Backend) -> None:
    title = "Launch planning"
    with (
        signed_in(browser, backend, "alice") as (_, alice_tab),
        signed_in(browser, backend, "carol") as (_, carol_tab),
    ):
        alice_tab.get_by_test_id("new-conversation").click()
        for name in ("Bob", "Carol"):
            alice_tab.get_by_test_id("pick-person").filter(has_text=name).locator(
                "button[role=checkbox]"
            ).click()
        alice_tab.fill("input[name=title]", title)
        alice_tab.get_by_role("button", name="Start").click()
        expect(alice_tab.get_by_test_id("chat-title")).to_have_text(title, timeout=TIMEOUT_MS)
        _send(alice_tab, "Kick-off tomorrow")
        # Carol never saw this conversation before: it appears with the message.
        expect(_row(carol_tab, title)).to_contain_text(
            "Alice: Kick-off tomorrow", timeout=TIMEOUT_MS
        )


def test_older_history_loads_on_demand(browser: Browser, backend: Backend) -> None:
    with _api(backend, "erin") as erin, _api(backend, "dave") as dave:
        dave_id = dave.get("/api/me").json()["id"]
        erin_id = erin.get("/api/me").json()["id"]
        group = erin.post(
            "/api/conversations", json={"participantIds": [dave_id], "title": "Archive"}
        ).json()["id"]
        for i in range(45):
            erin.post(f"/api/conversations/{group}/messages", json={"content": f"note {i:02d}"})
    with signed_in(browser, backend, "dave") as (_, tab):
        _open(tab, "Archive")
        expect(tab.get_by_test_id("message")).to_have_count(30, timeout=TIMEOUT_MS)
        tab.get_by_test_id("load-older").click()
        expect(tab.get_by_test_id("message")).to_have_count(45, timeout=TIMEOUT_MS)
        expect(tab.get_by_test_id("message-text").first).to_have_text("note 00")
        expect(tab.get_by_test_id("load-older")).to_have_count(0)
    assert erin_id != dave_id


def test_a_paste_over_the_limit_is_kept_whole_counted_and_not_sent(
    browser: Browser, backend: Backend
) -> None:
    with _api(backend, "dave") as dave:
        assert _direct_with(dave, _user_id(backend, "erin"))
    with signed_in(browser, backend, "erin") as (_, tab):
        _open(tab, "Dave")
        sent_before = tab.get_by_test_id("message").count()
        tab.fill("#composer", "x" * 5000)
        # Nothing cut behind the writer's back: the box holds the whole paste and says why
        # it cannot go.
        assert len(tab.input_value("#composer")) == 5000
        counter = tab.get_by_test_id("composer-counter")
        expect(counter).to_have_text(
            "1000 characters too many: a message is at most 4000.", timeout=TIMEOUT_MS
        )
        expect(tab.get_by_test_id("send")).to_be_disabled()
        tab.press("#composer", "Enter")
        assert len(tab.input_value("#composer")) == 5000  # Enter did not send it either
        # Cut to the limit by the writer: the counter counts down, and it goes.
        tab.fill("#composer", "x" * 4000)
        expect(counter).to_have_text("4000 / 4000")
        expect(tab.get_by_test_id("send")).to_be_enabled()
        tab.press("#composer", "Enter")
        last = tab.get_by_test_id("message-text").last
        expect(last).to_have_text("x" * 4000, timeout=TIMEOUT_MS)
        expect(tab.get_by_test_id("message")).to_have_count(sent_before + 1)
        box = last.bounding_box()
        assert box is not None and box["width"] < 1280  # wrapped, not overflowing the page


def test_carol_switches_workspace_to_globex(browser: Browser, backend: Backend) -> None:
    with signed_in(browser, backend, "carol") as (_, tab):
        expect(tab.get_by_test_id("tenant-switcher")).to_contain_text("Acme")
        tab.get_by_test_id("tenant-switcher").click()
        tab.get_by_role("option", name="Globex").click()
        expect(tab.get_by_test_id("tenant-switcher")).to_contain_text("Globex", timeout=TIMEOUT_MS)
        expect(tab.get_by_test_id("live")).to_be_visible(timeout=TIMEOUT_MS)
        expect(tab.locator("[data-testid=person][data-name='Dave']")).to_be_visible()
        expect(tab.locator("[data-testid=person][data-name='Bob']")).to_have_count(0)
        expect(_row(tab, "Acme team")).to_have_count(0)
        # And back: the last workspace is remembered for carol's next sign-in, and the tests
        # after this one expect her in Acme.
        tab.get_by_test_id("tenant-switcher").click()
        tab.get_by_role("option", name="Acme").click()
        expect(tab.get_by_test_id("tenant-switcher")).to_contain_text("Acme", timeout=TIMEOUT_MS)
        expect(_row(tab, "Acme team")).to_be_visible(timeout=TIMEOUT_MS)


def test_shift_enter_makes_a_new_line_and_enter_sends(browser: Browser, backend: Backend) -> None:
    with signed_in(browser, backend, "bob") as (_, tab):
        _open(tab, "Acme team")
        tab.click("#composer")
        tab.keyboard.type("line one")
        tab.keyboard.press("Shift+Enter")
        tab.keyboard.type("line two")
        assert tab.input_value("#composer") == "line one\nline two"
        tab.keyboard.press("Enter")
        expect(tab.get_by_test_id("message-text").last).to_have_text(
            "line one\nline two", timeout=TIMEOUT_MS
        )
        expect(tab.locator("#composer")).to_have_value("")


def test_marking_one_notification_read_updates_the_badge_in_every_tab(
    browser: Browser, backend: Backend
) -> None:
    with signed_in(browser, backend, "erin") as (context, tab), _api(backend, "dave") as dave:
        other_tab = open_chat_tab(context, backend)
        erin_id = _user_id(backend, "erin")
        dave.post("/api/notifications", json={"userId": erin_id, "title": "alpha"})
        dave.post("/api/notifications", json={"userId": erin_id, "title": "beta"})
        with _api(backend, "erin") as erin:
            before = erin.get("/api/notifications").json()["unreadCount"]
        badge = other_tab.get_by_test_id("bell-badge")
        # Both notifications have reached this tab (reading the badge earlier may see one).
        expect(badge).to_have_text(str(before), timeout=TIMEOUT_MS)
        tab.get_by_test_id("bell").click()
        second = tab.get_by_test_id("notification").filter(has_text="beta")
        expect(second).to_have_count(1)
        second.get_by_test_id("notification-read").click()
        expect(badge).to_have_text(str(before - 1), timeout=TIMEOUT_MS)
