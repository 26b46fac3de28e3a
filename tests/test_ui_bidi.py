"""User text is bidi-isolated: a U+202E (RIGHT-TO-LEFT OVERRIDE) in a name, title, message
or notification reverses that string only, never the text the page puts around it.

The tests read the page's geometry: where Chromium actually drew each piece of text
(Range.getBoundingClientRect), so "the text after the user string stays to its right" is
checked on the rendering, not on the DOM.

People with an override in their display name cannot be made over the API, so this module
adds a tenant of its own to the shared backend's database (three people nobody else's
tests know about): Viv watches in the browser, "\u202eevil" (an admin) writes, Tom is there.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.backend import Backend, bearer, cached_token
from tests.browser import signed_in

TIMEOUT_MS = 15_000
RLO = "\u202e"
EVIL = f"{RLO}evil"
ROW = "[data-testid=conversation]"
# The member list is the element right after the title (it has no test id before the fix).
MEMBERS = "[data-testid=chat-title] + *"
# Half a pixel of slack for sub-pixel text positions.
SLACK = 0.5


@dataclass(frozen=True)
class People:
    viv: str
    eve: str
    tom: str
    viv_id: int
    eve_id: int
    tom_id: int


@pytest.fixture(scope="module")
def people(backend_process: Backend) -> People:
    """A tenant of this module's own: Viv (member), "\u202eevil" (admin), Tom (member)."""
    from sqlalchemy import create_engine
    from sqlmodel import Session

    from app.models import Membership, Role, Tenant, User
    from app.security.passwords import hash_password

    tag = secrets.token_hex(3)
    rows = [
        (f"viv{tag}", "Viv", Role.MEMBER),
        (f"eve{tag}", EVIL, Role.ADMIN),
        (f"tom{tag}", "Tom", Role.MEMBER),
    ]
    engine = create_engine(
        f"sqlite:///{backend_process.workdir / 'chat.db'}", connect_args={"timeout": 30}
    )
    ids: list[int] = []
    try:
        with Session(engine) as session:
            tenant = Tenant(slug=f"bidi-{tag}", name="Bidi")
            session.add(tenant)
            session.flush()
            for username, display_name, role in rows:  # ids in this order: Viv < evil < Tom
                user = User(
                    username=username,
                    display_name=display_name,
                    password_hash=hash_password(f"{username}-pass"),
                    default_tenant_id=tenant.id,
                )
                session.add(user)
                session.flush()
                assert user.id is not None
                membership = Membership(
                    user_id=user.id,
                    tenant_id=cast(int, tenant.id),  # the flush above gave the tenant its id
                    role=role.value,
                )
                session.add(membership)
                ids.append(user.id)
            session.commit()
    finally:
        engine.dispose()
    return People(rows[0][0], rows[1][0], rows[2][0], *ids)


@pytest.fixture
def eve(backend: Backend, people: People) -> Iterator[httpx.Client]:
    """The API as "\u202eevil"."""
    with httpx.Client(
        base_url=backend.url, headers=bearer(cached_token(backend, people.eve)), timeout=10
    ) as client:
        yield client


# Where the characters of each needle were drawn, inside the first element matching
# `selector` whose text contains `contains`; null until all are there and drawn (so
# wait_for_function waits for them). The text may be split over any number of elements.
_LAYOUT_JS = """
({selector, contains, needles}) => {
  const root = [...document.querySelectorAll(selector)].find(
    (e) => e.textContent.includes(contains) && e.checkVisibility());
  if (!root) return null;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const nodes = [];
  let text = "";
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    nodes.push([n, text.length]);
    text += n.data;
  }
  const at = (offset, isEnd) => {
    for (const [n, start] of nodes) {
      const end = start + n.data.length;
      if (isEnd ? offset > start && offset <= end : offset >= start && offset < end) {
        return [n, offset - start];
      }
    }
    return null;
  };
  const out = {};
  for (const needle of needles) {
    const i = text.indexOf(needle);
    if (i < 0) return null;
    const range = document.createRange();
    range.setStart(...at(i, false));
    range.setEnd(...at(i + needle.length, true));
    const r = range.getBoundingClientRect();
    if (!r.width) return null;
    out[needle] = {left: r.left, right: r.right, top: r.top, bottom: r.bottom};
  }
  return out;
}
"""

