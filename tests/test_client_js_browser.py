"""assets/realtime-client.js in headless Chromium: a page on the app's origin imports the
module from the app's own assets (`/realtime-client.js`) and runs the same scenarios as the
Node tests (tests/js_client.py, tests/test_client_js_node.py) through the same harness
(tests/node/harness.mjs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.backend import ROOT, Backend, running_backend
from tests.js_client import (
    NODE_DIR,
    JsClientDriver,
    Record,
    backoff_while_refused,
    conversation_filtering,
    gives_up_when_retrying_cannot_help,
    reconnect_after_restart,
    replay_after_network_drop,
    subscribe_and_unsubscribe,
    token_refresh_after_logout,
)
from tests.tcp_proxy import proxy_in_a_thread

# The lightest document the app serves: the page only needs the app's origin.
TEST_PAGE = "/ping"

_SET_UP_HARNESS = """async ({ clientUrl, harnessSource }) => {
  const { connect } = await import(clientUrl);
  const harnessUrl = URL.createObjectURL(new Blob([harnessSource], { type: "text/javascript" }));
  const { createHarness } = await import(harnessUrl);
  window.__records = [];
  const emit = (record) => window.__records.push({ ...record, at: Date.now() });
  window.__harness = createHarness({ connect, EventSource: window.EventSource, emit });
  emit({ kind: "ready" });
}"""


class BrowserDriver(JsClientDriver):
    def __init__(self, page: Page) -> None:
        super().__init__()
        self._page = page

    def _send(self, command: Record) -> None:
        self._page.evaluate("command => window.__harness.run(command)", command)

    def _pull(self, timeout: float) -> list[Record]:
        try:
            self._page.wait_for_function(
                "() => window.__records.length > 0", timeout=max(timeout, 0.05) * 1000
            )
        except PlaywrightTimeout:
            return []
        return self._page.evaluate("() => window.__records.splice(0)")


@contextmanager
def page_client(browser: Browser, origin: str) -> Iterator[BrowserDriver]:
    """A page on `origin` that imported `<origin>/realtime-client.js`."""
    context = browser.new_context()
    try:
        page = context.new_page()
        # A real answer of the server, not one Playwright fulfils: Chromium treats a page of
        # no known address as public and then blocks its requests to loopback origins.
        page.goto(f"{origin}{TEST_PAGE}")
        harness_source = (NODE_DIR / "harness.mjs").read_text()
        page.evaluate(
            _SET_UP_HARNESS,
            {"clientUrl": f"{origin}/realtime-client.js", "harnessSource": harness_source},
        )
        driver = BrowserDriver(page)
        driver.wait_until(lambda records: any(r["kind"] == "ready" for r in records), what="page")
        yield driver
        page.evaluate("() => window.__harness.closeAll()")
    finally:
        context.close()


@pytest.fixture
def client_page(browser: Browser, backend: Backend) -> Iterator[BrowserDriver]:
    with page_client(browser, backend.url) as driver:
        yield driver


def test_the_app_serves_the_module_as_javascript(backend: Backend) -> None:
    """Browsers refuse to import a module served with another type."""
    served = httpx.get(f"{backend.url}/realtime-client.js", timeout=10)
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/javascript")
    assert served.text == (ROOT / "assets" / "realtime-client.js").read_text()


def test_subscribe_and_unsubscribe_on_one_stream(
    client_page: BrowserDriver, backend: Backend
) -> None:
    subscribe_and_unsubscribe(client_page, backend.url)


def test_conversation_subscriptions_see_only_their_conversation(
    client_page: BrowserDriver, backend: Backend
) -> None:
    conversation_filtering(client_page, backend.url)


def test_gives_up_on_403_and_on_401_without_get_token(
    client_page: BrowserDriver, backend: Backend
) -> None:
    gives_up_when_retrying_cannot_help(client_page, backend.url)


def test_backoff_on_429_then_connects_when_a_slot_frees(
    client_page: BrowserDriver, backend: Backend
) -> None:
    """A browser EventSource does not say why it failed: the client learns the 429 itself."""
    backoff_while_refused(client_page, backend.url)


def test_new_token_after_logout_and_nothing_lost_or_repeated(
    client_page: BrowserDriver, backend: Backend
) -> None:
    token_refresh_after_logout(client_page, backend.url)


def test_resync_after_a_cross_origin_backend_restarts(
    browser: Browser, backend: Backend, tmp_path: Path
) -> None:
    """The page comes from the shared app; the stream from a backend of this test's own,
    which allows that origin, is killed and started again."""
    cross_origin = {"CORS_ALLOWED_ORIGINS": backend.url}
    with (
        running_backend(tmp_path, cross_origin, backend_only=True) as server,
        page_client(browser, backend.url) as driver,
    ):
        reconnect_after_restart(driver, server)


def test_network_drop_replays_what_was_missed_exactly_once(
    browser: Browser, backend: Backend
) -> None:
    """Page, module and stream all come through a proxy that cuts every connection and then
    refuses new ones for a while."""
    with proxy_in_a_thread(backend.port) as proxy, page_client(browser, proxy.url) as driver:
        replay_after_network_drop(driver, proxy, backend.url)
