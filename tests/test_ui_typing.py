"""Who is typing, in the browser, when two people share a name.

Names are not unique: the page keeps typists by user id (assets/live_model.js), so two people
called Bob typing at once are both named. A backend of its own, whose database was seeded and
then had Carol renamed "Bob" before it started: the shared backend's demo names stay as the
other tests expect them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from app.runtime import Runtime
from app.settings import Settings
from tests.backend import Backend, bearer, conversation_titled, running_backend
from tests.browser import signed_in

TIMEOUT_MS = 30_000
TEAM = "Acme team"  # alice, bob and carol
# Typing stops only when the test says so, however slowly the machine runs it.
LONG_TYPING = {"TYPING_EXPIRY_SECONDS": "3600"}


async def _seed(database: Path) -> None:
    runtime = Runtime(replace(Settings(), database_url=f"sqlite:///{database}"))
    await runtime.start()
    await runtime.stop()


@pytest.fixture(scope="module")
def two_bobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    workdir: Path = tmp_path_factory.mktemp("two-bobs")
    # In a thread of its own: sync Playwright may already run an event loop in this one.
    with ThreadPoolExecutor(1) as seeding:
        seeding.submit(asyncio.run, _seed(workdir / "chat.db")).result()
    with sqlite3.connect(workdir / "chat.db") as db:
        renamed = db.execute("UPDATE user SET display_name = 'Bob' WHERE username = 'carol'")
        assert renamed.rowcount == 1
    with running_backend(workdir, LONG_TYPING) as backend:
        yield backend


def _typing(backend: Backend, token: str, conversation: int, is_typing: bool) -> None:
    response = httpx.post(
        f"{backend.url}/api/conversations/{conversation}/typing",
        json={"isTyping": is_typing},
        headers=bearer(token),
        timeout=10,
    )
    assert response.status_code == 204, response.text


def test_two_people_of_the_same_name_typing_are_both_named(
    browser: Browser, two_bobs: Backend
) -> None:
    team = conversation_titled(two_bobs, "alice", TEAM)
    bob, carol = two_bobs.token("bob"), two_bobs.token("carol")
    with signed_in(browser, two_bobs, "alice") as (_, alice_tab):
        alice_tab.locator(f"[data-testid=conversation][data-name='{TEAM}']").click()
        expect(alice_tab.get_by_test_id("chat-title")).to_have_text(TEAM, timeout=TIMEOUT_MS)
        typing = alice_tab.get_by_test_id("typing")
        _typing(two_bobs, bob, team, True)
        expect(typing).to_have_text("Bob is typing…", timeout=TIMEOUT_MS)
        _typing(two_bobs, carol, team, True)
        expect(typing).to_have_text("Bob and Bob are typing…", timeout=TIMEOUT_MS)
        # One of them stops: the other is still typing, and still shown.
        _typing(two_bobs, bob, team, False)
        expect(typing).to_have_text("Bob is typing…", timeout=TIMEOUT_MS)
        _typing(two_bobs, carol, team, False)
        expect(typing).to_have_text("", timeout=TIMEOUT_MS)