# Every visible text node that holds an override must be the whole text of an element
# with dir="auto" and an isolating unicode-bidi: then the override ends with that element.
_NOT_ISOLATED_JS = """
() => {
  const bad = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.data.includes("\\u202e")) continue;
    const el = n.parentElement;
    if (!el || !el.checkVisibility()) continue;
    const ok = el.getAttribute("dir") === "auto"
      && ["isolate", "plaintext"].includes(getComputedStyle(el).unicodeBidi)
      && el.textContent === n.data;
    if (!ok) bad.push(el.outerHTML.slice(0, 160));
  }
  return bad;
}
"""


def _layout(page: Page, selector: str, contains: str, *needles: str) -> dict[str, dict[str, float]]:
    handle = page.wait_for_function(
        _LAYOUT_JS,
        arg={"selector": selector, "contains": contains, "needles": list(needles)},
        timeout=TIMEOUT_MS,
    )
    return handle.json_value()


def _in_reading_order(layout: dict[str, dict[str, float]], *needles: str) -> None:
    """Each needle drawn on the same line as the previous one, and to its right."""
    for before, after in itertools.pairwise(needles):
        a, b = layout[before], layout[after]
        assert abs(a["top"] - b["top"]) < 4, f"{before!r}, {after!r} not on one line: {layout}"
        assert a["right"] <= b["left"] + SLACK, (
            f"{after!r} is drawn left of {before!r} (the override leaked out): {layout}"
        )


def _assert_overrides_are_isolated(page: Page) -> None:
    assert page.evaluate(_NOT_ISOLATED_JS) == []


