"""`reflex run --env prod` with several backend workers: Reflex state and our events in Redis.

The documented scale-out mode: REFLEX_REDIS_URL makes Reflex start several workers and keep
page state in Redis; REDIS_URL makes our broker carry events between those workers. A tab
lives on one worker, REST calls land on any: every event must still reach the tab.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.backend import Backend, start_backend
from tests.browser import signed_in
from tests.redis_server import RedisServer

TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def workers(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    redis_server.flush()
    workdir: Path = tmp_path_factory.mktemp("workers")
    backend = start_backend(
        workdir,
        {
            "REDIS_URL": redis_server.url.replace("/0", "/2"),
            "REFLEX_REDIS_URL": redis_server.url.replace("/0", "/3"),
            # Its own frontend build: a build bakes in its backend's address, and the shared
            # test app serves the one in the project's .web.
            "REFLEX_WEB_WORKDIR": str(workdir / ".web"),
            "REFLEX_STATES_WORKDIR": str(workdir / ".states"),
        },
    )
    try:
        yield backend
    finally:
        backend.stop()


def _processes_in_group(pgid: int) -> int:
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of /proc/<pid>/stat: the process group
            count += 1
    return count


def test_several_workers_serve_one_tab_with_every_event(browser: Browser, workers: Backend) -> None:
    assert workers.process is not None
    # reflex, its server supervisor, and (cores * 2 + 1) workers once Reflex sees Redis.
    assert _processes_in_group(workers.process.pid) >= 4
    with (
        signed_in(browser, workers, "bob") as (_, bob),
        signed_in(browser, workers, "alice") as (_, alice),
    ):
        for n in range(6):  # new connections: spread over the workers
            with httpx.Client(base_url=workers.url, timeout=10) as api:
                token = workers.token("alice")
                bob_id = api.get(
                    "/api/me", headers={"Authorization": f"Bearer {workers.token('bob')}"}
                ).json()["id"]
                response = api.post(
                    "/api/notifications",
                    json={"userId": bob_id, "title": f"note {n}"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert response.status_code == 201
        expect(bob.get_by_test_id("bell-badge")).to_have_text("6", timeout=TIMEOUT_MS)
        alice.locator("[data-testid=conversation][data-name='Bob']").click()
        alice.fill("#composer", "across workers")
        alice.press("#composer", "Enter")
        expect(bob.locator("[data-testid=conversation][data-name='Alice']")).to_contain_text(
            "across workers", timeout=TIMEOUT_MS
        )
