"""Headless Chromium (Debian's package) driven by Playwright; never a downloaded browser."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, NoReturn

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.backend import Backend

# Playwright's `color_scheme` values (Browser.new_context).
ColorScheme = Literal["dark", "light", "no-preference", "null"]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The system Chromium; under CI a missing browser fails the run instead of skipping."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Chromium is not installed (scripts/test installs Debian's chromium as root)"
        _fail_under_ci_else_skip(message)
    return path


@contextmanager
def signed_in(
    browser: Browser, backend: Backend, username: str, *, color_scheme: ColorScheme = "light"
) -> Iterator[tuple[BrowserContext, Page]]:
    """A fresh browser profile signed in as `username`, on the chat page."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, color_scheme=color_scheme
    )
    try:
        page = context.new_page()
        page.goto(f"{backend.url}/login/")
        # A form submitted before the page is connected would be a plain page reload.
        expect(page.get_by_test_id("ready")).to_be_attached(timeout=30_000)
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", f"{username}-pass")
        page.click("button[type=submit]")
        expect(page.get_by_test_id("live")).to_be_visible(timeout=20_000)
        yield context, page
    finally:
        context.close()


def open_chat_tab(context: BrowserContext, backend: Backend) -> Page:
    """Another tab of the same signed-in profile."""
    page = context.new_page()
    page.goto(f"{backend.url}/")
    expect(page.get_by_test_id("live")).to_be_visible(timeout=20_000)
    return page


def _fail_under_ci_else_skip(message: str) -> NoReturn:
    """Under CI=true a missing dependency fails the run; elsewhere the test is skipped."""
    (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(message)
