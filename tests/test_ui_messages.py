"""Messages as chat users expect them, in Chromium (issue 15): edit and delete one's own,
links and formatting, mentions, day separators, the full time on hover and the unread
divider. Alice and bob each in a browser of their own."""

from __future__ import annotations

import re
import uuid

import httpx
from playwright.sync_api import Browser, Locator, Page, expect

from tests.backend import Backend, bearer, cached_token
from tests.browser import signed_in

TIMEOUT_MS = 15_000


def _api(backend: Backend, username: str) -> httpx.Client:
    return httpx.Client(
        base_url=backend.url, headers=bearer(cached_token(backend, username)), timeout=10
    )


def _group(backend: Backend, owner: str, others: list[str]) -> tuple[int, str]:
    title = f"Words {uuid.uuid4().hex[:8]}"
    with _api(backend, owner) as api:
        members = api.get("/api/members").json()["items"]
        ids = [m["id"] for m in members if m["username"] in others]
        response = api.post("/api/conversations", json={"participantIds": ids, "title": title})
        assert response.status_code == 201, response.text
        return int(response.json()["id"]), title


def _open(page: Page, title: str) -> None:
    page.locator(f"[data-testid=conversation][data-name='{title}']").click()
    expect(page.get_by_test_id("chat-title")).to_have_text(title, timeout=TIMEOUT_MS)


def _send(page: Page, text: str) -> Locator:
    page.locator("#composer").fill(text)
    page.locator("#composer").press("Enter")
    message = page.get_by_test_id("message").filter(has_text=text.splitlines()[0][:20]).last
    expect(message).to_be_visible(timeout=TIMEOUT_MS)
    return message


def test_alice_edits_and_deletes_her_message_and_bob_sees_both_live(
    browser: Browser, backend: Backend
) -> None:
    _, title = _group(backend, "alice", ["bob"])
    with (
        signed_in(browser, backend, "alice") as (_, alice),
        signed_in(browser, backend, "bob") as (_, bob),
    ):
        _open(alice, title)
        _open(bob, title)
        _send(alice, "first draft of a thought")
        kept = _send(alice, "this one stays")
        on_bob = bob.get_by_test_id("message")
        expect(on_bob).to_have_count(2, timeout=TIMEOUT_MS)

        # Bob has no controls on alice's messages.
        on_bob.first.hover()
        expect(bob.get_by_test_id("message-edit")).to_have_count(0)

        # Alice edits: the new words and "(edited)" reach bob's tab.
        first = alice.get_by_test_id("message").first
        first.hover()
        alice.get_by_test_id("message-edit").first.click()
        box = alice.get_by_test_id("edit-box")
        expect(box).to_have_value("first draft of a thought")
        box.fill("second thought, better")
        alice.get_by_test_id("edit-save").click()
        expect(alice.get_by_test_id("edit-box")).to_have_count(0, timeout=TIMEOUT_MS)
        expect(on_bob.first.get_by_test_id("message-text")).to_have_text(
            "second thought, better", timeout=TIMEOUT_MS
        )
        expect(on_bob.first.get_by_test_id("message-edited")).to_have_text("(edited)")

        # An empty edit is refused readably, and Cancel leaves the message as it was.
        alice.get_by_test_id("message").first.hover()
        alice.get_by_test_id("message-edit").first.click()
        alice.get_by_test_id("edit-box").fill("   ")
        alice.get_by_test_id("edit-save").click()
        expect(alice.get_by_test_id("edit-error")).to_have_text(
            "A message cannot be empty: delete it instead."
        )
        alice.get_by_test_id("edit-cancel").click()
        expect(alice.get_by_test_id("edit-box")).to_have_count(0)

        # Alice deletes after a yes: a placeholder stays in its place for both.
        alice.get_by_test_id("message").first.hover()
        alice.get_by_test_id("message-delete").first.click()
        expect(alice.get_by_role("alertdialog")).to_contain_text("Delete this message?")
        alice.get_by_test_id("confirm-delete").click()
        for page in (alice, bob):
            messages = page.get_by_test_id("message")
            expect(messages.first.get_by_test_id("message-deleted")).to_have_text(
                "This message was deleted.", timeout=TIMEOUT_MS
            )
            expect(messages).to_have_count(2)
            expect(page.get_by_text("second thought, better")).to_have_count(0)
        expect(kept).to_contain_text("this one stays")
        # No controls on a deleted message.
        alice.get_by_test_id("message").first.hover()
        expect(
            alice.get_by_test_id("message").first.locator("..").get_by_test_id("message-edit")
        ).to_have_count(0)


