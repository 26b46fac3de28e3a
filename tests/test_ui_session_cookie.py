"""The browser session in real Chromium: an HttpOnly, SameSite=Strict cookie that page
scripts cannot read, that signs a new tab in, and that signing out revokes and removes."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, expect

from tests.backend import Backend
from tests.browser import open_chat_tab, signed_in

TIMEOUT_MS = 15_000


def _session_cookie(context: BrowserContext, *, present: bool, timeout: float = 10) -> Any:
    """Wait until the session cookie is there (or gone): the page sets it right after
    signing in, with a request of its own."""
    deadline = time.monotonic() + timeout
    while True:
        cookie = next((c for c in context.cookies() if c["name"] == "chat_session"), None)
        if (cookie is not None) == present:
            return cookie
        if time.monotonic() > deadline:
            raise AssertionError(f"session cookie {'never set' if present else 'still set'}")
        time.sleep(0.05)


def _me(backend: Backend, token: str) -> httpx.Response:
    return httpx.get(
        f"{backend.url}/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_the_session_cookie_is_httponly_signs_in_new_tabs_and_dies_with_sign_out(
    browser: Browser, backend: Backend
) -> None:
    with signed_in(browser, backend, "dave") as (context, page):
        cookie = _session_cookie(context, present=True)
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/"
        assert cookie["secure"] is False  # served over plain HTTP here
        assert "chat_session" not in page.evaluate("document.cookie")
        assert _me(backend, cookie["value"]).json()["username"] == "dave"

        # A new tab has no state of its own: the cookie its websocket carried signs it in.
        other_tab = open_chat_tab(context, backend)
        expect(other_tab.get_by_test_id("live")).to_be_visible(timeout=TIMEOUT_MS)

        page.get_by_test_id("user-menu").click()
        page.get_by_test_id("sign-out").click()
        expect(page).to_have_url(re.compile(r"/login/?$"), timeout=TIMEOUT_MS)
        _session_cookie(context, present=False)
        assert _me(backend, cookie["value"]).status_code == 401

        fresh_tab = context.new_page()
        fresh_tab.goto(f"{backend.url}/")
        expect(fresh_tab).to_have_url(re.compile(r"/login/?$"), timeout=TIMEOUT_MS)
