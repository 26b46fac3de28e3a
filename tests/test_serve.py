"""The production start (scripts/serve: granian, app.asgi:create) serves the same stream.

It sends event bodies through the server's own `send` (app/asgi.py); this shows that path
delivers exactly what the ordinary one does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend import ROOT, TEST_ENV, free_port, open_stream


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir: Path = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {
        **os.environ,
        **TEST_ENV,
        "DATABASE_URL": f"sqlite:///{workdir / 'chat.db'}",
        # Its own compile output: the shared test app serves the built frontend from .web.
        "REFLEX_WEB_WORKDIR": str(workdir / ".web"),
        "REFLEX_STATES_WORKDIR": str(workdir / ".states"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    with (workdir / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "serve")], cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (workdir / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "scripts/serve did not start"
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def _token(url: str, username: str) -> str:
    response = httpx.post(
        f"{url}/api/auth/token", json={"username": username, "password": f"{username}-pass"}
    )
    return response.json()["access_token"]


async def test_the_production_start_streams_events_and_replays(served: str) -> None:
    alice, bob = _token(served, "alice"), _token(served, "bob")
    async with httpx.AsyncClient(base_url=served, timeout=httpx.Timeout(10, read=30)) as http:
        bob_id = (await http.get("/api/me", headers={"Authorization": f"Bearer {bob}"})).json()["id"]

        async def notify(title: str) -> None:
            response = await http.post(
                "/api/notifications",
                json={"userId": bob_id, "title": title},
                headers={"Authorization": f"Bearer {alice}"},
            )
            assert response.status_code == 201

        async with open_stream(http, bob) as stream:
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            assert stream.response.headers["cache-control"] == "no-cache, no-transform"
            await notify("one")
            first = await stream.next()
            await notify("two")
            second = await stream.next()
        await notify("three")
        async with open_stream(http, bob, headers={"Last-Event-ID": first.id}) as stream:
            replayed = [await stream.next(), await stream.next()]
    assert [json.loads(e.data)["title"] for e in (first, second)] == ["one", "two"]
    assert [json.loads(e.data)["title"] for e in replayed] == ["two", "three"]
    assert replayed[0].id == second.id