def test_links_formatting_and_mentions_render_and_markup_stays_text(
    browser: Browser, backend: Backend
) -> None:
    conversation_id, title = _group(backend, "alice", ["bob"])
    with signed_in(browser, backend, "bob") as (_, bob), _api(backend, "alice") as alice_api:
        _open(bob, title)
        text = (
            "see https://example.com/a_(b) and mailto:ops@example.com, **bold** *it* `x<y`\n"
            "```\n<b>not bold</b>\n```\n"
            "hey @bob <img src=x onerror=alert(1)> javascript:alert(1)"
        )
        posted = alice_api.post(
            f"/api/conversations/{conversation_id}/messages", json={"content": text}
        )
        assert posted.status_code == 201, posted.text
        shown = bob.get_by_test_id("message-text").last
        expect(shown).to_contain_text("see https://example.com/a_(b)", timeout=TIMEOUT_MS)
        links = shown.locator("a")
        expect(links).to_have_count(2)
        for i, href in enumerate(["https://example.com/a_(b)", "mailto:ops@example.com"]):
            expect(links.nth(i)).to_have_attribute("href", href)
            expect(links.nth(i)).to_have_attribute("target", "_blank")
            expect(links.nth(i)).to_have_attribute("rel", "noopener noreferrer")
        expect(shown.locator("strong")).to_have_text("bold")
        expect(shown.locator("em")).to_have_text("it")
        expect(shown.locator("code").first).to_have_text("x<y")
        expect(shown.locator("pre code")).to_have_text("<b>not bold</b>")
        # The mention of the reader stands out; the markup is text, nothing of it runs.
        expect(shown.locator("[data-mention=bob]")).to_have_attribute("data-mention-me", "")
        expect(shown).to_contain_text("<img src=x onerror=alert(1)> javascript:alert(1)")
        expect(shown.locator("img, b, script")).to_have_count(0)


def test_days_are_separated_the_full_time_shows_on_hover_and_unread_is_marked(
    browser: Browser, backend: Backend
) -> None:
    conversation, title = _group(backend, "alice", ["bob"])
    with _api(backend, "alice") as alice:
        for i in range(3):
            alice.post(f"/api/conversations/{conversation}/messages", json={"content": f"read {i}"})
        with signed_in(browser, backend, "bob") as (_, bob):
            _open(bob, title)
            expect(bob.get_by_test_id("message")).to_have_count(3, timeout=TIMEOUT_MS)
            # Everything was unread on opening: the divider is above the first.
            expect(bob.get_by_test_id("unread-divider")).to_have_count(1)
            # Read now; two more arrive while bob is elsewhere: the divider moves to them.
            other_title = next(
                c
                for c in bob.locator("[data-testid=conversation]").all()
                if c.get_attribute("data-name") != title
            ).get_attribute("data-name")
            assert other_title
            _open(bob, other_title)
            for i in range(2):
                alice.post(
                    f"/api/conversations/{conversation}/messages", json={"content": f"unread {i}"}
                )
            row = bob.locator(f"[data-testid=conversation][data-name='{title}']")
            expect(row.get_by_test_id("unread-badge")).to_have_text("2", timeout=TIMEOUT_MS)
            _open(bob, title)
            expect(bob.get_by_test_id("message")).to_have_count(5, timeout=TIMEOUT_MS)
            divider = bob.get_by_test_id("unread-divider")
            expect(divider).to_have_count(1)
            expect(divider).to_have_text("New messages")
            # The divider sits right above "unread 0".
            after = bob.evaluate(
                """() => { const d = document.querySelector('[data-testid=unread-divider]');
                  let n = d.nextElementSibling;
                  while (n && !n.querySelector('[data-testid=message-text]')) n = n.nextElementSibling;
                  return n ? n.innerText : null; }"""
            )
            assert after is not None and "unread 0" in after, after
            # One day separator, today's; the full date and time in the time's title.
            expect(bob.get_by_test_id("day-separator")).to_have_count(1)
            expect(bob.get_by_test_id("day-separator")).to_have_text("Today")
            hover = bob.get_by_test_id("message-time").first.get_attribute("title") or ""
            year = str(bob.evaluate("new Date().getFullYear()"))
            assert year in hover and ":" in hover, hover


