"""Sending faster than the rate limit (issue 15, bug 8): nothing is lost, everything goes out
in the order it was typed, and the page says how long the wait is.

A backend of its own, with a small message budget (a burst of 3, then one a second).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.backend import Backend, bearer, running_backend
from tests.browser import signed_in

RATE_LIMITED = {"RATE_LIMIT_MESSAGES_PER_MINUTE": "60", "RATE_LIMIT_MESSAGES_BURST": "3"}
SENDS = 10
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    workdir: Path = tmp_path_factory.mktemp("rate-limited")
    with running_backend(workdir, RATE_LIMITED) as backend:
        yield backend


def test_quick_sends_over_the_limit_all_arrive_in_order_and_the_wait_is_said(
    browser: Browser, limited: Backend
) -> None:
    title = f"Quick {uuid.uuid4().hex[:8]}"
    with httpx.Client(
        base_url=limited.url, headers=bearer(limited.token("bob")), timeout=10
    ) as bob:
        members = bob.get("/api/members").json()["items"]
        alice_id = next(m["id"] for m in members if m["username"] == "alice")
        created = bob.post(
            "/api/conversations", json={"participantIds": [alice_id], "title": title}
        )
        assert created.status_code == 201, created.text
        team = created.json()["id"]
        with signed_in(browser, limited, "alice") as (_, tab):
            tab.locator(f"[data-testid=conversation][data-name='{title}']").click()
            expect(tab.get_by_test_id("chat-title")).to_have_text(title, timeout=TIMEOUT_MS)
            composer = tab.locator("#composer")
            for i in range(SENDS):
                composer.fill(f"quick {i:02d}")
                composer.press("Enter")
                expect(composer).to_have_value("")
            # Held ones are shown as waiting, and the page says for how long.
            expect(tab.get_by_test_id("composer-error")).to_have_text(
                re.compile(
                    r"You are sending messages too fast: \d+ messages? waits?, "
                    r"the next goes out in \d+ s\."
                ),
                timeout=TIMEOUT_MS,
            )
            expect(tab.get_by_test_id("held-message").first).to_be_visible()
            # Then they all go out by themselves, and the wait is over.
            texts = tab.get_by_test_id("message-text")
            expect(texts).to_have_text([f"quick {i:02d}" for i in range(SENDS)], timeout=TIMEOUT_MS)
            expect(tab.get_by_test_id("held-message")).to_have_count(0, timeout=TIMEOUT_MS)
            expect(tab.get_by_test_id("composer-error")).to_have_count(0)
        # Stored once each, in the order they were typed.
        history = bob.get(f"/api/conversations/{team}/messages", params={"limit": 50}).json()
        stored = [m["content"] for m in reversed(history["items"])]
        assert stored == [f"quick {i:02d}" for i in range(SENDS)]
