"""No secret at rest in page state, and what the app writes to disk is for its user only.

Issue 13, item 4: Reflex saves every tab's state (pickled, to `.states/` or to Redis with
REFLEX_REDIS_URL). It held the bearer token twice: SessionState's own copy and, in the
router data, the websocket handshake's `Cookie:` header. Tokens copied from those files
were accepted by /api/me. Now the state keeps the token's SHA-256 digest, which no public
entry point accepts, and the files are 0600 in a 0700 folder.

The tests sign in as a page does (SessionState.sign_in over a raw websocket, the token
arriving in the call_script that sets the cookie) and open a second tab with the cookie,
then read the raw bytes of the state store, once on disk and once in Redis.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import pytest
import redis

from app.db import make_engine
from app.security.tokens import token_digest
from app.state.browser_session import without_credentials
from app.state.session import SessionState
from tests.backend import Backend, bearer, error_lines, no_errors_logged, running_backend
from tests.redis_server import RedisServer
from tests.reflex_socket import ReflexTab

PASSWORD = "alice-pass"
# The token reaches the page once, inside the script that asks the API to set the cookie.
BEARER_IN_SCRIPT = re.compile(r"Bearer ([A-Za-z0-9_-]{40,})")


# -- units: the handshake filter and the database file ---------------------------------


def test_the_handshake_keeps_the_session_cookie_as_its_digest_and_no_other_credential() -> None:
    headers = {
        "host": "example.test",
        "cookie": "theme=dark; chat_session=the-token; other=1",
        "authorization": "Bearer another-token",
        "proxy-authorization": "Basic c2VjcmV0",
    }

    kept = without_credentials(headers)

    assert kept == {"host": "example.test", "cookie": f"chat_session={token_digest('the-token')}"}
    # A digest sent as the cookie is hashed again: it is never taken for a session.
    digest = token_digest("the-token")
    assert without_credentials({"cookie": f"chat_session={digest}"})["cookie"] == (
        f"chat_session={token_digest(digest)}"
    )
    assert without_credentials({"host": "h"}) == {"host": "h"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_file_and_a_folder_made_for_it_are_private(tmp_path: Path) -> None:
    new_folder = tmp_path / "made" / "for-it"
    engine = make_engine(f"sqlite:///{new_folder / 'chat.db'}")
    with engine.connect() as connection:  # WAL mode: -wal and -shm exist while it is open
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        files = [new_folder / name for name in ("chat.db", "chat.db-wal", "chat.db-shm")]
        assert all(file.exists() for file in files)
        assert {file.name: _mode(file) for file in files} == {file.name: 0o600 for file in files}
    engine.dispose()
    assert _mode(new_folder) == 0o700

    # An existing database made 0644 (by an earlier version) is tightened; the existing
    # folder it is in is not the app's to change.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    loose = shared / "old.db"
    loose.touch()
    loose.chmod(0o644)
    make_engine(f"sqlite:///{loose}").dispose()
    assert _mode(loose) == 0o600
    assert _mode(shared) == 0o755


# -- the real backend ------------------------------------------------------------------


@dataclass
class SignedIn:
    token: str
    tabs: list[ReflexTab]


async def _sign_in_as_a_page_does(backend: Backend) -> SignedIn:
    """Sign in on the login page, then open a second tab that the cookie signs in."""
    login = ReflexTab(backend.url, path="/login")
    await login.connect()
    form = {"username": "alice", "password": PASSWORD}
    await login.call(SessionState, "sign_in", {"form_data": form})
    await login.wait_for(lambda t: BEARER_IN_SCRIPT.search(t.received_text()) is not None, 15)
    match = BEARER_IN_SCRIPT.search(login.received_text())
    assert match is not None
    token = match.group(1)
    async with httpx.AsyncClient(base_url=backend.url, timeout=10) as http:
        me = await http.get("/api/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["username"] == "alice", me.text

    cookie_tab = ReflexTab(backend.url, session_token=token)
    await cookie_tab.connect()
    await cookie_tab.wait_for(lambda t: (t.var(SessionState, "user_id") or 0) > 0, 15)
    return SignedIn(token=token, tabs=[login, cookie_tab])


async def _wait_for_store(
    read: Callable[[], list[bytes]], needles: list[bytes], timeout: float
) -> list[bytes]:
    """The store's records once every needle is in one of them (the state was saved)."""
    deadline = time.monotonic() + timeout
    while True:
        records = read()
        if all(any(needle in record for record in records) for needle in needles):
            return records
        if time.monotonic() > deadline:
            missing = [n for n in needles if not any(n in r for r in records)]
            raise TimeoutError(f"the state store never held {missing} ({len(records)} records)")
        await asyncio.sleep(0.1)


def _assert_no_secret(records: list[bytes], signed_in: SignedIn) -> None:
    secrets = {"the bearer token": signed_in.token.encode(), "the password": PASSWORD.encode()}
    for what, secret in secrets.items():
        holders = [record[:120] for record in records if secret in record]
        assert not holders, f"{what} is at rest in the state store: {holders}"
    # What is kept instead: the digest (of no use to any public entry point).
    assert any(token_digest(signed_in.token).encode() in record for record in records)


def _saved(signed_in: SignedIn) -> list[bytes]:
    """What shows both tabs' states were saved: their client tokens (in the root state's
    router data, next to the handshake headers) and the signed-in user's name."""
    return [tab.client_token.encode() for tab in signed_in.tabs] + [b"alice"]


