"""scripts/serve bounds what a client may make it hold before a request even starts.

uvicorn's httptools protocol keeps an unfinished header block without limit and waits for
it forever; app/serve_protocol.py refuses blocks past MAX_HEADER_BYTES with 431 and closes a
connection that has not finished its headers within HEADER_READ_TIMEOUT_SECONDS. Shown here
on the real production start over raw loopback sockets: oversized blocks of every shape get
431 while one just under the limit is served, a 50 MB header flood on several connections
leaves the server's memory flat, a slowloris connection (and a silent one) is closed after
the timeout, and nothing that finished its headers is timed: keep-alive requests, an
/api/sse stream and the Reflex websocket all outlive the timeout.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Self, cast

import httpx
import psutil
import pytest

from app.settings import Settings
from tests.backend import ROOT, Backend, open_stream, running_backend

# Short, so the tests wait for it; the header limit keeps its default (the one shipped).
TIMEOUT = 1.0
LIMIT = Settings().max_header_bytes
MiB = 1024 * 1024

FLOOD_CONNECTIONS = 4
FLOOD_BYTES = 50 * MiB
FLOOD_SECONDS = 60.0  # the bound on the flood; refused, it ends in about a second
# What the flood may add to the server's RSS, at its peak and after. Without the limit the
# four connections took it from 150 to 336 MB (212 MB once they closed).
FLOOD_RSS_GROWTH_BOUND = 16 * MiB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    env = {"HEADER_READ_TIMEOUT_SECONDS": str(TIMEOUT)}
    with running_backend(tmp_path_factory.mktemp("serve-limits"), env, launcher="serve") as served:
        yield served


# -- raw HTTP on loopback ------------------------------------------------------------------


def _connect(server: Backend) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket, limit: int = 1 * MiB) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed)."""
    received = b""
    while len(received) < limit:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        received += chunk
    return received


