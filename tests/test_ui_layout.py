"""Layout regressions a user notices at once, checked by geometry in Chromium."""

from __future__ import annotations

import httpx
from playwright.sync_api import Browser, expect

from tests.backend import Backend, bearer, cached_token, conversation_titled
from tests.browser import signed_in

TIMEOUT_MS = 20_000
PANE_WIDTH = 300  # the conversation list's width on a laptop (app/pages/chat.py)

_BOXES = """() => [...document.querySelectorAll('[data-testid=conversation]')].map((row) => {
  const box = (el) => el ? el.getBoundingClientRect().toJSON() : null;
  return {
    name: row.dataset.name,
    row: box(row),
    time: box(row.querySelector('[data-testid=conversation-time]')),
    badge: box(row.querySelector('[data-testid=unread-badge]')),
    empty: row.textContent.includes('No messages yet'),
  };
})"""


def test_a_long_url_keeps_every_rows_time_and_badge_inside_the_pane(
    browser: Browser, backend: Backend
) -> None:
    alice = cached_token(backend, "alice")
    team = conversation_titled(backend, "alice", "Acme team")
    with signed_in(browser, backend, "bob") as (_, page):
        url = "https://example.com/" + "x" * 300
        response = httpx.post(
            f"{backend.url}/api/conversations/{team}/messages",
            json={"content": f"have a look: {url}"},
            headers=bearer(alice),
        )
        assert response.status_code == 201
        row = page.locator("[data-testid=conversation][data-name='Acme team']")
        expect(row.get_by_test_id("unread-badge")).to_be_visible(timeout=TIMEOUT_MS)
        expect(row).to_contain_text("have a look", timeout=TIMEOUT_MS)
        rows = page.evaluate(_BOXES)
        assert len(rows) >= 2
        for found in rows:
            assert found["row"]["right"] <= PANE_WIDTH + 1, found
            if found["empty"]:  # no message, so no time (tests/test_ui_first_day.py)
                assert found["time"] is None, found
                continue
            assert found["time"] is not None, found
            assert found["time"]["right"] <= found["row"]["right"], found
            if found["badge"] is not None:
                assert found["badge"]["right"] <= found["row"]["right"], found
        assert next(r for r in rows if r["name"] == "Acme team")["badge"] is not None
