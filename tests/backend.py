"""The suite's one way to start the real app, on free loopback ports, and wait until it answers.

Two starts, as people run it:
- `reflex run` (granian): `--env prod` serves the built frontend and the backend on one port
  (the shared backend of the API and browser tests); `backend_only` leaves the frontend out;
  `separate_frontend` is `./scripts/run`'s development start, frontend and backend on two
  ports;
- `scripts/serve` (uvicorn, `app.asgi:create`): the documented production start of the
  backend.

Each waits for `/ping` (and the frontend's sign-in page, when it has its own port) with the
same poll (`_wait_until_ready`), and keeps its port and database across `kill()`/`start()`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import httpx
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent

# Settings the suite relies on: fast heartbeats, a small stream limit, and sign-in limits
# that only the throttle tests reach.
TEST_ENV = {
    "SSE_HEARTBEAT_SECONDS": "1",
    "SSE_MAX_STREAMS_PER_USER": "3",
    "LOGIN_MAX_FAILURES": "3",
    "LOGIN_MAX_FAILURES_PER_ADDRESS": "10000",
    # The suite signs the demo users in far more often than anyone would; cached tokens must
    # outlive that (tests/test_sign_in_hardening.py tests the cap on servers of its own).
    "MAX_TOKENS_PER_USER": "1000",
    # Short presence and typing timings so tests wait seconds, not minutes.
    "PRESENCE_GRACE_SECONDS": "1",
    "TYPING_EXPIRY_SECONDS": "1.5",
    "TYPING_THROTTLE_SECONDS": "0.5",
    # Message and typing limits are tested in-process; here they must not get in the way.
    "RATE_LIMIT_MESSAGES_PER_MINUTE": "100000",
    "RATE_LIMIT_MESSAGES_BURST": "10000",
    "RATE_LIMIT_TYPING_PER_MINUTE": "100000",
    "RATE_LIMIT_TYPING_BURST": "10000",
    "RATE_LIMIT_SEARCHES_PER_MINUTE": "100000",
    "RATE_LIMIT_SEARCHES_BURST": "10000",
    "APP_ENV": "production",
    "REFLEX_TELEMETRY_ENABLED": "false",
    "REFLEX_CHECK_LATEST_VERSION": "false",
}

Launcher = Literal["reflex", "serve"]
# Both starts, for tests that must hold whichever one runs the app (`params=LAUNCHERS`).
LAUNCHERS: tuple[Launcher, ...] = ("reflex", "serve")
# The first production build of the frontend takes the longest.
START_SECONDS = 240.0
# scripts/serve must stop on SIGTERM within this, open streams or not
# (--timeout-graceful-shutdown 5).
SERVE_STOP_SECONDS = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Backend:
    url: str  # the backend: the API, /api/sse, the Reflex socket (and the pages unless apart)
    port: int
    workdir: Path
    extra_env: dict[str, str]
    launcher: Launcher = "reflex"
    backend_only: bool = False
    mode: str = "prod"  # `reflex run --env`: "dev" is what scripts/run starts
    frontend_port: int | None = None  # the pages on a port of their own (dev)
    process: subprocess.Popen[bytes] | None = None
    _log_offset: int = field(default=0)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"backend-{self.port}.log"

    @property
    def page_url(self) -> str:
        """Where the pages are served."""
        if self.frontend_port is None:
            return self.url
        return f"http://127.0.0.1:{self.frontend_port}"

    @property
    def pid(self) -> int:
        """The process started: for scripts/serve, the server itself (it execs uvicorn, one
        worker); for `reflex run`, the CLI above the server."""
        assert self.process is not None
        return self.process.pid

    def log_since_mark(self) -> str:
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode("utf-8", "replace")

    def mark_log(self) -> None:
        self._log_offset = self.log_path.stat().st_size

    def token(self, username: str, tenant: int | None = None) -> str:
        body: dict[str, object] = {"username": username, "password": f"{username}-pass"}
        if tenant is not None:
            body["tenant"] = tenant
        response = httpx.post(f"{self.url}/api/auth/token", json=body, timeout=10)
        response.raise_for_status()
        return response.json()["access_token"]

    def start(self) -> None:
        """Start (again) on the same port and database, and wait until it answers."""
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            **TEST_ENV,
            "DATABASE_URL": f"sqlite:///{self.workdir / 'chat.db'}",
            # Its own compile output: a production build bakes in its backend's address, and
            # pytest sessions running side by side must not rebuild each other's frontend.
            "REFLEX_WEB_WORKDIR": str(self.workdir / ".web"),
            "REFLEX_STATES_WORKDIR": str(self.workdir / ".states"),
            **self.extra_env,
        }
        if self.launcher == "serve":
            env |= {"HOST": "127.0.0.1", "PORT": str(self.port)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ready = [f"{self.url}/ping"]
        if self.frontend_port is not None:
            ready.append(f"{self.page_url}/login/")
        try:
            _wait_until_ready(self.process, ready, self.log_path)
        except BaseException:
            self.stop()
            raise

    def _command(self) -> list[str]:
        if self.launcher == "serve":
            return [str(ROOT / "scripts" / "serve")]
        reflex = str(Path(sys.executable).parent / "reflex")
        port = str(self.port)
        if self.backend_only:
            return [reflex, "run", "--env", self.mode, "--backend-only", "--backend-port", port]
        frontend = str(self.frontend_port or self.port)
        return [
            *(reflex, "run", "--env", self.mode),
            *("--frontend-port", frontend, "--backend-port", port),
        ]

    def kill(self) -> None:
        """SIGKILL, as a crash would: no cleanup runs."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        grace = SERVE_STOP_SECONDS if self.launcher == "serve" else 10.0
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            if self.launcher == "serve":
                raise AssertionError(f"scripts/serve ignored SIGTERM for {grace} s") from None


