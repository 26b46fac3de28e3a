"""assets/realtime-client.js in Node 20 with the `eventsource` npm package, against the real
backend (tests/node/driver.mjs, JSON lines over stdin/stdout).

The scenarios are in tests/js_client.py, written against `JsClientDriver`, so the Chromium
tests (tests/test_client_js_browser.py) run the very same ones through a page.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backend import ROOT, Backend, running_backend
from tests.browser import _fail_under_ci_else_skip
from tests.js_client import (
    NodeDriver,
    backoff_while_refused,
    conversation_filtering,
    gives_up_when_retrying_cannot_help,
    latency_through_a_held_network,
    reconnect_after_restart,
    replay_after_network_drop,
    subscribe_and_unsubscribe,
    token_refresh_after_logout,
)
from tests.tcp_proxy import proxy_in_a_thread

# -- Node ---------------------------------------------------------------------------------------


def test_the_js_kit_listens_for_every_event_type_of_the_server() -> None:
    """EVENT_TYPES is the kit's own copy (it has no dependencies): kept honest here, as
    tests/test_client_python.py keeps the Python kit's."""
    from app.realtime.events import EventType

    node = shutil.which("node")
    if node is None:
        _fail_under_ci_else_skip("Node is not installed")
    script = (
        "const kit = await import(process.argv[1]); console.log(JSON.stringify(kit.EVENT_TYPES));"
    )
    module = (ROOT / "assets" / "realtime-client.js").as_uri()
    printed = subprocess.run(
        [str(node), "--input-type=module", "-e", script, module],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert set(json.loads(printed.stdout)) == {t.value for t in EventType}


@pytest.fixture
def node() -> Iterator[NodeDriver]:
    driver = NodeDriver()
    try:
        yield driver
    finally:
        driver.stop()


@pytest.fixture
def private_backend(tmp_path: Path) -> Iterator[Backend]:
    """A backend of this test's own, to kill and restart."""
    with running_backend(tmp_path, backend_only=True) as server:
        yield server


def test_subscribe_and_unsubscribe_on_one_stream(node: NodeDriver, backend: Backend) -> None:
    subscribe_and_unsubscribe(node, backend.url)


def test_conversation_subscriptions_see_only_their_conversation(
    node: NodeDriver, backend: Backend
) -> None:
    conversation_filtering(node, backend.url)


def test_gives_up_on_403_and_on_401_without_get_token(node: NodeDriver, backend: Backend) -> None:
    gives_up_when_retrying_cannot_help(node, backend.url)


def test_backoff_on_429_then_connects_when_a_slot_frees(node: NodeDriver, backend: Backend) -> None:
    backoff_while_refused(node, backend.url)


def test_new_token_after_logout_and_nothing_lost_or_repeated(
    node: NodeDriver, backend: Backend
) -> None:
    token_refresh_after_logout(node, backend.url)


def test_resync_after_the_backend_restarts(private_backend: Backend, node: NodeDriver) -> None:
    # The client goes first (fixtures end in reverse): a server stops at once with no stream open.
    reconnect_after_restart(node, private_backend)


def test_receive_latency_shows_a_network_that_held_the_event(
    node: NodeDriver, backend: Backend
) -> None:
    with proxy_in_a_thread(backend.port) as proxy:
        latency_through_a_held_network(node, proxy, backend.url)


def test_network_drop_replays_what_was_missed_exactly_once(
    node: NodeDriver, backend: Backend
) -> None:
    with proxy_in_a_thread(backend.port) as proxy:
        replay_after_network_drop(node, proxy, backend.url)