def _create(eve: httpx.Client, people: People, title: str | None = None) -> int:
    body: dict[str, Any] = {"participantIds": [people.viv_id, people.tom_id]}
    if title is not None:
        body["title"] = title
    response = eve.post("/api/conversations", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _post(eve: httpx.Client, conversation_id: int, content: str) -> None:
    response = eve.post(f"/api/conversations/{conversation_id}/messages", json={"content": content})
    assert response.status_code == 201, response.text


def test_the_open_conversation_keeps_its_order_around_an_override(
    browser: Any, backend: Backend, people: People, eve: httpx.Client
) -> None:
    tag = secrets.token_hex(3)
    conversation = _create(eve, people)  # untitled: named after the others, "\u202eevil, Tom"
    _post(eve, conversation, f"{EVIL} {tag}")
    with signed_in(browser, backend, people.viv) as (_, page):
        page.get_by_test_id("conversation").filter(has_text=tag).click()
        expect(page.get_by_test_id("chat-title")).to_contain_text("Tom", timeout=TIMEOUT_MS)
        page.screenshot(path="/tmp/bidi-open-conversation.png")

        # The header: the title (names of the others) and the member list.
        title = _layout(page, "[data-testid=chat-title]", "Tom", "evil", "Tom")
        _in_reading_order(title, "evil", "Tom")
        members = _layout(page, MEMBERS, "Viv", "Viv", "evil", "Tom")
        _in_reading_order(members, "Viv", "evil", "Tom")

        # The message: sender name above the text, the time under it, all from the start edge.
        bubble = _layout(page, "[data-testid=message]", tag, "evil", tag)
        name = bubble["evil"]
        message = page.locator("[data-testid=message]").filter(has_text=tag)
        text_box = message.get_by_test_id("message-text").bounding_box()
        time_box = message.locator("time").bounding_box()
        assert text_box is not None and time_box is not None
        assert name["bottom"] <= text_box["y"] + SLACK, bubble
        assert text_box["y"] + text_box["height"] <= time_box["y"] + SLACK
        assert abs(time_box["x"] - text_box["x"]) < 2, (time_box, text_box)

        # "\u202eevil is typing…": the words after the name stay after it.
        response = eve.post(f"/api/conversations/{conversation}/typing", json={"isTyping": True})
        assert response.status_code == 204
        typing = _layout(page, "[data-testid=typing]", "typing", "evil", "is typing")
        _in_reading_order(typing, "evil", "is typing")
        page.screenshot(path="/tmp/bidi-typing.png")
        eve.post(f"/api/conversations/{conversation}/typing", json={"isTyping": False})

        # The people pane and the new-conversation picker name "\u202eevil" too.
        expect(page.get_by_test_id("person").filter(has_text="evil")).to_be_visible()
        _assert_overrides_are_isolated(page)
        page.get_by_test_id("new-conversation").click()
        expect(page.get_by_test_id("pick-person").filter(has_text="evil")).to_be_visible()
        _assert_overrides_are_isolated(page)


def test_the_conversation_list_keeps_its_order_around_an_override(
    browser: Any, backend: Backend, people: People, eve: httpx.Client
) -> None:
    tag, other_tag = secrets.token_hex(3), secrets.token_hex(3)
    titled = _create(eve, people, title=EVIL)
    _post(eve, titled, f"hello {tag}")
    untitled = _create(eve, people)
    _post(eve, untitled, f"hi {other_tag}")
    with signed_in(browser, backend, people.viv) as (_, page):
        row = page.get_by_test_id("conversation").filter(has_text=tag)
        expect(row).to_be_visible(timeout=TIMEOUT_MS)
        page.screenshot(path="/tmp/bidi-sidebar.png")

        # The preview "\u202eevil: hello …": the message stays right of its sender.
        preview = _layout(page, ROW, tag, "evil:", "hello")
        _in_reading_order(preview, "evil:", "hello")
        # The title "\u202eevil" and the time of the last message, right of it.
        title = _layout(page, ROW, tag, "evil")["evil"]
        time_box = row.locator("time").bounding_box()
        assert time_box is not None
        assert title["right"] <= time_box["x"] + SLACK
        # The avatar shows a letter, not the invisible override.
        expect(row.locator(".rt-AvatarFallback")).to_have_text("E")

        # An untitled group is named after the others: "\u202eevil, Tom", in that order.
        names = _layout(page, ROW, other_tag, "evil", "Tom")
        _in_reading_order(names, "evil", "Tom")
        _assert_overrides_are_isolated(page)


def test_a_notification_keeps_its_order_around_an_override(
    browser: Any, backend: Backend, people: People, eve: httpx.Client
) -> None:
    tag = secrets.token_hex(3)
    with signed_in(browser, backend, people.viv) as (_, page):
        response = eve.post(
            "/api/notifications",
            json={"userId": people.viv_id, "title": f"{EVIL} {tag}", "body": f"{EVIL} body"},
        )
        assert response.status_code == 201, response.text
        expect(page.get_by_test_id("bell-badge")).to_be_visible(timeout=TIMEOUT_MS)
        page.get_by_test_id("bell").click()
        item = page.get_by_test_id("notification").filter(has_text=tag)
        expect(item).to_be_visible(timeout=TIMEOUT_MS)
        page.screenshot(path="/tmp/bidi-bell.png")

        # Title, body, time: one under the other, each from the start edge, none moved.
        title = _layout(page, "[data-testid=notification]", tag, tag)[tag]
        body = _layout(page, "[data-testid=notification]", tag, "body")["body"]
        time_box = item.locator("time").bounding_box()
        assert time_box is not None
        assert title["bottom"] <= body["top"] + SLACK
        assert body["bottom"] <= time_box["y"] + SLACK
        _assert_overrides_are_isolated(page)
