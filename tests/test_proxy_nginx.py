"""The app behind a real nginx running the shipped deploy/nginx.conf, as a deployment runs.

Two sites, one per start, each a backend with nginx in front on another loopback port:
`reflex run --env prod` (pages, websocket and API on one port) and scripts/serve (uvicorn,
the API and the stream's direct path). Both trust TRUSTED_PROXIES = nginx's address
(127.0.0.1) and 127.0.0.5, which plays a load balancer in front of nginx.

Every 127.x address routes to the loopback interface on Linux, so a client picks the
address it calls from (`local_address`) and the tests can be several clients, the proxy, or
a client forging headers. Addresses in 203.0.113.0/24 (documentation range) only ever
appear inside headers, as the public clients a balancer forwards for: nothing connects to
them.

Sync tests throughout: the Chromium test's sync Playwright keeps an event loop running in
this thread for the rest of the module.
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import socketio
from httpx_sse import connect_sse
from playwright.sync_api import Browser, expect

from app.state.session import SessionState
from tests.backend import (
    Backend,
    Launcher,
    bearer,
    free_port,
    no_errors_logged,
    running_backend,
)
from tests.browser import signed_in
from tests.nginx_server import NginxServer, nginx_path, start_nginx
from tests.reflex_socket import NAMESPACE, ReflexTab

pytestmark = pytest.mark.server

NGINX = "127.0.0.1"  # the address nginx connects to the backends from
BALANCER = "127.0.0.5"  # a trusted proxy in front of nginx, played by the tests
PUBLIC_CLIENT = "203.0.113.7"  # a client out on the internet, as the balancer reports it
METRICS_TOKEN = "metrics-secret-for-the-proxy-test"
PER_ADDRESS_FAILURES = 3
TIMEOUT_MS = 15_000
# The figure: an event leaves nginx within this of the publish.
UNBUFFERED_SECONDS = 0.100
# The sign-in page hands the new token to a script that stores the cookie.
BEARER = re.compile(r"Bearer ([A-Za-z0-9_-]{40,})")


@dataclass
class Site:
    backend: Backend
    nginx: NginxServer

    @property
    def url(self) -> str:
        return self.nginx.url

    def via_proxy(self) -> Backend:
        """The backend as a browser sees it: every request through nginx."""
        return replace(self.backend, url=self.nginx.url)

    def client(self, source: str, *, direct: bool = False) -> httpx.Client:
        """An HTTP client calling from the loopback address `source`, through nginx unless
        `direct`."""
        return httpx.Client(
            base_url=self.backend.url if direct else self.nginx.url,
            transport=httpx.HTTPTransport(local_address=source),
            timeout=httpx.Timeout(10.0, read=30.0),
        )


@contextmanager
def _site(workdir: Path, *, launcher: Launcher, extra_env: dict[str, str]) -> Iterator[Site]:
    nginx_path()  # skip (or fail under CI) before minutes of frontend build
    port = free_port()
    proxied = f"http://127.0.0.1:{port}"
    env = {
        "TRUSTED_PROXIES": f"{NGINX},{BALANCER}",
        "LOGIN_MAX_FAILURES_PER_ADDRESS": str(PER_ADDRESS_FAILURES),
        # The pages open their websocket where they were served from: through nginx.
        "REFLEX_API_URL": proxied,
        "REFLEX_DEPLOY_URL": proxied,
        **extra_env,
    }
    (workdir / "backend").mkdir()
    with running_backend(workdir / "backend", env, launcher=launcher) as backend:
        nginx = start_nginx(workdir / "nginx", [f"127.0.0.1:{backend.port}"], port)
        try:
            yield Site(backend, nginx)
        finally:
            nginx.stop()


@pytest.fixture(scope="module")
def reflex_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`reflex run --env prod` behind nginx; /metrics without a token (loopback callers)."""
    with _site(tmp_path_factory.mktemp("proxied-reflex"), launcher="reflex", extra_env={}) as site:
        yield site