def _wait_until_ready(process: subprocess.Popen[bytes], urls: list[str], log: Path) -> None:
    """Until every one of `urls` answers 200; fails at once if the process ends."""
    deadline = time.monotonic() + START_SECONDS
    waiting = list(urls)
    while waiting:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer {waiting} in time:\n{log.read_text()}")
        try:
            if httpx.get(waiting[0], timeout=5).status_code == 200:
                waiting.pop(0)
                continue
        except httpx.TransportError:
            pass
        time.sleep(0.1)


def start_backend(
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    launcher: Launcher = "reflex",
    backend_only: bool = False,
    mode: str = "prod",
    separate_frontend: bool = False,
) -> Backend:
    port = free_port()
    backend = Backend(
        url=f"http://127.0.0.1:{port}",
        port=port,
        workdir=workdir,
        extra_env=extra_env or {},
        launcher=launcher,
        backend_only=backend_only,
        mode=mode,
        frontend_port=free_port() if separate_frontend else None,
    )
    backend.start()
    return backend


@contextmanager
def running_backend(
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    launcher: Launcher = "reflex",
    backend_only: bool = False,
    mode: str = "prod",
    separate_frontend: bool = False,
) -> Iterator[Backend]:
    """`start_backend`, stopped again however the block ends."""
    backend = start_backend(
        workdir,
        extra_env,
        launcher=launcher,
        backend_only=backend_only,
        mode=mode,
        separate_frontend=separate_frontend,
    )
    try:
        yield backend
    finally:
        backend.stop()


@contextmanager
def no_errors_logged(backend: Backend) -> Iterator[Backend]:
    """The block fails if `backend` logged an error or a traceback while it ran."""
    backend.mark_log()
    yield backend
    log = backend.log_since_mark()
    assert not error_lines(log), "the backend logged errors during this test:\n" + log


def error_lines(log: str) -> list[str]:
    """The lines of a server log that report an error or a traceback."""
    return [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line]


_TOKENS: dict[tuple[str, str], str] = {}