def test_at_offers_the_members_and_a_pick_becomes_a_highlighted_mention(
    browser: Browser, backend: Backend
) -> None:
    _, title = _group(backend, "alice", ["bob", "carol"])
    with (
        signed_in(browser, backend, "alice") as (_, alice),
        signed_in(browser, backend, "bob") as (_, bob),
    ):
        _open(alice, title)
        _open(bob, title)
        composer = alice.locator("#composer")
        composer.click()
        composer.press_sequentially("thanks @")
        options = alice.get_by_test_id("mention-option")
        # The other members, not alice herself.
        expect(options).to_have_count(2, timeout=TIMEOUT_MS)
        composer.press_sequentially("b")
        expect(options).to_have_count(1)
        expect(options.first).to_contain_text("@bob")
        composer.press("Enter")  # picks; does not send
        expect(composer).to_have_value("thanks @bob ")
        expect(alice.get_by_test_id("mention-list")).to_have_count(0)
        composer.press_sequentially("and @c")
        composer.press("Escape")
        expect(alice.get_by_test_id("mention-list")).to_have_count(0)
        composer.press_sequentially("arol")
        alice.get_by_test_id("mention-option").first.click()
        expect(composer).to_have_value("thanks @bob and @carol ")
        composer.press("Enter")  # sends
        shown = bob.get_by_test_id("message-text").last
        expect(shown).to_have_text("thanks @bob and @carol", timeout=TIMEOUT_MS)
        expect(shown.locator("[data-mention=bob][data-mention-me]")).to_have_text("@bob")
        expect(shown.locator("[data-mention=carol]")).not_to_have_attribute("data-mention-me", "")


_IN_VIEW = """(id) => {
  const list = document.getElementById('message-list');
  const row = list && list.querySelector(`[data-testid=message][data-id="${id}"]`);
  if (!row) return false;
  const a = list.getBoundingClientRect(), b = row.getBoundingClientRect();
  return b.top >= a.top - 1 && b.bottom <= a.bottom + 1;
}"""


def test_search_finds_an_old_message_and_opens_the_conversation_at_it(
    browser: Browser, backend: Backend
) -> None:
    conversation, title = _group(backend, "alice", ["bob"])
    word = f"zebra{uuid.uuid4().hex[:6]}"
    with _api(backend, "alice") as alice:
        found = alice.post(
            f"/api/conversations/{conversation}/messages",
            json={"content": f"the {word} report is ready"},
        ).json()["id"]
        for i in range(45):  # the message is no longer on the first page
            alice.post(
                f"/api/conversations/{conversation}/messages", json={"content": f"later {i}"}
            )
    with signed_in(browser, backend, "bob") as (_, bob):
        search = bob.get_by_test_id("search-input")
        search.fill("nothing-like-this-anywhere")
        search.press("Enter")
        expect(bob.get_by_test_id("search-empty")).to_have_text(
            "No messages match.", timeout=TIMEOUT_MS
        )
        search.fill(word)
        search.press("Enter")
        result = bob.get_by_test_id("search-result")
        expect(result).to_have_count(1, timeout=TIMEOUT_MS)
        expect(result).to_contain_text(title)
        expect(result.get_by_test_id("search-hit")).to_have_text(word)
        result.click()
        expect(bob.get_by_test_id("chat-title")).to_have_text(title, timeout=TIMEOUT_MS)
        bob.wait_for_function(_IN_VIEW, arg=found, timeout=TIMEOUT_MS)
        expect(bob.locator(f"[data-testid=message][data-id='{found}']")).to_have_attribute(
            "data-focused", "true"
        )
        expect(bob.get_by_test_id("search-results")).to_have_count(0)

        # A link to the message opens the page at it, and the address is plain again.
        bob.goto(f"{backend.url}/?c={conversation}&m={found}")
        expect(bob.get_by_test_id("chat-title")).to_have_text(title, timeout=TIMEOUT_MS)
        bob.wait_for_function(_IN_VIEW, arg=found, timeout=TIMEOUT_MS)
        expect(bob).to_have_url(f"{backend.url}/")


