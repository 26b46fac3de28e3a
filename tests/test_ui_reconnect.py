"""A lost backend connection: the page says so, and recovers by itself when it returns.

This restarts the shared backend (same port, same database); tests after it get the new
process, which is why it lives in a file of its own.
"""

from __future__ import annotations

import httpx
from playwright.sync_api import Browser, expect

from tests.backend import Backend
from tests.browser import signed_in

TIMEOUT_MS = 30_000


def test_the_page_shows_a_lost_connection_and_recovers_when_the_backend_returns(
    browser: Browser, backend: Backend
) -> None:
    with signed_in(browser, backend, "bob") as (_, page):
        backend.stop()
        expect(page.get_by_test_id("connection-lost")).to_be_visible(timeout=TIMEOUT_MS)
        # Words for the person at the page, not Reflex's "... reachable at ws://...".
        toast = page.locator("[data-sonner-toast]").filter(has_text="You are offline")
        expect(toast).to_be_visible(timeout=TIMEOUT_MS)
        expect(toast).to_contain_text("keeps trying to reconnect")
        expect(page.get_by_text("reachable at")).to_have_count(0)
        expect(page.get_by_text("ws://")).to_have_count(0)
        backend.start()
        expect(page.get_by_test_id("live")).to_be_visible(timeout=TIMEOUT_MS)
        expect(toast).to_have_count(0, timeout=TIMEOUT_MS)
        # Live again for real: an event published now reaches the page without a reload.
        headers = {"Authorization": f"Bearer {backend.token('alice')}"}
        bob_id = httpx.get(
            f"{backend.url}/api/me", headers={"Authorization": f"Bearer {backend.token('bob')}"}
        ).json()["id"]
        response = httpx.post(
            f"{backend.url}/api/notifications",
            json={"userId": bob_id, "title": "back online"},
            headers=headers,
        )
        assert response.status_code == 201
        page.get_by_test_id("bell").click()
        expect(page.get_by_test_id("notification").first).to_contain_text(
            "back online", timeout=TIMEOUT_MS
        )
