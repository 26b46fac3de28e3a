"""The pages in Reflex's development mode (`./scripts/run`'s), where React reports what it
does not like: a first day of use must leave the console free of warnings and errors
(issue 15, bug 12: "UNSAFE_componentWillMount ... SideEffect" from a Helmet script, and
"Checkbox is changing from uncontrolled to controlled").

A dev server of its own: `reflex run --env dev`, its frontend and backend on two ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, expect

from tests.backend import running_backend

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def dev_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir: Path = tmp_path_factory.mktemp("dev")
    with running_backend(workdir, mode="dev", separate_frontend=True) as dev:
        yield dev.page_url


def test_a_first_day_of_use_leaves_the_console_clean(browser: Browser, dev_url: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    said: list[str] = []

    def heard(message: ConsoleMessage) -> None:
        if message.type in ("warning", "error"):
            said.append(f"{message.type}: {message.text[:300]}")

    page.on("console", heard)
    page.on("pageerror", lambda error: said.append(f"pageerror: {error}"))
    try:
        page.goto(f"{dev_url}/login/")
        expect(page.get_by_test_id("ready")).to_be_attached(timeout=60_000)
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "alice-pass")
        page.click("button[type=submit]")
        expect(page.get_by_test_id("live")).to_be_visible(timeout=60_000)
        # A conversation, a message, the new-conversation dialog with a pick, the settings.
        page.locator("[data-testid=conversation][data-name='Acme team']").click()
        expect(page.get_by_test_id("chat-title")).to_have_text("Acme team", timeout=TIMEOUT_MS)
        page.locator("#composer").fill("hello from the dev console test")
        page.locator("#composer").press("Enter")
        expect(page.get_by_test_id("message-text").last).to_have_text(
            "hello from the dev console test", timeout=TIMEOUT_MS
        )
        page.get_by_test_id("new-conversation").click()
        page.get_by_test_id("pick-person").first.locator("button[role=checkbox]").click()
        expect(
            page.get_by_test_id("pick-person").first.locator("button[role=checkbox]")
        ).to_have_attribute("data-state", "checked")
        page.keyboard.press("Escape")
        page.get_by_test_id("conversation-settings").click()
        expect(page.get_by_test_id("settings-dialog")).to_be_visible(timeout=TIMEOUT_MS)
        page.keyboard.press("Escape")
        page.reload()
        expect(page.get_by_test_id("live")).to_be_visible(timeout=60_000)
    finally:
        page.close()
    assert said == []