def cached_token(backend: Backend, username: str) -> str:
    """One token per user and backend: signing in hashes a password, which is slow. Tests
    that revoke a token sign in for their own."""
    key = (backend.url, username)
    if key not in _TOKENS:
        _TOKENS[key] = backend.token(username)
    return _TOKENS[key]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def conversation_titled(backend: Backend, username: str, title: str) -> int:
    """The id of the conversation of `username` titled `title` (e.g. "Acme team")."""
    response = httpx.get(
        f"{backend.url}/api/conversations",
        headers=bearer(cached_token(backend, username)),
        timeout=10,
    )
    return next(c["id"] for c in response.json()["items"] if c["title"] == title)


class Stream:
    """One open `/api/sse` consumer: read the next event with a timeout, never a sleep."""

    def __init__(self, source: EventSource) -> None:
        self.source = source
        self.response = source.response
        self._events = source.aiter_sse()

    async def next(
        self, timeout: float = 5.0, *, pings: bool = False, presence: bool = False
    ) -> ServerSentEvent:
        """The next event, skipping pings and other people's comings and goings unless
        asked for: tests of other features are not about them."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no event in time")
            event = await _with_timeout(self._events.__anext__(), remaining)
            if event.event == "message" and event.data == "" and event.retry is not None:
                continue  # httpx-sse surfaces the opening `retry:` block as an empty event
            if event.event == "ping" and not pings:
                continue
            if event.event == "presence:update" and not presence:
                continue
            return event

    async def ended(self, timeout: float = 5.0) -> bool:
        """True when the server closes the stream within `timeout` (pings are skipped)."""
        try:
            await self.next(timeout)
        except StopAsyncIteration:
            return True
        return False


async def _with_timeout(awaitable: Awaitable[T], timeout: float) -> T:
    import asyncio

    return await asyncio.wait_for(awaitable, timeout)


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient,
    token: str | None,
    *,
    params: dict[str, str] | None = None,
    headers: Mapping[str, str | bytes] | None = None,
) -> AsyncIterator[Stream]:
    all_headers: dict[str, str | bytes] = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    async with aconnect_sse(http, "GET", "/api/sse", params=params, headers=all_headers) as source:
        # Refusals are for the test to read; an answer of 200 must be an event stream (a page
        # of a catch-all route would read as a stream that never sends anything).
        if source.response.status_code == 200:
            content_type = source.response.headers.get("content-type", "")
            assert content_type.partition(";")[0].strip() == "text/event-stream", content_type
        yield Stream(source)


async def notify(http: httpx.AsyncClient, admin_token: str, user_id: int, title: str) -> None:
    """An admin's notification to `user_id` (POST /api/notifications), accepted."""
    response = await http.post(
        "/api/notifications",
        headers=bearer(admin_token),
        json={"userId": user_id, "type": "info", "title": title, "body": "", "link": "/chat"},
    )
    assert response.status_code == 201, response.text


async def direct_conversation(http: httpx.AsyncClient, token: str, other: str) -> int:
    """The id of the caller's 1:1 with `other` (a demo user of the caller's tenant)."""
    headers = {"Authorization": f"Bearer {token}"}
    conversations = (await http.get("/api/conversations", headers=headers)).json()["items"]
    other_id = next(
        p["id"]
        for c in conversations
        for p in c["participants"]
        if p["username"] == other and c["kind"] == "direct"
    )
    response = await http.post(
        "/api/conversations", json={"participantIds": [other_id]}, headers=headers
    )
    return int(response.json()["id"])


def assert_database_unavailable(response: httpx.Response) -> None:
    """A 503 of a locked or unreachable database: JSON, with a Retry-After to wait."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "database_unavailable"
    assert int(response.headers["retry-after"]) >= 1


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """The answer to `request`, and how many seconds it took."""
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def message_contents(http: httpx.AsyncClient, token: str, conversation: int) -> list[str]:
    """The contents of a conversation's latest 20 messages, newest first."""
    response = await http.get(
        f"/api/conversations/{conversation}/messages", headers=bearer(token), params={"limit": "20"}
    )
    assert response.status_code == 200, response.text
    return [m["content"] for m in response.json()["items"]]