# Records what the page shows through the browser's real Notification API.
_RECORD_NOTIFICATIONS = """() => {
  const Real = window.Notification;
  window.__shown = [];
  window.Notification = class extends Real {
    constructor(title, options) { super(title, options); window.__shown.push([title, options.body]); }
  };
}"""
# Headless Chromium's tabs are never hidden: this one says it is, as a background tab would.
_HIDE = "() => Object.defineProperty(document, 'hidden', {configurable: true, get: () => true})"


def test_desktop_notifications_are_opt_in_and_show_only_while_the_tab_is_hidden(
    browser: Browser, backend: Backend
) -> None:
    conversation, title = _group(backend, "alice", ["bob"])
    with signed_in(browser, backend, "bob") as (context, bob), _api(backend, "alice") as alice:
        context.grant_permissions(["notifications"], origin=backend.url)
        bob.evaluate(_RECORD_NOTIFICATIONS)
        post = f"/api/conversations/{conversation}/messages"
        row = bob.locator(f"[data-testid=conversation][data-name='{title}']")

        # Not opted in: nothing, even hidden.
        bob.evaluate(_HIDE)
        alice.post(post, json={"content": "before opting in"})
        expect(row.get_by_test_id("unread-badge")).to_have_text("1", timeout=TIMEOUT_MS)
        assert bob.evaluate("window.__shown") == []

        bob.get_by_test_id("user-menu").click()
        toggle = bob.get_by_test_id("desktop-notify")
        expect(toggle).to_have_text("Turn desktop notifications on")
        toggle.click()
        expect(bob.get_by_role("menu")).to_have_count(0)
        bob.get_by_test_id("user-menu").click()
        expect(bob.get_by_test_id("desktop-notify")).to_have_text(
            "Turn desktop notifications off", timeout=TIMEOUT_MS
        )
        bob.keyboard.press("Escape")

        alice.post(post, json={"content": "while you were away"})
        expect(row.get_by_test_id("unread-badge")).to_have_text("2", timeout=TIMEOUT_MS)
        bob.wait_for_function("() => window.__shown.length === 1", timeout=TIMEOUT_MS)
        assert bob.evaluate("window.__shown") == [["Alice", "while you were away"]]


def test_a_group_is_renamed_changed_and_left_live_for_everyone_in_it(
    browser: Browser, backend: Backend
) -> None:
    _, title = _group(backend, "alice", ["bob"])
    renamed = f"Renamed {uuid.uuid4().hex[:6]}"
    with (
        signed_in(browser, backend, "alice") as (_, alice),
        signed_in(browser, backend, "bob") as (_, bob),
        signed_in(browser, backend, "carol") as (_, carol),
    ):
        _open(alice, title)
        _open(bob, title)
        alice.get_by_test_id("conversation-settings").click()
        dialog = alice.get_by_test_id("settings-dialog")
        expect(dialog.get_by_test_id("participant")).to_have_count(2)
        dialog.get_by_test_id("rename-input").fill(renamed)
        dialog.get_by_test_id("rename").click()
        # Bob did nothing: his list and his open header follow.
        expect(bob.get_by_test_id("chat-title")).to_have_text(renamed, timeout=TIMEOUT_MS)
        expect(bob.locator(f"[data-testid=conversation][data-name='{renamed}']")).to_have_count(1)

        # Carol is added: the group appears in her list, and bob's header names her.
        dialog.locator(
            "[data-testid=add-candidate][data-name='Carol'] button[role=checkbox]"
        ).click()
        dialog.get_by_test_id("add").click()
        expect(dialog.get_by_test_id("participant")).to_have_count(3, timeout=TIMEOUT_MS)
        expect(carol.locator(f"[data-testid=conversation][data-name='{renamed}']")).to_have_count(
            1, timeout=TIMEOUT_MS
        )
        expect(bob.get_by_test_id("chat-members")).to_contain_text("Carol", timeout=TIMEOUT_MS)

        # Bob is removed: his open conversation closes and says why; it leaves his list.
        dialog.locator("[data-testid=participant][data-name='Bob']").get_by_test_id(
            "remove-person"
        ).click()
        expect(dialog.get_by_test_id("participant")).to_have_count(2, timeout=TIMEOUT_MS)
        expect(bob.get_by_text("You are no longer in that conversation.")).to_be_visible(
            timeout=TIMEOUT_MS
        )
        expect(bob.get_by_test_id("chat-title")).to_have_count(0)
        expect(bob.locator(f"[data-testid=conversation][data-name='{renamed}']")).to_have_count(0)
        alice.keyboard.press("Escape")

        # Carol leaves: alice's header no longer names her.
        _open(carol, renamed)
        carol.get_by_test_id("conversation-settings").click()
        carol.get_by_test_id("leave").click()
        expect(carol.get_by_test_id("chat-title")).to_have_count(0, timeout=TIMEOUT_MS)
        expect(carol.locator(f"[data-testid=conversation][data-name='{renamed}']")).to_have_count(0)
        expect(alice.get_by_test_id("chat-members")).not_to_contain_text(
            "Carol", timeout=TIMEOUT_MS
        )


