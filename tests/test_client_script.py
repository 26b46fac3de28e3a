"""`/realtime-client.js` is served by every documented start, where the README imports it.

The README's pages do `import { connect } from "http://localhost:8000/realtime-client.js"`:
the API's address, which is scripts/serve, `reflex run --env prod --backend-only` and the
backend of `reflex run`, none of which serves assets/. Shown here for scripts/serve, the
backend-only start, the backend of `reflex run` (scripts/run) and the single-port prod app: the file as JavaScript, with caching that
revalidates, CORS by the app's origin policy, and a real Chromium page on an allowed origin
importing it cross-origin as a module (a page on another origin cannot).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser

from app.api.client_script import SCRIPT_PATH
from tests.backend import Backend, running_backend

PARTNER = "https://partner.example"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    env = {"CORS_ALLOWED_ORIGINS": PARTNER}
    with running_backend(tmp_path_factory.mktemp("serve"), env, launcher="serve") as server:
        yield server


@pytest.fixture(scope="module")
def backend_only(tmp_path_factory: pytest.TempPathFactory, serve: Backend) -> Iterator[Backend]:
    # scripts/serve's origin too: the browser test's page comes from there.
    allowed = f"{PARTNER},{serve.url}"
    workdir = tmp_path_factory.mktemp("backend-only")
    with running_backend(workdir, {"CORS_ALLOWED_ORIGINS": allowed}, backend_only=True) as server:
        yield server


def assert_serves_the_kit(url: str, allowed_origin: str | None) -> None:
    """The kit as a module a browser runs, cached with revalidation, CORS per policy."""
    script = f"{url}/realtime-client.js"
    with httpx.Client(timeout=10) as http:
        served = http.get(script)
        assert served.status_code == 200, served.text[:200]
        assert served.headers["content-type"].startswith("text/javascript")
        assert served.content == SCRIPT_PATH.read_bytes()
        assert served.headers["x-content-type-options"] == "nosniff"
        assert "max-age=" in served.headers["cache-control"]
        etag = served.headers["etag"]

        again = http.get(script, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag

        head = http.head(script)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"].startswith("text/javascript")

        if allowed_origin is not None:
            cross = http.get(script, headers={"Origin": allowed_origin})
            assert cross.headers["access-control-allow-origin"] == allowed_origin
            assert "origin" in cross.headers["vary"].lower()  # caches keep one per origin
        refused = http.get(script, headers={"Origin": EVIL})
        assert refused.status_code == 200  # a program may fetch it ...
        assert "access-control-allow-origin" not in refused.headers  # ... a page may not import it


def test_scripts_serve_serves_the_kit(serve: Backend) -> None:
    assert_serves_the_kit(serve.url, PARTNER)


def test_the_backend_only_start_serves_the_kit(backend_only: Backend) -> None:
    assert_serves_the_kit(backend_only.url, PARTNER)


def test_the_backend_of_scripts_run_serves_the_kit(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """scripts/run is `reflex run` in dev mode: its backend (on :8000 by default) is where
    the README's import points."""
    workdir = tmp_path_factory.mktemp("dev-backend")
    with running_backend(
        workdir, {"CORS_ALLOWED_ORIGINS": PARTNER}, backend_only=True, mode="dev"
    ) as server:
        assert_serves_the_kit(server.url, PARTNER)


def test_the_single_port_app_serves_the_kit(backend: Backend) -> None:
    assert_serves_the_kit(backend.url, None)  # no CORS_ALLOWED_ORIGINS there


_IMPORT = """async (url) => {
  try {
    const kit = await import(url);
    return typeof kit.connect;
  } catch (error) {
    return `refused: ${error}`;
  }
}"""


def test_a_page_on_an_allowed_origin_imports_the_kit_from_the_api_server(
    browser: Browser, serve: Backend, backend_only: Backend
) -> None:
    """As in the README: the page is elsewhere, the module comes from the API's address."""
    script = f"{backend_only.url}/realtime-client.js"
    # The same server under another name is another origin, and not an allowed one.
    outsider = serve.url.replace("127.0.0.1", "localhost")
    results = {}
    for origin in (serve.url, outsider):
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(f"{origin}/ping")
            results[origin] = page.evaluate(_IMPORT, script)
        finally:
            context.close()
    assert results[serve.url] == "function"
    assert results[outsider].startswith("refused"), results[outsider]