@pytest.fixture(scope="module")
def disk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """Reflex's disk store (the app keeps page state in memory unless told otherwise), a
    database in a folder the app creates, and a state file left world-readable by an earlier
    version."""
    workdir: Path = tmp_path_factory.mktemp("at-rest")
    states = workdir / ".states"
    states.mkdir(mode=0o755)
    states.chmod(0o755)
    (states / "left-by-an-earlier-version.pkl").write_bytes(b"old")
    (states / "left-by-an-earlier-version.pkl").chmod(0o644)
    env = {
        "DATABASE_URL": f"sqlite:///{workdir / '.data' / 'chat.db'}",
        "REFLEX_STATES_WORKDIR": str(states),
        "REFLEX_STATE_MANAGER_MODE": "disk",
    }
    with running_backend(workdir, env, backend_only=True) as backend:
        yield backend


@pytest.fixture
async def disk_backend(disk_server: Backend) -> AsyncIterator[Backend]:
    with no_errors_logged(disk_server):
        yield disk_server


def _disk_records(backend: Backend) -> Callable[[], list[bytes]]:
    def read() -> list[bytes]:
        return [path.read_bytes() for path in (backend.workdir / ".states").glob("*.pkl")]

    return read


async def test_the_disk_state_store_holds_no_token_or_password(disk_backend: Backend) -> None:
    signed_in = await _sign_in_as_a_page_does(disk_backend)
    try:
        records = await _wait_for_store(_disk_records(disk_backend), _saved(signed_in), 20)
        _assert_no_secret(records, signed_in)
    finally:
        for tab in signed_in.tabs:
            await tab.close()


async def test_what_the_backend_writes_to_disk_is_for_its_user_only(disk_backend: Backend) -> None:
    states = disk_backend.workdir / ".states"
    signed_in = await _sign_in_as_a_page_does(disk_backend)
    try:
        await _wait_for_store(_disk_records(disk_backend), _saved(signed_in), 20)

        pickles = sorted(states.glob("*.pkl"))
        assert len(pickles) > 2
        assert {p.name: _mode(p) for p in pickles} == {p.name: 0o600 for p in pickles}
        assert _mode(states) == 0o700
        data = disk_backend.workdir / ".data"
        database = [data / name for name in ("chat.db", "chat.db-wal", "chat.db-shm")]
        assert all(file.exists() for file in database)  # WAL: open while the server runs
        assert {f.name: _mode(f) for f in database} == {f.name: 0o600 for f in database}
        assert _mode(data) == 0o700
    finally:
        for tab in signed_in.tabs:
            await tab.close()


async def test_a_digest_or_a_saved_client_token_signs_nobody_in(disk_backend: Backend) -> None:
    signed_in = await _sign_in_as_a_page_does(disk_backend)
    digest = token_digest(signed_in.token)
    cookie_tab = signed_in.tabs[1]
    for tab in signed_in.tabs:
        await tab.close()

    async with httpx.AsyncClient(base_url=disk_backend.url, timeout=10) as http:
        assert (await http.get("/api/me", headers=bearer(digest))).status_code == 401
        response = await http.get("/api/sse", params={"access_token": digest})
        assert response.status_code == 401

    # The digest as the session cookie of a new tab: hashed again, so nobody.
    with_digest = ReflexTab(disk_backend.url, session_token=digest)
    # A saved state's client token, on a new socket without the cookie (as someone who read
    # the store might): the state's digest is bound to the socket that learned it.
    replayed = ReflexTab(disk_backend.url, client_token=cookie_tab.client_token)
    for tab in (with_digest, replayed):
        await tab.connect()
        try:
            await tab.wait_for(lambda t: "/login" in json.dumps(_events(t)), 15)
            assert not tab.var(SessionState, "user_id")
        finally:
            await tab.close()


async def test_with_redis_the_state_store_holds_no_token_or_password(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """REFLEX_REDIS_URL: Reflex keeps page state in Redis and starts several workers."""
    env = {
        "REDIS_URL": redis_server.url.replace("/0", "/4"),
        "REFLEX_REDIS_URL": redis_server.url.replace("/0", "/5"),
    }
    client = redis.Redis(port=redis_server.port, db=5)

    def read() -> list[bytes]:
        return _redis_records(client)

    try:
        with running_backend(tmp_path, env, backend_only=True) as backend:
            backend.mark_log()
            signed_in = await _sign_in_as_a_page_does(backend)
            try:
                records = await _wait_for_store(read, _saved(signed_in), timeout=20)
                # Every database of the server: our broker's too.
                everything = records + _redis_records(redis.Redis(port=redis_server.port, db=4))
                _assert_no_secret(everything, signed_in)
            finally:
                for tab in signed_in.tabs:
                    await tab.close()
            assert not error_lines(backend.log_since_mark()), backend.log_since_mark()
    finally:
        client.close()


def _events(tab: ReflexTab) -> list[object]:
    """What the server asked the tab to do (a redirect is one)."""
    return [update.get("events") for update in tab.updates]


def _redis_records(client: redis.Redis) -> list[bytes]:
    """Every key and value of one Redis database, read by type (DUMP would compress)."""
    # redis-py types each command for its sync and async clients at once (`Awaitable | Any`);
    # this client is the sync one, without decode_responses: the casts say what it returns.
    records: list[bytes] = []
    for key in client.scan_iter(count=1000):
        records.append(key)
        kind = client.type(key)
        if kind == b"string":
            records.append(cast(bytes | None, client.get(key)) or b"")
        elif kind == b"hash":
            for field, value in cast(dict[bytes, bytes], client.hgetall(key)).items():
                records += [field, value]
        elif kind == b"list":
            records += cast(list[bytes], client.lrange(key, 0, -1))
        elif kind == b"set":
            records += list(cast(set[bytes], client.smembers(key)))
        elif kind == b"zset":
            records += cast(list[bytes], client.zrange(key, 0, -1))
        elif kind == b"stream":
            for _, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(key)):
                for field, value in fields.items():
                    records += [field, value]
    return records
