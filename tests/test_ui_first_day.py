"""What a first day of use broke (issue 15's numbered list), each driven in Chromium as
people use the page: alice, bob and carol in browsers of their own.

Every test makes its own conversation (a tagged title), so it depends on no other test.
"""

from __future__ import annotations

import re
import uuid

import httpx
from playwright.sync_api import Browser, Locator, Page, expect

from tests.backend import Backend, bearer, cached_token
from tests.browser import open_chat_tab, signed_in

TIMEOUT_MS = 15_000

# Whether the newest message is inside the list's visible box.
_NEWEST_IN_VIEW = """() => {
  const list = document.getElementById('message-list');
  const rows = list ? list.querySelectorAll('[data-testid=message]') : [];
  if (!rows.length) return false;
  const a = list.getBoundingClientRect(), b = rows[rows.length - 1].getBoundingClientRect();
  return b.bottom <= a.bottom + 2 && b.top >= a.top - 2;
}"""

# The first message whose top is inside the list's visible box: its id and offset.
_FIRST_VISIBLE = """() => {
  const list = document.getElementById('message-list');
  const top = list.getBoundingClientRect().top;
  for (const row of list.querySelectorAll('[data-testid=message]')) {
    const box = row.getBoundingClientRect();
    if (box.top >= top) return {id: row.dataset.id, offset: box.top - top};
  }
  return null;
}"""


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _api(backend: Backend, username: str) -> httpx.Client:
    return httpx.Client(
        base_url=backend.url, headers=bearer(cached_token(backend, username)), timeout=10
    )


def _user_id(backend: Backend, username: str) -> int:
    with _api(backend, username) as api:
        return int(api.get("/api/me").json()["id"])


def _group(backend: Backend, owner: str, others: list[str], title: str, messages: int = 0) -> int:
    """A group of `owner` and `others` titled `title`, with `messages` from the owner."""
    ids = [_user_id(backend, name) for name in others]
    with _api(backend, owner) as api:
        response = api.post("/api/conversations", json={"participantIds": ids, "title": title})
        assert response.status_code == 201, response.text
        conversation = int(response.json()["id"])
        for i in range(messages):
            _post(api, conversation, f"history {i:03d} " + "words " * 8)
    return conversation


def _post(api: httpx.Client, conversation: int, content: str) -> None:
    response = api.post(f"/api/conversations/{conversation}/messages", json={"content": content})
    assert response.status_code == 201, response.text


def _row(page: Page, name: str) -> Locator:
    return page.locator(f"[data-testid=conversation][data-name='{name}']")


def _open(page: Page, name: str) -> None:
    _row(page, name).click()
    expect(page.get_by_test_id("chat-title")).to_have_text(name, timeout=TIMEOUT_MS)


def _newest_in_view(page: Page) -> bool:
    return bool(page.evaluate(_NEWEST_IN_VIEW))


def _wait_newest_in_view(page: Page) -> None:
    page.wait_for_function(_NEWEST_IN_VIEW, timeout=TIMEOUT_MS)


# -- 2. the open conversation follows new messages ------------------------------------------


def test_the_open_conversation_follows_new_messages_and_counts_them_when_scrolled_up(
    browser: Browser, backend: Backend
) -> None:
    title = f"Follow {_tag()}"
    team = _group(backend, "bob", ["alice"], title, messages=35)
    with signed_in(browser, backend, "alice") as (_, tab), _api(backend, "bob") as bob:
        _open(tab, title)
        _wait_newest_in_view(tab)
        for i in range(5):
            _post(bob, team, f"live {i}")
        expect(tab.get_by_test_id("message-text").last).to_have_text("live 4", timeout=TIMEOUT_MS)
        _wait_newest_in_view(tab)
        expect(tab.get_by_test_id("jump-to-newest")).to_have_count(0)

        # Scrolled up to read: new messages are counted, and the view stays where it is.
        tab.evaluate("document.getElementById('message-list').scrollTop = 400")
        jump = tab.get_by_test_id("jump-to-newest")
        expect(jump).to_have_text("Jump to newest", timeout=TIMEOUT_MS)
        _post(bob, team, "below one")
        _post(bob, team, "below two")
        expect(jump).to_have_text("2 new messages", timeout=TIMEOUT_MS)
        expect(tab.get_by_test_id("message-text").last).to_have_text("below two")
        assert not _newest_in_view(tab)
        jump.click()
        _wait_newest_in_view(tab)
        expect(jump).to_have_count(0)