def _read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length (headers and body may come apart)."""
    received = b""
    while True:
        head, found, body = received.partition(b"\r\n\r\n")
        if found:
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            assert length, head
            if len(body) >= int(length.group(1)):
                return received
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk


def _status(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert match, f"no HTTP answer: {answer[:200]!r}"
    return int(match.group(1))


def _get(path: str, headers: str = "", *, close: bool = True, host: str = "127.0.0.1") -> bytes:
    connection = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}{connection}\r\n".encode()


def _header_lines(total: int, line_size: int) -> str:
    """Headers `X-Pad-<n>: aaa…` of about `line_size` bytes each, `total` bytes in all."""
    lines, size, n = [], 0, 0
    while size < total:
        name = f"X-Pad-{n}: "
        value = "a" * max(1, min(line_size, total - size) - len(name) - 2)
        lines.append(f"{name}{value}\r\n")
        size += len(lines[-1])
        n += 1
    return "".join(lines)


def _ask(server: Backend, request: bytes) -> bytes:
    with _connect(server) as sock:
        sock.sendall(request)
        return _read_until_closed(sock)


# -- the uvicorn internals -----------------------------------------------------------------


def test_the_uvicorn_internals_this_protocol_uses() -> None:
    """app/serve_protocol.py overrides these methods of uvicorn's HttpToolsProtocol and
    reads these attributes: a new uvicorn that renames or reshapes them fails here (and a
    new pin at all fails first: re-read the subclass against the new release)."""
    import uvicorn
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
    from uvicorn.server import ServerState

    from app.serve_protocol import UVICORN_VERSION, BoundedHeadersProtocol

    pinned = re.search(r"^uvicorn==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned, "uvicorn is no longer pinned in requirements.txt"
    assert uvicorn.__version__ == pinned.group(1) == UVICORN_VERSION, (
        "uvicorn moved: check app/serve_protocol.py against its HttpToolsProtocol, "
        "then update UVICORN_VERSION"
    )
    overridden = {
        "__init__": ["self", "config", "server_state", "app_state", "_loop"],
        "connection_made": ["self", "transport"],
        "connection_lost": ["self", "exc"],
        "data_received": ["self", "data"],
        "handle_websocket_upgrade": ["self"],
        "on_message_begin": ["self"],
        "on_url": ["self", "url"],
        "on_header": ["self", "name", "value"],
        "on_headers_complete": ["self"],
        "on_body": ["self", "body"],
        "on_message_complete": ["self"],
    }
    for name, parameters in overridden.items():
        assert name in vars(HttpToolsProtocol), f"HttpToolsProtocol.{name} is gone"
        signature = inspect.signature(getattr(HttpToolsProtocol, name))
        assert list(signature.parameters) == parameters, f"HttpToolsProtocol.{name}{signature}"
    # data_received must hand the bytes to the parser, whose callbacks run before it
    # returns, and must itself call handle_websocket_upgrade.
    source = inspect.getsource(HttpToolsProtocol.data_received)
    assert "self.parser.feed_data(data)" in source and "self.handle_websocket_upgrade()" in source
    # The subclass's own attributes must not be names uvicorn uses itself.
    # A class defined in a module always has one (getmodule answers None for others).
    uvicorn_source = inspect.getsource(cast(ModuleType, inspect.getmodule(HttpToolsProtocol)))
    clashes = [name for name in BoundedHeadersProtocol.__slots__ if f".{name}" in uvicorn_source]
    assert not clashes, clashes

    async def attributes() -> None:
        async def app(scope: object, receive: object, send: object) -> None: ...

        config = Config(app, http=BoundedHeadersProtocol, lifespan="off")
        config.load()
        loop = asyncio.get_running_loop()
        protocol = BoundedHeadersProtocol(config, ServerState(), {}, loop)
        assert protocol.loop is loop
        assert protocol.cycle is None  # no request yet: a 431 may be written
        assert "transport" in vars(protocol)
        assert "response_complete" in inspect.getsource(RequestResponseCycle.__init__)

    asyncio.run(attributes())


# -- oversized header blocks ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "request_bytes"),
    [
        pytest.param(
            "one header", lambda size: _get("/ping", _header_lines(size, size)), id="one-header"
        ),
        pytest.param(
            "many headers", lambda size: _get("/ping", _header_lines(size, 100)), id="many-headers"
        ),
        pytest.param("a long URL", lambda size: _get("/ping?q=" + "a" * size), id="long-url"),
    ],
)
def test_a_header_block_past_the_limit_gets_431_and_one_under_it_is_served(
    server: Backend, shape: str, request_bytes: Callable[[int], bytes]
) -> None:
    assert LIMIT <= 64 * 1024
    under = _ask(server, request_bytes(LIMIT - 1024))
    assert _status(under) == 200, f"{shape} under the limit: {under[:200]!r}"
    over = _ask(server, request_bytes(LIMIT + 1024))
    assert _status(over) == 431, f"{shape} over the limit: {over[:200]!r}"
    assert b"connection: close" in over.lower()


def test_a_header_block_sent_in_pieces_is_refused_once_past_the_limit(server: Backend) -> None:
    """An unfinished block is counted as it arrives, not when its blank line comes."""
    with _connect(server) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent = 0
        refused = False
        while sent < 4 * LIMIT and not refused:
            try:
                sock.sendall(b"a" * 4096)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 4096
            # Wait (bounded) for the piece to be read on its own before sending the next.
            refused = _answer_within(sock, 0.05)
        answer = _read_until_closed(sock)
    assert _status(answer) == 431
    assert sent <= LIMIT + 64 * 1024, f"refused only after {sent} bytes"


def _answer_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except TimeoutError:
        return False
    finally:
        sock.settimeout(10)


def test_a_body_is_not_counted_as_header_bytes(server: Backend) -> None:
    """A read that holds the end of a body (60 kB, past the header limit) and the start of
    the next request's headers counts only those headers: the next request is served."""
    body = b'{"username": "' + b"a" * 60_000 + b'"}'
    post = (
        b"POST /api/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    with _connect(server) as sock:
        # The next request's headers begin in the same write as the body, and stay open
        # until the answer to the first request shows the server has read that write.
        sock.sendall(post + b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        first = _read_response(sock)
        sock.sendall(b"Connection: close\r\n\r\n")
        second = _read_until_closed(sock)
    assert _status(first) == 422
    assert _status(second) == 200, second[:200]


# -- the 50 MB flood -----------------------------------------------------------------------


@dataclass
class FloodConnection:
    """One connection sending a header block that never ends, with a reader alongside so
    that an answer is read as soon as it comes (a reset would discard it)."""

    sock: socket.socket
    sent: int = 0
    answer: bytes = b""
    error: str = ""
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, total: int, deadline: float) -> None:
        self._threads = [
            threading.Thread(target=self._send, args=(total, deadline), daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def join(self, deadline: float) -> None:
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            assert not thread.is_alive(), "the flood outlived its time bound"

    def _send(self, total: int, deadline: float) -> None:
        piece = b"a" * (256 * 1024)
        try:
            self.sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ")
            while self.sent < total and time.monotonic() < deadline:
                self.sock.sendall(piece)
                self.sent += len(piece)
        except OSError as exc:
            self.error = type(exc).__name__
        finally:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _read(self) -> None:
        self.answer = _read_until_closed(self.sock)


class RssSampler:
    """The server's peak RSS while a block runs, sampled every 10 ms by a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def rss(self) -> int:
        return self.process.memory_info().rss

    def __enter__(self) -> Self:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.rss())


def flood(
    port: int, pid: int, connections: int, total: int
) -> tuple[list[FloodConnection], dict[str, int]]:
    """`connections` raw sockets each sending `total` bytes of one header; the server's RSS
    before, at its peak, and after they closed."""
    sampler = RssSampler(pid)
    before = sampler.rss()
    deadline = time.monotonic() + FLOOD_SECONDS
    floods = [
        FloodConnection(socket.create_connection(("127.0.0.1", port), timeout=10))
        for _ in range(connections)
    ]
    with sampler:
        for connection in floods:
            connection.start(total, deadline)
        for connection in floods:
            connection.join(deadline + 10)
            connection.sock.close()
    return floods, {"before": before, "peak": sampler.peak, "after": sampler.rss()}


def test_a_50_mb_header_flood_on_several_connections_leaves_memory_flat(server: Backend) -> None:
    assert _status(_ask(server, _get("/ping"))) == 200  # warm: the first request allocates
    floods, rss = flood(server.port, server.pid, FLOOD_CONNECTIONS, FLOOD_BYTES)
    report = {k: f"{v / MiB:.1f} MiB" for k, v in rss.items()}
    print(f"flood: {[(f.sent, f.error, f.answer[:12]) for f in floods]}; RSS {report}")
    for connection in floods:
        # Refused long before the end: with its 431 when the reader got to it first.
        assert connection.sent < FLOOD_BYTES, "the server read a whole 50 MB header block"
        assert connection.answer == b"" or _status(connection.answer) == 431
    assert any(connection.answer for connection in floods), "no connection read its 431"
    assert rss["peak"] - rss["before"] < FLOOD_RSS_GROWTH_BOUND, report
    assert rss["after"] - rss["before"] < FLOOD_RSS_GROWTH_BOUND, report
    assert _status(_ask(server, _get("/ping"))) == 200


# -- the header timeout --------------------------------------------------------------------


def _seconds_until_closed(sock: socket.socket, trickle: bytes | None, bound: float) -> float:
    """Send `trickle` every 100 ms (or nothing) until the server closes; seconds taken."""
    opened = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - opened < bound:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - opened
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - opened
        if trickle is not None:
            try:
                sock.sendall(trickle)
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - opened
    return float("inf")


@pytest.mark.parametrize(
    ("opening", "trickle"),
    [
        pytest.param(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-A: b\r\n", id="slowloris"),
        pytest.param(b"", None, id="silent"),
        # A keep-alive connection whose next request never finishes its headers.
        pytest.param(
            _get("/ping", close=False) + b"GET /ping HTTP/1.1\r\n",
            b"X-A: b\r\n",
            id="second-request",
        ),
    ],
)
def test_a_connection_that_does_not_finish_its_headers_is_closed_after_the_timeout(
    server: Backend, opening: bytes, trickle: bytes | None
) -> None:
    with _connect(server) as sock:
        sock.sendall(opening)
        took = _seconds_until_closed(sock, trickle, bound=TIMEOUT + 5)
    assert TIMEOUT * 0.9 <= took <= TIMEOUT + 2, f"closed after {took:.2f} s"


def _after_the_timeout(opened: float) -> None:
    """Let the header timeout pass (twice over) since `opened`: the point of the test is
    that time goes by; nothing else is awaited."""
    time.sleep(max(0.0, opened + 2 * TIMEOUT - time.monotonic()))


def test_a_keep_alive_connection_idle_past_the_timeout_serves_its_next_request(
    server: Backend,
) -> None:
    with _connect(server) as sock:
        opened = time.monotonic()
        sock.sendall(_get("/ping", close=False))
        assert _status(_read_response(sock)) == 200
        _after_the_timeout(opened)  # under uvicorn's 5 s keep-alive
        sock.sendall(_get("/ping"))
        assert _status(_read_until_closed(sock)) == 200


async def test_an_event_stream_open_past_the_timeout_keeps_delivering(server: Backend) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10, read=30)) as http:
        alice = await _token(http, "alice")
        bob = await _token(http, "bob")
        me = await http.get("/api/me", headers={"Authorization": f"Bearer {bob}"})
        bob_id = me.json()["id"]
        async with open_stream(http, bob) as stream:
            opened = time.monotonic()
            # Pings every second (SSE_HEARTBEAT_SECONDS=1) until three timeouts have passed.
            while time.monotonic() - opened < 3 * TIMEOUT:
                assert (await stream.next(timeout=5, pings=True)).event == "ping"
            response = await http.post(
                "/api/notifications",
                json={"userId": bob_id, "title": "still here"},
                headers={"Authorization": f"Bearer {alice}"},
            )
            assert response.status_code == 201
            event = await stream.next(timeout=5)
    assert event.event == "notification:new"
    assert '"still here"' in event.data


async def _token(http: httpx.AsyncClient, username: str) -> str:
    response = await http.post(
        "/api/auth/token", json={"username": username, "password": f"{username}-pass"}
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _ws_frame(text: str) -> bytes:
    """One masked text frame, as a client must send it."""
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def _ws_read_text(sock: socket.socket, buffer: bytearray) -> str:
    """The next text frame from the server (unmasked, short or 16-bit length)."""

    def need(n: int) -> None:
        while len(buffer) < n:
            chunk = sock.recv(65536)
            assert chunk, "the websocket closed"
            buffer.extend(chunk)

    need(2)
    length, start = buffer[1] & 0x7F, 2
    if length == 126:
        need(4)
        length, start = int.from_bytes(buffer[2:4], "big"), 4
    need(start + length)
    opcode, payload = buffer[0] & 0x0F, bytes(buffer[start : start + length])
    del buffer[: start + length]
    assert opcode == 0x1, f"opcode {opcode}"
    return payload.decode()


def test_the_reflex_websocket_outlives_the_timeout(server: Backend) -> None:
    """The upgrade still works, and the open socket (headers long complete) is not timed:
    after the timeout has passed twice, socket.io still answers a namespace connect."""
    key = base64.b64encode(os.urandom(16)).decode()
    with _connect(server) as sock:
        opened = time.monotonic()
        sock.sendall(
            _get(
                "/_event/?EIO=4&transport=websocket",
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {server.url}\r\n",  # the app's own origin: Host names the port
                close=False,
                host=f"127.0.0.1:{server.port}",
            )
        )
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, bytes(buffer)
            buffer.extend(chunk)
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        assert _status(head) == 101, head
        buffer = bytearray(rest)
        assert _ws_read_text(sock, buffer).startswith("0{")  # engine.io's open packet
        _after_the_timeout(opened)
        sock.sendall(_ws_frame("40/_event,"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            packet = _ws_read_text(sock, buffer)
            if packet.startswith("40/_event,"):
                break
            assert packet == "2", packet  # engine.io pings may come first
        else:
            pytest.fail("no answer to the namespace connect")