@pytest.fixture(scope="module")
def serve_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """scripts/serve behind nginx; /metrics with a token."""
    env = {"METRICS_TOKEN": METRICS_TOKEN}
    with _site(tmp_path_factory.mktemp("proxied-serve"), launcher="serve", extra_env=env) as site:
        yield site


@pytest.fixture(params=["reflex", "serve"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    """Each start behind nginx; the test fails if the backend logged an error meanwhile."""
    chosen: Site = request.getfixturevalue(f"{request.param}_site")
    with no_errors_logged(chosen.backend):
        yield chosen


def _wrong_password(http: httpx.Client) -> httpx.Response:
    # A new name each time: only the per-address budget is spent, never a username's.
    body = {"username": f"nobody-{uuid.uuid4().hex[:8]}", "password": "wrong-pass"}
    return http.post("/api/auth/token", json=body)


def _spend_address_budget(http: httpx.Client) -> None:
    for _ in range(PER_ADDRESS_FAILURES):
        assert _wrong_password(http).status_code == 401
    assert _wrong_password(http).status_code == 429


_addresses = itertools.count(1)


def _unused_address() -> str:
    """A loopback address no earlier test has failed a sign-in from (budgets last 300 s)."""
    return f"127.0.1.{next(_addresses)}"


def test_two_clients_behind_nginx_get_separate_sign_in_budgets(site: Site) -> None:
    first, second = _unused_address(), _unused_address()
    with site.client(first) as spent, site.client(second) as other:
        _spend_address_budget(spent)
        # Before the app believed nginx, every client was 127.0.0.1 and shared this budget.
        assert _wrong_password(other).status_code == 401
        # A header naming another address does not help: nginx appends the real one, and
        # that rightmost untrusted address is the client.
        forged = spent.post(
            "/api/auth/token",
            json={"username": "nobody", "password": "x"},
            headers={"X-Forwarded-For": _unused_address()},
        )
        assert forged.status_code == 429
        assert int(forged.headers["Retry-After"]) > 0
    # The other client signs in as usual.
    with site.client(second) as other:
        response = other.post("/api/auth/token", json={"username": "bob", "password": "bob-pass"})
        assert response.status_code == 200


def test_a_forged_forwarded_for_sent_straight_to_the_backend_is_ignored(site: Site) -> None:
    spent, forger = _unused_address(), _unused_address()
    with site.client(spent) as http:
        _spend_address_budget(http)
    with site.client(forger, direct=True) as direct:
        # Not from a trusted proxy: the header is ignored, the budget is the caller's own.
        headers = {"X-Forwarded-For": spent}
        body = {"username": "nobody", "password": "x"}
        assert direct.post("/api/auth/token", json=body, headers=headers).status_code == 401
        # ... which it spends like anyone else, whatever address it claims.
        for _ in range(PER_ADDRESS_FAILURES - 1):
            headers = {"X-Forwarded-For": _unused_address()}
            assert direct.post("/api/auth/token", json=body, headers=headers).status_code == 401
        assert direct.post("/api/auth/token", json=body, headers=headers).status_code == 429


def test_metrics_behind_nginx_go_by_the_real_client_without_a_token(reflex_site: Site) -> None:
    site = reflex_site
    with no_errors_logged(site.backend):
        # A client on this host, through nginx: loopback, as before.
        with site.client("127.0.0.2") as local:
            assert local.get("/metrics").status_code == 200
        # A public client behind the balancer and nginx: refused. Before, nginx's own
        # 127.0.0.1 was the caller and the figures were public.
        with site.client(BALANCER) as balancer:
            forwarded = {"X-Forwarded-For": PUBLIC_CLIENT}
            refused = balancer.get("/metrics", headers=forwarded)
            assert refused.status_code == 403, refused.text
            # The public client wrote "127.0.0.1" itself; the balancer appended what it saw.
            forged = {"X-Forwarded-For": f"127.0.0.1, {PUBLIC_CLIENT}"}
            assert balancer.get("/metrics", headers=forged).status_code == 403
        # Straight to the backend from a loopback address, the header claiming a public
        # client is not believed either way: the caller is what it is.
        with site.client("127.0.0.2", direct=True) as direct:
            forwarded = {"X-Forwarded-For": PUBLIC_CLIENT}
            assert direct.get("/metrics", headers=forwarded).status_code == 200


def test_metrics_behind_nginx_with_a_token(serve_site: Site) -> None:
    site = serve_site
    with no_errors_logged(site.backend), site.client(BALANCER) as balancer:
        forwarded = {"X-Forwarded-For": PUBLIC_CLIENT}
        assert balancer.get("/metrics", headers=forwarded).status_code == 401
        allowed = balancer.get("/metrics", headers={**forwarded, **bearer(METRICS_TOKEN)})
        assert allowed.status_code == 200
        assert "# TYPE" in allowed.text


Arrivals = queue.Queue[tuple[str, str, float]]


def _read_stream(site: Site, token: str, events: Arrivals, stop: threading.Event) -> None:
    """Every event of one stream through nginx, with the time it arrived, until `stop` (the
    pings, every second here, wake it to look)."""
    try:
        with (
            httpx.Client(base_url=site.url, timeout=httpx.Timeout(10.0, read=30.0)) as http,
            connect_sse(http, "GET", "/api/sse", headers=bearer(token)) as source,
        ):
            assert source.response.status_code == 200
            assert source.response.headers["content-type"].startswith("text/event-stream")
            # nginx keeps the app's instruction to itself.
            assert "x-accel-buffering" not in source.response.headers
            events.put(("opened", "", time.monotonic()))
            for event in source.iter_sse():
                events.put((event.event, event.data, time.monotonic()))
                if stop.is_set():
                    return
    except (httpx.HTTPError, AssertionError) as exc:  # reported by _next_of, not lost here
        events.put(("failed", repr(exc), time.monotonic()))


def test_a_stream_through_nginx_gets_each_event_within_100_ms(site: Site) -> None:
    backend = site.backend
    alice, bob = backend.token("alice"), backend.token("bob")
    with httpx.Client(base_url=site.url, timeout=10, headers=bearer(alice)) as api:
        conversations = api.get("/api/conversations").json()["items"]
        team = next(c["id"] for c in conversations if c["title"] == "Acme team")
        events: Arrivals = queue.Queue()
        stop = threading.Event()
        reader = threading.Thread(target=_read_stream, args=(site, bob, events, stop))
        reader.start()
        try:
            _, _, opened = _next_of(events, "opened", timeout=10)
            # The opening (the `retry:` block, an empty event to httpx-sse) and the first
            # ping (every second here) are a few bytes: a buffering proxy would hold them
            # until kilobytes had gathered.
            _, _, arrived = _next_of(events, "message", timeout=2)
            assert arrived - opened < 1.0
            _next_of(events, "ping", timeout=3)
            delays = []
            for number in range(3):
                content = f"through nginx {number} {uuid.uuid4().hex[:6]}"
                before = time.monotonic()
                sent = api.post(f"/api/conversations/{team}/messages", json={"content": content})
                answered = time.monotonic()
                assert sent.status_code == 201, sent.text
                _, data, arrived = _next_of(events, "chat:message", timeout=5)
                assert json.loads(data)["message"]["content"] == content
                delays.append((arrived - before, arrived - answered))
            for since_post, since_201 in delays:
                assert since_201 < UNBUFFERED_SECONDS, delays
            print(f"through nginx: since the POST / the 201, seconds: {delays}")
        finally:
            stop.set()
            reader.join(timeout=10)
    assert not reader.is_alive()


def _next_of(events: Arrivals, kind: str, *, timeout: float) -> tuple[str, str, float]:
    """The next arrival of `kind`; fails at once if the reader failed."""
    deadline = time.monotonic() + timeout
    while True:
        item = events.get(timeout=max(0.01, deadline - time.monotonic()))
        assert item[0] != "failed", item[1]
        if item[0] == kind:
            return item


class _TabFrom(ReflexTab):
    """A page's websocket opened from the loopback address `source`."""

    def __init__(self, base_url: str, source: str) -> None:
        super().__init__(base_url, path="/login")
        self._source = source

    async def connect(self, **options: Any) -> None:
        connector = aiohttp.TCPConnector(local_addr=(self._source, 0))
        self._session = aiohttp.ClientSession(connector=connector)
        self._sio = socketio.AsyncClient(
            reconnection=False, serializer=self._sio.packet_class, http_session=self._session
        )
        self._sio.on("event", self._received, namespace=NAMESPACE)
        await super().connect(**options)

    async def sign_in(self, username: str) -> None:
        form = {"username": username, "password": f"{username}-pass"}
        await self.call(SessionState, "sign_in", {"form_data": form})

    async def close(self) -> None:
        await super().close()
        await self._session.close()


async def test_the_sign_in_page_through_nginx_throttles_the_real_client(site: Site) -> None:
    """The page signs in over its websocket (Reflex's `client_ip`; scripts/serve sends the
    socket past the app's middleware, app/asgi.py), through nginx too."""
    spent, other = _unused_address(), _unused_address()
    with site.client(spent) as http:
        _spend_address_budget(http)
    refused, accepted = _TabFrom(site.url, spent), _TabFrom(site.url, other)
    try:
        await refused.connect()
        await accepted.connect()
        await refused.sign_in("bob")
        await accepted.sign_in("bob")
        await accepted.wait_for(lambda t: BEARER.search(t.received_text()) is not None, 15)
        await refused.wait_for(lambda t: bool(t.var(SessionState, "login_error")), 15)
        assert "Too many failed sign-in attempts" in refused.var(SessionState, "login_error")
        assert BEARER.search(refused.received_text()) is None
    finally:
        await refused.close()
        await accepted.close()


def _sent_through_nginx(site: Site) -> list[str]:
    return re.findall(r'"GET (/_event\S*) HTTP/1.1" 101', site.nginx.access_log.read_text())


def test_two_people_chat_live_in_chromium_through_nginx(
    browser: Browser, reflex_site: Site, tmp_path: Path
) -> None:
    site = reflex_site
    proxied = site.via_proxy()
    sockets_before = len(_sent_through_nginx(site))
    with (
        no_errors_logged(site.backend),
        signed_in(browser, proxied, "bob") as (_, bob_tab),
        signed_in(browser, proxied, "alice") as (_, alice_tab),
    ):
        assert bob_tab.url.startswith(site.url)
        for tab, other in ((alice_tab, "Bob"), (bob_tab, "Alice")):
            tab.locator(f"[data-testid=conversation][data-name='{other}']").click()
            expect(tab.get_by_test_id("chat-title")).to_have_text(other, timeout=TIMEOUT_MS)
        alice_tab.fill("#composer", "Through the proxy?")
        alice_tab.press("#composer", "Enter")
        expect(bob_tab.get_by_test_id("message-text").last).to_have_text(
            "Through the proxy?", timeout=TIMEOUT_MS
        )
        bob_tab.fill("#composer", "Loud and clear")
        bob_tab.press("#composer", "Enter")
        expect(alice_tab.get_by_test_id("message-text").last).to_have_text(
            "Loud and clear", timeout=TIMEOUT_MS
        )
        bob_tab.screenshot(path=str(tmp_path / "bob-through-nginx.png"))
        print(f"screenshot: {tmp_path / 'bob-through-nginx.png'}")
    # Both pages' sockets were upgraded by nginx, not opened to the backend's own port
    # (nginx logs a socket when it closes).
    deadline = time.monotonic() + 10
    while len(_sent_through_nginx(site)) - sockets_before < 2:
        assert time.monotonic() < deadline, site.nginx.access_log.read_text()[-2000:]
        time.sleep(0.1)