# -- 3. a reload opens at the newest, with the draft ------------------------------------------


def test_a_reload_opens_the_conversation_at_the_newest_with_the_unsent_draft(
    browser: Browser, backend: Backend
) -> None:
    title = f"Reload {_tag()}"
    other = f"Other {_tag()}"
    _group(backend, "bob", ["alice"], title, messages=35)
    _group(backend, "bob", ["alice"], other)
    with signed_in(browser, backend, "alice") as (_, tab):
        _open(tab, title)
        tab.click("#composer")
        tab.keyboard.type("half a thought")
        tab.reload()
        expect(tab.get_by_test_id("chat-title")).to_have_text(title, timeout=TIMEOUT_MS)
        expect(tab.get_by_test_id("message")).to_have_count(30, timeout=TIMEOUT_MS)
        _wait_newest_in_view(tab)
        expect(tab.locator("#composer")).to_have_value("half a thought", timeout=TIMEOUT_MS)
        # A draft belongs to its conversation: another one has its own (none here).
        _open(tab, other)
        expect(tab.locator("#composer")).to_have_value("", timeout=TIMEOUT_MS)
        _open(tab, title)
        expect(tab.locator("#composer")).to_have_value("half a thought", timeout=TIMEOUT_MS)
        # Sent, it is no draft any more.
        tab.press("#composer", "Enter")
        expect(tab.get_by_test_id("message-text").last).to_have_text(
            "half a thought", timeout=TIMEOUT_MS
        )
        tab.reload()
        expect(tab.get_by_test_id("chat-title")).to_have_text(title, timeout=TIMEOUT_MS)
        expect(tab.get_by_test_id("message-text").last).to_have_text(
            "half a thought", timeout=TIMEOUT_MS
        )
        expect(tab.locator("#composer")).to_have_value("")


# -- 4. a workspace switch in one tab -------------------------------------------------------


def test_switching_workspace_in_one_tab_takes_the_other_tabs_along_and_says_so(
    browser: Browser, backend: Backend
) -> None:
    with signed_in(browser, backend, "carol") as (context, first):
        second = open_chat_tab(context, backend)
        expect(first.get_by_test_id("tenant-switcher")).to_contain_text("Acme")
        try:
            second.get_by_test_id("tenant-switcher").click()
            second.get_by_role("option", name="Globex").click()
            expect(second.get_by_test_id("tenant-switcher")).to_contain_text(
                "Globex", timeout=TIMEOUT_MS
            )
            # The first tab is still signed in, now in Globex, and says why it changed.
            expect(first.get_by_test_id("tenant-switcher")).to_contain_text(
                "Globex", timeout=TIMEOUT_MS
            )
            expect(first.get_by_text("You switched to Globex in another tab.")).to_be_visible(
                timeout=TIMEOUT_MS
            )
            expect(first).not_to_have_url(re.compile(r"/login"))
            expect(first.get_by_test_id("live")).to_be_visible(timeout=TIMEOUT_MS)
            expect(first.locator("[data-testid=person][data-name='Dave']")).to_be_visible()
            # The tab that switched says nothing of another tab.
            expect(second.get_by_text("in another tab")).to_have_count(0)
        finally:
            # Back to Acme, which the tests after this one expect of carol.
            second.get_by_test_id("tenant-switcher").click()
            second.get_by_role("option", name="Acme").click()
            expect(second.get_by_test_id("tenant-switcher")).to_contain_text(
                "Acme", timeout=TIMEOUT_MS
            )
            expect(first.get_by_test_id("tenant-switcher")).to_contain_text(
                "Acme", timeout=TIMEOUT_MS
            )


# -- 5. a new conversation reaches the others live ---------------------------------------------


