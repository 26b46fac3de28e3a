"""Screenshots of the signed-in chat page for the README (light, dark, phone width).

Usage: start the app (`./scripts/run`), then
    .venv/bin/python scripts/screenshots.py [http://localhost:3000]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import httpx
from playwright.sync_api import Page, ViewportSize, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    expect(page.get_by_test_id("ready")).to_be_attached(timeout=30_000)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-pass")
    page.click("button[type=submit]")
    expect(page.get_by_test_id("live")).to_be_attached(timeout=30_000)  # hidden on phones


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:3000"
    api = sys.argv[2] if len(sys.argv) > 2 else "http://localhost:8000"
    alice = httpx.post(
        f"{api}/api/auth/token", json={"username": "alice", "password": "alice-pass"}
    ).json()
    headers = {"Authorization": f"Bearer {alice['access_token']}"}
    carol = httpx.post(
        f"{api}/api/auth/token", json={"username": "carol", "password": "carol-pass"}
    ).json()
    carol_headers = {"Authorization": f"Bearer {carol['access_token']}"}
    # A few messages that show what the page renders: a link, emphasis, code, a mention, an
    # edit and a deletion.
    team = f"{api}/api/conversations/2/messages"
    httpx.post(
        team,
        headers=headers,
        json={
            "content": "Release notes: https://example.com/notes. Please read **before Friday**, "
            "the `v2` flag is *on* now @bob"
        },
    )
    slip = httpx.post(team, headers=carol_headers, json={"content": "wrong thread, sorry"}).json()
    httpx.delete(f"{team}/{slip['id']}", headers=carol_headers)
    fixed = httpx.post(team, headers=carol_headers, json={"content": "Looks good to me"}).json()
    httpx.patch(
        f"{team}/{fixed['id']}",
        headers=carol_headers,
        json={"content": "Looks good to me, shipping it after lunch"},
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        shots: tuple[tuple[Literal["light", "dark"], ViewportSize, str], ...] = (
            ("light", {"width": 1280, "height": 760}, "chat-light.png"),
            ("dark", {"width": 1280, "height": 760}, "chat-dark.png"),
            ("light", {"width": 390, "height": 760}, "chat-phone.png"),
        )
        for scheme, size, name in shots:
            context = browser.new_context(viewport=size, color_scheme=scheme)
            page = context.new_page()
            sign_in(page, base, "bob")
            page.locator("[data-testid=conversation][data-name='Acme team']").click()
            httpx.post(
                f"{api}/api/conversations/2/typing", json={"isTyping": True}, headers=headers
            )
            expect(page.get_by_test_id("typing")).not_to_have_text("", timeout=10_000)
            page.screenshot(path=str(ROOT / "docs" / name))
            context.close()
        browser.close()


if __name__ == "__main__":
    main()