def test_the_workspace_switcher_says_where_unread_messages_wait(
    browser: Browser, backend: Backend
) -> None:
    with _api(backend, "dave") as dave:  # dave is in Globex only
        carol_id = next(
            m["id"] for m in dave.get("/api/members").json()["items"] if m["username"] == "carol"
        )
        direct = dave.post("/api/conversations", json={"participantIds": [carol_id]}).json()["id"]
        posted = dave.post(
            f"/api/conversations/{direct}/messages", json={"content": "over here, in Globex"}
        )
        assert posted.status_code == 201, posted.text
        with signed_in(browser, backend, "carol") as (_, carol):
            expect(carol.get_by_test_id("tenant-switcher")).to_contain_text("Acme")
            expect(carol.get_by_test_id("workspace-hint")).to_be_visible(timeout=TIMEOUT_MS)
            carol.get_by_test_id("tenant-switcher").click()
            globex = carol.get_by_role("option", name=re.compile("Globex"))
            expect(globex.get_by_test_id("workspace-unread")).to_have_text(re.compile(r"[1-9]\d*"))
            carol.keyboard.press("Escape")
        # Read in Globex (over REST, as carol there): the hint goes on the next look.
        globex_id = next(
            m["tenantId"]
            for m in _me(backend, "carol")["memberships"]
            if m["tenantName"] == "Globex"
        )
        with httpx.Client(
            base_url=backend.url,
            timeout=10,
            headers=bearer(backend.token("carol", tenant=globex_id)),
        ) as there:
            for c in there.get("/api/conversations").json()["items"]:
                if c["unreadCount"]:
                    there.post(f"/api/conversations/{c['id']}/read", json={})
        with signed_in(browser, backend, "carol") as (_, carol):
            expect(carol.get_by_test_id("tenant-switcher")).to_contain_text("Acme")
            expect(carol.get_by_test_id("workspace-hint")).to_have_count(0)


def _me(backend: Backend, username: str) -> dict:
    with _api(backend, username) as api:
        return api.get("/api/me").json()


def test_a_mention_rings_the_bell_and_its_notification_opens_the_message(
    browser: Browser, backend: Backend
) -> None:
    conversation, title = _group(backend, "alice", ["bob"])
    with signed_in(browser, backend, "bob") as (_, bob), _api(backend, "alice") as alice:
        badge = bob.get_by_test_id("bell-badge")
        before = int(badge.inner_text()) if badge.count() else 0
        mention = alice.post(
            f"/api/conversations/{conversation}/messages",
            json={"content": "@bob can you check the numbers?"},
        ).json()["id"]
        for i in range(35):  # the mention is no longer on the first page
            alice.post(f"/api/conversations/{conversation}/messages", json={"content": f"then {i}"})
        expect(badge).to_have_text(str(before + 1), timeout=TIMEOUT_MS)
        bob.get_by_test_id("bell").click()
        notice = bob.get_by_test_id("notification").filter(
            has_text=f"Alice mentioned you in {title}"
        )
        expect(notice).to_contain_text("@bob can you check the numbers?")
        notice.click()
        expect(bob.get_by_test_id("chat-title")).to_have_text(title, timeout=TIMEOUT_MS)
        bob.wait_for_function(_IN_VIEW, arg=mention, timeout=TIMEOUT_MS)
        if before:
            expect(badge).to_have_text(str(before), timeout=TIMEOUT_MS)
        else:
            expect(badge).to_have_count(0, timeout=TIMEOUT_MS)