def test_a_new_group_appears_live_for_everyone_in_it_before_its_first_message(
    browser: Browser, backend: Backend
) -> None:
    title = f"Fresh {_tag()}"
    with (
        signed_in(browser, backend, "bob") as (_, bob_tab),
        signed_in(browser, backend, "alice") as (_, alice_tab),
    ):
        expect(_row(bob_tab, title)).to_have_count(0)
        alice_tab.get_by_test_id("new-conversation").click()
        alice_tab.get_by_test_id("pick-person").filter(has_text="Bob").locator(
            "button[role=checkbox]"
        ).click()
        alice_tab.fill("input[name=title]", title)
        alice_tab.get_by_test_id("start-conversation").click()
        expect(alice_tab.get_by_test_id("chat-title")).to_have_text(title, timeout=TIMEOUT_MS)
        # Bob did nothing: the group is in his list, with no message yet.
        expect(_row(bob_tab, title)).to_contain_text("No messages yet", timeout=TIMEOUT_MS)


# -- 6. "Start" with nobody picked ------------------------------------------------------------


def test_start_with_nobody_picked_keeps_the_dialog_open_and_says_why(
    browser: Browser, backend: Backend
) -> None:
    title = f"Picked {_tag()}"
    with signed_in(browser, backend, "alice") as (_, tab):
        tab.get_by_test_id("new-conversation").click()
        dialog = tab.get_by_role("dialog")
        expect(dialog).to_be_visible()
        tab.get_by_test_id("start-conversation").click()
        expect(tab.get_by_test_id("new-conversation-error")).to_have_text(
            "Pick at least one person.", timeout=TIMEOUT_MS
        )
        expect(dialog).to_be_visible()
        # Put right, it goes through and the dialog closes.
        tab.get_by_test_id("pick-person").filter(has_text="Carol").locator(
            "button[role=checkbox]"
        ).click()
        tab.fill("input[name=title]", title)
        tab.get_by_test_id("start-conversation").click()
        expect(tab.get_by_test_id("chat-title")).to_have_text(title, timeout=TIMEOUT_MS)
        expect(dialog).to_have_count(0)
        # Opened again, the dialog has no error left from last time.
        tab.get_by_test_id("new-conversation").click()
        expect(tab.get_by_role("dialog")).to_be_visible()
        expect(tab.get_by_test_id("new-conversation-error")).to_have_count(0)


# -- 9. older history ---------------------------------------------------------------------------


def test_older_messages_load_above_without_moving_the_view_and_by_scrolling_up(
    browser: Browser, backend: Backend
) -> None:
    title = f"Older {_tag()}"
    _group(backend, "bob", ["alice"], title, messages=75)
    with signed_in(browser, backend, "alice") as (_, tab):
        _open(tab, title)
        messages = tab.get_by_test_id("message")
        expect(messages).to_have_count(30, timeout=TIMEOUT_MS)
        _wait_newest_in_view(tab)
        # The button: what was at the top of the view stays there.
        tab.evaluate("document.getElementById('message-list').scrollTop = 300")
        anchor = tab.evaluate(_FIRST_VISIBLE)
        # Clicked where it is (a real click would first scroll it into view, to the top,
        # where scrolling alone loads the page before).
        tab.get_by_test_id("load-older").dispatch_event("click")
        expect(messages).to_have_count(60, timeout=TIMEOUT_MS)
        # Once the new rows are laid out, the same message is at the same place.
        tab.wait_for_function(
            f"""() => {{ const f = ({_FIRST_VISIBLE})();
              return f && f.id === {anchor["id"]!r}
                && Math.abs(f.offset - {anchor["offset"]}) <= 2; }}""",
            timeout=TIMEOUT_MS,
        )
        # Scrolling to the top loads the rest, and the view again stays put.
        tab.evaluate("document.getElementById('message-list').scrollTop = 0")
        expect(messages).to_have_count(75, timeout=TIMEOUT_MS)
        expect(tab.get_by_test_id("message-text").first).to_contain_text("history 000")
        scrolled = tab.evaluate("document.getElementById('message-list').scrollTop")
        assert scrolled > 100, "the view jumped to the top of the new page"
        expect(tab.get_by_test_id("load-older")).to_have_count(0)


# -- 10. a notification with a link -----------------------------------------------------------


def test_clicking_a_notification_opens_its_link_and_marks_it_read(
    browser: Browser, backend: Backend
) -> None:
    title = f"Linked {_tag()}"
    team = _group(backend, "alice", ["bob"], title)
    with signed_in(browser, backend, "bob") as (_, tab), _api(backend, "alice") as alice:
        badge = tab.get_by_test_id("bell-badge")
        before = int(badge.inner_text()) if badge.count() else 0
        response = alice.post(
            "/api/notifications",
            json={
                "userId": _user_id(backend, "bob"),
                "title": f"See {title}",
                "link": f"/?c={team}",
            },
        )
        assert response.status_code == 201, response.text
        expect(badge).to_have_text(str(before + 1), timeout=TIMEOUT_MS)
        tab.get_by_test_id("bell").click()
        tab.get_by_test_id("notification").filter(has_text=f"See {title}").click()
        expect(tab.get_by_test_id("chat-title")).to_have_text(title, timeout=TIMEOUT_MS)
        if before:
            expect(badge).to_have_text(str(before), timeout=TIMEOUT_MS)
        else:
            expect(badge).to_have_count(0, timeout=TIMEOUT_MS)


# -- 12. the smaller ones -----------------------------------------------------------------------


def test_an_empty_conversation_shows_no_time_and_says_it_is_empty(
    browser: Browser, backend: Backend
) -> None:
    title = f"Quiet {_tag()}"
    _group(backend, "carol", ["alice"], title)
    with signed_in(browser, backend, "alice") as (_, tab):
        row = _row(tab, title)
        expect(row).to_contain_text("No messages yet", timeout=TIMEOUT_MS)
        expect(row.get_by_test_id("conversation-time")).to_have_count(0)
        _open(tab, title)
        expect(tab.get_by_test_id("no-messages")).to_be_visible(timeout=TIMEOUT_MS)


def test_a_long_preview_ends_at_a_word_with_an_ellipsis_live_and_after_a_reload(
    browser: Browser, backend: Backend
) -> None:
    title = f"Preview {_tag()}"
    team = _group(backend, "bob", ["alice"], title)
    text = " ".join(f"word{i:02d}" for i in range(40))
    with signed_in(browser, backend, "alice") as (_, tab), _api(backend, "bob") as bob:
        _post(bob, team, text)
        preview = _row(tab, title).get_by_test_id("preview-text")
        for _ in range(2):  # live, then as the snapshot after a reload shows it
            expect(preview).to_have_text(re.compile(r"^word00 .* word\d\d…$"), timeout=TIMEOUT_MS)
            shown = preview.inner_text()
            assert text.startswith(shown.removesuffix("…")), shown  # cut between words
            tab.reload()


def test_the_tab_title_carries_the_unread_total(browser: Browser, backend: Backend) -> None:
    title = f"Title {_tag()}"
    team = _group(backend, "alice", ["bob"], title)
    with signed_in(browser, backend, "bob") as (_, tab), _api(backend, "alice") as alice:
        _post(alice, team, "count me")
        total = tab.get_by_test_id("total-unread")
        expect(_row(tab, title).get_by_test_id("unread-badge")).to_have_text(
            "1", timeout=TIMEOUT_MS
        )
        expect(tab).to_have_title(f"({total.inner_text()}) Chat", timeout=TIMEOUT_MS)
        _open(tab, title)
        expect(_row(tab, title).get_by_test_id("unread-badge")).to_have_count(0, timeout=TIMEOUT_MS)
        if total.count():
            expect(tab).to_have_title(f"({total.inner_text()}) Chat", timeout=TIMEOUT_MS)
        else:
            expect(tab).to_have_title("Chat", timeout=TIMEOUT_MS)


def test_people_are_reachable_at_phone_width(browser: Browser, backend: Backend) -> None:
    with signed_in(browser, backend, "alice") as (_, tab):
        tab.set_viewport_size({"width": 390, "height": 800})
        button = tab.get_by_test_id("people-button")
        expect(button).to_be_visible(timeout=TIMEOUT_MS)
        button.click()
        popover = tab.get_by_test_id("people-popover")
        expect(popover.locator("[data-testid=person][data-name='Bob']")).to_be_visible(
            timeout=TIMEOUT_MS
        )
        # On a laptop the People pane shows them, and the button is not needed.
        tab.keyboard.press("Escape")
        tab.set_viewport_size({"width": 1280, "height": 800})
        expect(button).to_be_hidden()
